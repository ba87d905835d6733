"""``siaga phone`` / ``siaga probe`` argument handling and the probe's config and result."""

from __future__ import annotations

import argparse
import json

import pytest

from pbx.phone import cli
from pbx.phone.probe import STAGES, ProbeConfig, ProbeResult


def parser() -> argparse.ArgumentParser:
    """A parser with only the phone commands registered, as dispatcher/cli.py does."""
    root = argparse.ArgumentParser(prog="siaga")
    cli.register(root.add_subparsers(dest="command", required=True))
    return root


def test_given_the_phone_command_when_parsed_then_every_option_lands() -> None:
    """All options of ``siaga phone`` reach the handler with their types."""
    args = parser().parse_args(
        [
            "phone",
            "--server",
            "127.0.0.1:5070",
            "--user",
            "201",
            "--password",
            "pw",
            "--call",
            "301",
            "--dtmf",
            "12#",
            "--tone",
            "697",
            "--hangup-after",
            "2.5",
        ]
    )
    assert args.func is cli.cmd_phone
    assert (args.server, args.user, args.password) == ("127.0.0.1:5070", "201", "pw")
    assert args.call == "301"
    assert args.dtmf == "12#"
    assert args.tone == 697.0
    assert args.hangup_after == 2.5


def test_given_the_probe_command_when_parsed_then_it_calls_the_hotline_without_operator() -> None:
    """``siaga probe`` needs only the server."""
    args = parser().parse_args(["probe", "--server", "127.0.0.1:5070"])
    assert args.func is cli.cmd_probe
    assert args.hotline == "112"
    assert args.operator is None
    assert args.digits is None


@pytest.mark.parametrize(
    "argv",
    [
        ["phone", "--server", "127.0.0.1:99999"],
        ["phone", "--server", "127.0.0.1:5070", "--dtmf", "1x"],
        ["phone", "--server", "127.0.0.1:5070", "--tone", "-5"],
        ["probe", "--server", "127.0.0.1:5070", "--digits", "1\n2"],
        ["probe"],
    ],
)
def test_given_bad_arguments_when_parsed_then_argparse_refuses(argv: list[str]) -> None:
    """Bad server, DTMF keys or numbers stop at parsing with a usage error."""
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(argv)
    assert exited.value.code == 2


def test_given_an_operator_without_password_when_probing_then_the_command_refuses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A half-given test operator is a usage error (exit 2) before any call is placed."""
    args = parser().parse_args(["probe", "--server", "127.0.0.1:5070", "--operator", "201"])
    assert cli.cmd_probe(args) == 2
    assert "user and a password" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs",
    [
        {"server": "nohostport:"},
        {"server": "127.0.0.1:5070", "hotline": ""},
        {"server": "127.0.0.1:5070", "hotline": "112@evil"},
        {"server": "127.0.0.1:5070", "ivr_digits": "1;2"},
        {"server": "127.0.0.1:5070", "operator_password": "pw"},
    ],
)
def test_given_a_bad_probe_config_when_made_then_it_is_refused(kwargs: dict) -> None:
    """The probe's configuration is validated when built, not in the middle of a call."""
    with pytest.raises(ValueError):
        ProbeConfig(**kwargs)


def test_given_a_result_when_serialised_then_times_are_rounded_and_all_fields_present() -> None:
    """The JSON has every field, times in seconds to the millisecond."""
    result = ProbeResult(ok=True, stage="done", time_to_answer=0.0123456, hotline="112")
    data = json.loads(result.to_json())
    assert data["time_to_answer"] == 0.012
    assert data["ok"] is True and data["stage"] in STAGES
    assert data["time_to_operator_ring"] is None
    assert set(data) >= {"time_to_answer", "time_to_first_audio", "time_to_operator_ring"}


def test_given_the_servers_process_when_it_builds_the_cli_and_the_center_then_pjsua2_and_numpy_stay_out(  # noqa: E501
        ) -> None:
    """``siaga up`` builds the whole command line (every sub-command, ``phone`` and ``probe``
    included) and the center: neither pjsua2 nor numpy may come with it (about 20 MB of
    resident memory and OpenBLAS's threads in the server for nothing; the self-test's phone
    runs in a child process). Checked in a fresh interpreter, where nothing is loaded yet."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from dispatcher import cli\n"
            "cli.build_parser()\n"
            "import dispatcher.serve, dispatcher.app, dispatcher.topology_run, dispatcher.brain\n"
            "print(sorted(m for m in ('numpy', 'pjsua2') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
