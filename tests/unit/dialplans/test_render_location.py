"""The generated configuration for callers' SIP locations: Asterisk's own PIDF-LO reader is
never loaded, SIP copies go to the loopback only when configured, and the dialplan's mark
carries only a cleaned Call-ID."""

from __future__ import annotations

import re
from pathlib import Path

from dialplans import contract
from dialplans.render import AsteriskPaths, render_all
from dispatcher.config.loader import load_center
from dispatcher.credentials import ensure_credentials
from tests.harness import write_test_config


def rendered(tmp_path: Path, port: int | None) -> tuple[dict[str, str], bytes]:
    sections = {"console": {"sip_location_port": port}} if port else None
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = write_test_config(tmp_path / "c.yaml", sections=sections)
    center = load_center(config, state_dir=tmp_path / "s")
    paths = AsteriskPaths.for_center(center, "/mods", "/usr/share/asterisk")
    creds = ensure_credentials(center)
    return render_all(center, creds, paths), creds.master_key


def test_given_any_config_when_rendered_then_res_geolocation_is_never_loaded(
        tmp_path: Path) -> None:
    """One INVITE crashes Asterisk 22.10 through res_geolocation: noload, always."""
    for port in (None, 5099):
        modules = rendered(tmp_path / str(port), port)[0]["modules.conf"]
        assert "noload => res_geolocation.so" in modules
        assert "noload => res_pjsip_geolocation.so" in modules
        assert not re.search(r"^(load|require) => res_(pjsip_)?geolocation", modules, re.M)
        pjsip = rendered(tmp_path / f"p{port}", port)[0]["pjsip.conf"]
        assert "geoloc" not in pjsip


def test_given_no_port_when_rendered_then_no_sip_copies(tmp_path: Path) -> None:
    """Off by default: no HEP module, hep.conf disabled."""
    files, _ = rendered(tmp_path, None)
    assert "res_hep" not in files["modules.conf"]
    assert "enabled = no" in files["hep.conf"] and "capture_address" not in files["hep.conf"]


def test_given_a_port_when_rendered_then_copies_to_the_loopback_with_the_password(
        tmp_path: Path) -> None:
    """The copies go to 127.0.0.1 on the configured port, with id 112 and the password the
    server derives from the master key."""
    port = 20999
    files, master = rendered(tmp_path, port)
    hep = files["hep.conf"]
    assert f"capture_address = 127.0.0.1:{port}" in hep
    assert f"capture_password = {contract.hep_password(master)}" in hep
    assert f"capture_id = {contract.HEP_CAPTURE_ID}" in hep
    assert "load => res_hep.so" in files["modules.conf"]
    assert "load => res_hep_pjsip.so" in files["modules.conf"]


def test_given_the_hotline_when_rendered_then_the_mark_is_a_filtered_call_id(
        tmp_path: Path) -> None:
    """The mark is set only with a Geolocation header (read inside LEN) and holds the
    Call-ID through FILTER, cut to 128: no caller text reaches AMI through it."""
    dialplan = rendered(tmp_path, None)[0]["extensions.conf"]
    lines = [line for line in dialplan.splitlines() if "Geolocation" in line
             or contract.VAR_SIP_CALL_ID in line]
    assert lines == [
        " same => n,GotoIf($[${LEN(${PJSIP_HEADER(read,Geolocation)})} = 0]?answer)",
        f" same => n,Set({contract.VAR_SIP_CALL_ID}="
        "${FILTER(-A-Za-z0-9.!%*_+~@:,${CHANNEL(pjsip,call-id)}):0:128})",
    ]
