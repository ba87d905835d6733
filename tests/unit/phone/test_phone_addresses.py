"""The pure parts of the phone library: server addresses, dial targets, DTMF digits, and the
modules that load no pjsua2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pbx.phone.dialing import check_dtmf, split_hostport, target_uri


@pytest.mark.parametrize(
    ("server", "expected"),
    [("127.0.0.1:5070", ("127.0.0.1", 5070)), ("pbx.local", ("pbx.local", 5060))],
)
def test_given_a_server_when_split_then_host_and_port(server: str, expected: tuple) -> None:
    """host:port splits; a bare host gets SIP's default port."""
    assert split_hostport(server) == expected


@pytest.mark.parametrize("bad", [":5060", "host:", "host:0", "host:70000", "host:50a"])
def test_given_a_bad_server_when_split_then_it_is_refused(bad: str) -> None:
    """Missing host, missing or out-of-range port are errors."""
    with pytest.raises(ValueError):
        split_hostport(bad)


def test_given_an_extension_when_dialled_then_it_is_addressed_at_the_server() -> None:
    """``112`` becomes ``sip:112@server``; a full URI is used as it is."""
    assert target_uri("112", "127.0.0.1:5070") == "sip:112@127.0.0.1:5070"
    assert target_uri("sip:2001@127.0.0.1:5999", "127.0.0.1:5070") == "sip:2001@127.0.0.1:5999"


def test_given_an_extension_and_no_server_when_dialled_then_it_is_refused() -> None:
    """A phone without a server can only dial URIs."""
    with pytest.raises(ValueError, match="no server"):
        target_uri("112", None)


@pytest.mark.parametrize("bad", ["112\r\nX: y", "sip:a@b>", "1 2", "11\x002"])
def test_given_a_destination_with_control_characters_when_dialled_then_it_is_refused(
    bad: str,
) -> None:
    """CR/LF/NUL and URI delimiters never reach a SIP header."""
    with pytest.raises(ValueError):
        target_uri(bad, "127.0.0.1:5070")


def test_given_dtmf_keys_when_checked_then_they_pass_and_others_do_not() -> None:
    """0-9 * # A-D are keys; anything else (or nothing) is refused."""
    assert check_dtmf("0123456789*#ABCD") == "0123456789*#ABCD"
    for bad in ["", "1E", "12 3", "1\n"]:
        with pytest.raises(ValueError):
            check_dtmf(bad)


@pytest.mark.parametrize("module", ["dialing", "errors", "events", "limits"])
def test_given_a_plain_module_of_the_phone_library_when_imported_then_pjsua2_stays_unloaded(
    module: str,
) -> None:
    """The checks, errors, limits and states load no pjsua2 (its threads, its aborts): a
    process that drives phones living in another one can use them."""
    code = (f"import sys, pbx.phone.{module}; "
            "print(sorted(m for m in sys.modules if m.startswith(('pjsua2', 'pbx.phone.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[3]).stdout
    assert out.strip() == repr([f"pbx.phone.{module}"])
