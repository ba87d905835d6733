"""Keys at rest: the secrets file holds one master key; the session-signing key and devices'
HMAC keys are derived from it, and the database never holds a device's key."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml

from dispatcher.alerts.auth import Authenticator, sign
from dispatcher.alerts.errors import BadCredentials
from dispatcher.alerts.storage import device_credentials
from dispatcher.calllog import db
from dispatcher.cli import main
from dispatcher.config.loader import load_center
from dispatcher.credentials import ensure_credentials
from dispatcher.keys import derive, device_key, is_derived
from tests.harness import EXAMPLE_CONFIG


def test_given_rfc5869_case_3_when_derived_then_output_matches() -> None:
    """HKDF-SHA256 with no salt and no info gives RFC 5869's test case 3 output."""
    okm = derive(bytes([0x0B] * 22), "", 42)
    assert okm.hex() == ("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
                         "9d201395faa4b61a96c8")


def test_given_one_master_when_purposes_differ_then_keys_are_unrelated() -> None:
    """Each purpose, device and enrolment label gets its own key."""
    master = b"m" * 32
    keys = {derive(master, "a"), derive(master, "b"), device_key(master, "app-1", "hkdf$x"),
            device_key(master, "app-2", "hkdf$x"), device_key(master, "app-1", "hkdf$y")}
    assert len(keys) == 5
    with pytest.raises(ValueError):
        derive(b"", "a")


def test_given_secrets_file_when_read_by_an_attacker_then_no_session_key_is_in_it(
        tmp_path: Path) -> None:
    """secrets.yaml (0600) keeps the master key and no session-signing key: a key stored by
    an older version is dropped, and the master key is kept across runs."""
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    path = tmp_path / "secrets.yaml"
    first = ensure_credentials(center)
    doc = yaml.safe_load(path.read_text())
    doc["session_key"] = "left-by-an-older-version"
    path.write_text(yaml.safe_dump(doc))
    second = ensure_credentials(center)
    text = path.read_text()
    assert "session_key" not in text and "left-by-an-older-version" not in text
    assert first.master_key == second.master_key and first.master_key.decode() in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_given_hmac_device_enrolled_on_the_center_when_database_stolen_then_no_key_in_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`siaga device add --auth hmac` on the center's config: the key it prints is nowhere
    in the database file, only a label; the server (holding the master key) verifies the
    device's signatures; without the master key, or with another device's id, they fail."""
    state = tmp_path / "state"
    assert main(["device", "add", "--config", str(EXAMPLE_CONFIG), "--state-dir", str(state),
                 "app-9", "--auth", "hmac", "--json"]) == 0
    key = json.loads(capsys.readouterr().out)["hmac_key"]
    center = load_center(EXAMPLE_CONFIG, state_dir=state)
    database = (state / "siaga.db").read_bytes()
    assert key.encode() not in database
    sessions = db.make_sessionmaker(db.make_engine(center.database_url))
    with sessions() as session:
        device = device_credentials(session, "app-9")
    assert device is not None and is_derived(device.hmac_key)

    body = b'{"alert_id": "a1"}'
    headers = {"authorization": None, "x-siaga-timestamp": "1000",
               "x-siaga-signature": sign(key, 1000, body)}
    master = ensure_credentials(center).master_key
    assert Authenticator(master_key=master).check(device, headers, body, 1000.0) == device
    with pytest.raises(BadCredentials):
        Authenticator().check(device, headers, body, 1000.0)
    forged = {**headers, "x-siaga-signature": sign(
        device_key(master, "app-8", device.hmac_key), 1000, body)}  # type: ignore[arg-type]
    with pytest.raises(BadCredentials):
        Authenticator(master_key=master).check(device, forged, body, 1000.0)
