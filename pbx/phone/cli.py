"""``siaga phone`` and ``siaga probe``: a headless softphone and the hotline probe.

``dispatcher/cli.py`` calls :func:`register` with its sub-parsers; each command's ``func``
takes the parsed arguments and returns the exit status.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from pbx.phone.dialing import check_dtmf, split_hostport
from pbx.phone.errors import PhoneError
from pbx.phone.events import CallState, PhoneEvent

# pjsua2 and numpy are imported by the commands that use them, not here: every ``siaga``
# process registers these sub-commands, and the long-running server (``siaga up``) would
# otherwise carry both libraries (about 20 MB resident, OpenBLAS's threads) for nothing.
if TYPE_CHECKING:
    from pbx.phone.phone import Phone


def _server(value: str) -> str:
    try:
        split_hostport(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _dtmf(value: str) -> str:
    try:
        return check_dtmf(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return number


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``phone`` and ``probe`` sub-commands to the ``siaga`` command."""
    p = subparsers.add_parser(
        "phone",
        help="a headless SIP phone: register as an extension, or call as a citizen",
        description=(
            "Register as an extension (--user and --password) or stay anonymous (a citizen: "
            "--user only names the caller). With --call it dials and, once answered, sends "
            "--dtmf, plays --tone or --wav, records with --record, and hangs up after "
            "--hangup-after seconds. Without --call it waits for calls (answering them with "
            "--answer) until --duration passes or Ctrl-C. Every event is printed."
        ),
    )
    p.add_argument("--server", required=True, type=_server, help="the center's SIP host:port")
    p.add_argument("--user", default="citizen", help="extension, or the citizen's caller name")
    p.add_argument("--password", help="the extension's SIP password (registers)")
    p.add_argument("--call", metavar="DEST", help="number (e.g. 112) or SIP URI to call")
    p.add_argument("--answer", action="store_true", help="answer incoming calls")
    p.add_argument("--dtmf", type=_dtmf, help="DTMF keys to press once the call is up")
    p.add_argument("--tone", type=_positive, metavar="HZ", help="send a sine tone")
    p.add_argument("--wav", type=Path, help="send a WAV file (8 kHz 16-bit mono)")
    p.add_argument("--record", type=Path, metavar="WAV", help="record what the call hears")
    p.add_argument(
        "--hangup-after", type=_positive, default=10.0, metavar="S",
        help="hang up this long after the call is up (default 10)",
    )
    p.add_argument(
        "--duration", type=_positive, metavar="S",
        help="without --call: how long to stay up (default: until Ctrl-C)",
    )
    p.add_argument("--timeout", type=_positive, default=15.0, help="answer timeout (s)")
    p.add_argument("--log-level", type=int, default=0, help="pjsip log level 0-6 (stderr)")
    p.add_argument("--tls", action="store_true",
                   help="SIP over TLS (--server is then the center's TLS port)")
    p.add_argument("--ca", metavar="PEM", help="with --tls: check the center's certificate "
                                                "against this CA (default: trust any)")
    p.add_argument("--srtp", choices=("off", "optional", "mandatory"), default="off",
                   help="SRTP on calls: off (default), optional, or mandatory")
    p.set_defaults(func=cmd_phone)

    p = subparsers.add_parser(
        "probe",
        help="call the hotline as a synthetic citizen and print a JSON health result",
        description=(
            "Place a real call to the hotline, check the greeting is audio and not silence, "
            "press --digits through the IVR, and with --operator/--operator-password wait "
            "until that test operator rings (answering it to check two-way audio). Prints one "
            "JSON object; exits 0 if every stage passed, 1 otherwise."
        ),
    )
    p.add_argument("--server", required=True, type=_server, help="the center's SIP host:port")
    p.add_argument("--hotline", default="112", help="the number to call (default 112)")
    p.add_argument("--caller", default="siaga-probe", help="the caller name in From")
    p.add_argument(
        "--caller-password-env", metavar="VAR",
        help="authenticate the call as endpoint --caller with the password in this "
             "environment variable (a password on the command line is seen by every user)",
    )
    p.add_argument("--digits", type=_dtmf, help="IVR keys to press, e.g. 1")
    p.add_argument("--digit-delay", type=float, default=1.0, help="greeting heard before keys")
    p.add_argument("--operator", help="a test operator extension to wait for")
    p.add_argument("--operator-password", help="its SIP password")
    p.add_argument("--operator-password-env", metavar="VAR",
                   help="read the operator's SIP password from this environment variable")
    p.add_argument(
        "--no-operator-answer", action="store_true",
        help="only wait for the operator to ring; do not answer",
    )
    p.add_argument("--answer-timeout", type=_positive, default=10.0)
    p.add_argument("--operator-timeout", type=_positive, default=30.0)
    p.add_argument("--record-dir", type=Path, help="keep the recordings here")
    p.set_defaults(func=cmd_probe)


