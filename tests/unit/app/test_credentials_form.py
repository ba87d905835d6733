"""Generated secrets never begin with '-': typed after an option on a command line
(``siaga phone --password <secret>``) such a secret is read as another option."""

from __future__ import annotations

import secrets

import pytest

from dispatcher import credentials


def test_given_the_random_source_starts_a_secret_with_a_dash_then_it_is_drawn_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = iter(["-Xk3_qv", "--also", "Ab-3_q"])
    monkeypatch.setattr(secrets, "token_urlsafe", lambda n: next(drawn))
    assert credentials._new_secret() == "Ab-3_q"


def test_given_many_secrets_then_none_begins_with_a_dash_and_all_are_url_safe() -> None:
    made = [credentials._new_secret() for _ in range(5000)]  # ~78 would begin with '-'
    assert not [s for s in made if s.startswith("-")]
    assert all(len(s) == 24 and s.replace("-", "").replace("_", "").isalnum() for s in made)
    assert len(set(made)) == len(made)
