"""The start-up banner's database line never shows a password."""

from __future__ import annotations

import pytest

from dispatcher.banner import mask_password


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql+psycopg://siaga:s3cret@127.0.0.1/siaga",
     "postgresql+psycopg://siaga:***@127.0.0.1/siaga"),
    ("postgresql://siaga:s3cret@db.example:5432/siaga?sslmode=require",
     "postgresql://siaga:***@db.example:5432/siaga?sslmode=require"),
    # Unquoted '/', '?', '#', '@' in the password cut a URL parser's user part short.
    ("postgresql://siaga:s3/cr?e#t@x@db/siaga", "postgresql://siaga:***@db/siaga"),
    ("postgresql://siaga@db/siaga?password=s3cret&sslmode=require",
     "postgresql://siaga@db/siaga?password=***&sslmode=require"),
    ("sqlite:////var/lib/siaga/siaga.db", "sqlite:////var/lib/siaga/siaga.db"),
    ("postgresql://db/siaga", "postgresql://db/siaga"),
])
def test_given_a_database_url_when_shown_then_the_password_is_masked(url: str, shown: str
                                                                    ) -> None:
    """User, host and database stay readable; the password is ***."""
    assert mask_password(url) == shown
    assert "s3cret" not in mask_password(url) and "cr?e" not in mask_password(url)


def test_given_a_postgresql_password_in_the_config_when_the_banner_prints_then_masked(
        tmp_path) -> None:  # noqa: ANN001
    """The banner siaga up prints, for a center whose config gives a PostgreSQL URL with a
    password: the password is not in it, the rest of the URL is."""
    import dataclasses

    from dispatcher.banner import banner_text
    from dispatcher.config.loader import load_center
    from tests.harness import EXAMPLE_CONFIG

    center = dataclasses.replace(
        load_center(EXAMPLE_CONFIG, state_dir=tmp_path),
        database_url="postgresql+psycopg://siaga:Rahasia-123@10.0.0.5:5432/siaga")
    text = banner_text(center, tmp_path / "log", tmp_path / "rec")
    assert "Rahasia-123" not in text
    assert "postgresql+psycopg://siaga:***@10.0.0.5:5432/siaga" in text
