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