def cmd_probe(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the probe and print its JSON result; 0 if the hotline passed every stage."""
    from pbx.phone.probe import ProbeConfig, run_probe

    out = out or sys.stdout
    try:
        caller_password = _from_env(getattr(args, "caller_password_env", None))
        operator_password = (_from_env(getattr(args, "operator_password_env", None))
                             or args.operator_password)
        config = ProbeConfig(
            server=args.server,
            hotline=args.hotline,
            caller=args.caller,
            caller_password=caller_password,
            ivr_digits=args.digits or "",
            digit_delay=args.digit_delay,
            operator_user=args.operator,
            operator_password=operator_password,
            operator_answer=not args.no_operator_answer,
            answer_timeout=args.answer_timeout,
            operator_timeout=args.operator_timeout,
            record_dir=args.record_dir,
        )
    except ValueError as exc:
        print(f"siaga probe: {exc}", file=sys.stderr)
        return 2
    result = run_probe(config)
    print(result.to_json(), file=out, flush=True)
    return 0 if result.ok else 1


def _from_env(name: str | None) -> str | None:
    """The value of environment variable ``name`` (None: no variable named); ValueError if
    it is named but unset."""
    if not name:
        return None
    value = os.environ.get(name)
    if not value:
        raise ValueError(f"environment variable {name} is not set")
    return value


class _Stop:
    """Ctrl-C / SIGTERM turn into a flag the phone loop checks (pjsua2 stays on one thread)."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


def cmd_phone(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the softphone as the arguments say; print every event. 0 on success."""
    from pbx.phone.phone import Phone
    from pbx.phone.stack import SipStack

    out = out or sys.stdout
    started = time.monotonic()

    def show(event: PhoneEvent) -> None:
        print(f"{event.at - started:8.3f} {event}", file=out, flush=True)

    stop = _Stop()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with SipStack(log_level=args.log_level) as stack:
            phone = Phone(
                stack, args.user, server=args.server, password=args.password, on_event=show,
                tls=args.tls, tls_ca=args.ca, srtp=args.srtp,
            )
            if phone.register:
                phone.wait_registered(args.timeout)
            if args.call:
                return _place_call(phone, args, stop, show)
            return _wait_calls(phone, args, stop)
    except PhoneError as exc:
        print(f"siaga phone: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _use_call(call, args: argparse.Namespace) -> None:  # noqa: ANN001 - a pbx.phone Call
    if args.record:
        call.start_recording(args.record)
    if args.tone:
        call.play_tone(args.tone)
    elif args.wav:
        call.play_wav(args.wav)
    if args.dtmf:
        call.send_dtmf(args.dtmf)


def _place_call(
    phone: Phone, args: argparse.Namespace, stop: _Stop, show: Callable[[PhoneEvent], None]
) -> int:
    call = phone.call(args.call)
    call.wait_confirmed(args.timeout)
    _use_call(call, args)
    deadline = time.monotonic() + args.hangup_after
    # Stop early if the far end hangs up or the user interrupts.
    phone.stack.wait_until(
        lambda: stop.requested
        or call.state == CallState.DISCONNECTED
        or time.monotonic() >= deadline,
        args.hangup_after + 1,
        "the call to end",
    )
    call.hangup()
    if args.record:
        call.stop_recording()
    return 0


def _wait_calls(phone: Phone, args: argparse.Namespace, stop: _Stop) -> int:
    deadline = time.monotonic() + args.duration if args.duration else None
    while not stop.requested and (deadline is None or time.monotonic() < deadline):
        phone.stack.pump()
        if phone.incoming_waiting:
            call = phone.wait_incoming(0)
            if args.answer:
                call.answer()
                call.wait_confirmed(args.timeout)
                _use_call(call, args)
    return 0
