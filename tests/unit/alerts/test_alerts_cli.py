"""``siaga device add|list|revoke`` on a real SQLite database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dispatcher.alerts.auth import hash_token
from dispatcher.calllog import db
from dispatcher.calllog.models import Device
from dispatcher.cli import main


def test_given_device_added_then_token_shown_once_and_stored_hashed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """add prints the token; the database holds only its hash; list shows no secret;
    revoke disables it; a second add of the same id fails."""
    url = f"sqlite:///{tmp_path / 'siaga.db'}"
    assert main(["device", "add", "--db", url, "app-7", "--callback-number", "0811", "--json"]
                ) == 0
    token = json.loads(capsys.readouterr().out)["token"]
    sessions = db.make_sessionmaker(db.make_engine(url))
    with sessions() as session:
        device = session.query(Device).filter_by(device_id="app-7").one()
        assert device.token_hash == hash_token(token) and token not in device.token_hash
        assert device.hmac_key is None and device.callback_number == "0811"
    assert main(["device", "list", "--db", url, "--json"]) == 0
    listed = capsys.readouterr().out
    assert token not in listed and json.loads(listed)[0]["auth"] == "token"
    assert main(["device", "revoke", "--db", url, "app-7"]) == 0
    with sessions() as session:
        assert session.query(Device).filter_by(device_id="app-7").one().enabled is False
    assert main(["device", "add", "--db", url, "app-7"]) == 1
    assert "already enrolled" in capsys.readouterr().err


def test_given_bad_device_id_or_number_then_refused_before_touching_the_database(
        tmp_path: Path) -> None:
    """CR/LF or spaces in an id, letters in a number: argparse refuses; no file is made."""
    url = f"sqlite:///{tmp_path / 'siaga.db'}"
    for argv in (["device", "add", "--db", url, "bad\r\nid"],
                 ["device", "add", "--db", url, "ok", "--callback-number", "08x1"]):
        with pytest.raises(SystemExit):
            main(argv)
    assert not (tmp_path / "siaga.db").exists()
