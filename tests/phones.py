"""Phones for end-to-end tests: one pjsua2 stack per test session, phones per test.

``tests/conftest.py`` imports the fixtures, so every test can ask for them::

    def test_something(phones):
        citizen, operator = phones.citizen(), phones.operator(1)
        ...

``sip_stack`` (session) owns the process's only pjsua2 endpoint. ``phones`` (per test) is a
:class:`PhoneFactory`: it makes phones by role and, when the test ends — passed or failed
halfway — hangs up, drains and closes every phone it made, so the next test starts clean.

Roles against the center's Asterisk (``citizen``, ``operator``, ``agency``) need a
:class:`Directory` telling where the SIP server is and which extension/password each role
uses; the e2e harness provides one (fixture ``phone_directory``). Without it, only
``direct`` phones (calling each other at ``sip:user@127.0.0.1:port``) are available.

One process holds at most 8 phones and 4 call legs (the pjsua2 wheel's build limits);
``phones.host()`` gives a child process with as many again, and every role method takes
``host=`` to make its phone there.
"""

from __future__ import annotations

import gc
import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pbx.phone import tones
from pbx.phone.call import Call
from pbx.phone.errors import PhoneError
from pbx.phone.host import PhoneHost, RemoteCall, RemotePhone
from pbx.phone.phone import Phone
from pbx.phone.stack import SipStack, T
from tests.harness import PATIENCE

AnyPhone = Phone | RemotePhone  # a phone here, or in a PhoneHost child process
AnyCall = Call | RemoteCall

CITIZEN_TONE = tones.CALLER_TONE_HZ  # what the citizen's side sends in a two-way check
AGENCY_TONE = tones.CALLEE_TONE_HZ  # what the operator's/agency's side sends


@dataclass(frozen=True)
class Credentials:
    """A SIP extension: user name and password."""

    user: str
    password: str


@dataclass
class Directory:
    """Where the center's SIP server listens and which extension each role registers as.

    ``operators`` is indexed from 1 (operator 1 is ``operators[0]``); ``agencies`` maps an
    agency key (``"police"``, ``"fire"`` ...) to its extensions, first phone first.
    """

    server: str
    hotline: str = "112"
    operators: list[Credentials] = field(default_factory=list)
    agencies: Mapping[str, list[Credentials]] = field(default_factory=dict)
    extensions: Mapping[str, Credentials] = field(default_factory=dict)

    def operator(self, n: int) -> Credentials:
        """Credentials of operator ``n`` (1-based)."""
        if not 1 <= n <= len(self.operators):
            raise LookupError(f"no operator {n}; the config has {len(self.operators)}")
        return self.operators[n - 1]

    def agency(self, key: str, n: int = 1) -> Credentials:
        """Credentials of phone ``n`` (1-based) of agency ``key``."""
        phones = self.agencies.get(key)
        if not phones:
            raise LookupError(f"no agency {key!r}; known: {sorted(self.agencies)}")
        if not 1 <= n <= len(phones):
            raise LookupError(f"agency {key!r} has {len(phones)} phones, not {n}")
        return phones[n - 1]


class PhoneFactory:
    """Makes phones for one test and closes them all when it ends."""

    def __init__(
        self,
        stack: SipStack,
        workdir: Path,
        directory: Directory | Callable[[], Directory] | None = None,
    ) -> None:
        self.stack = stack
        self.workdir = workdir
        self._directory = directory
        self._phones: list[AnyPhone] = []
        self._hosts: list[PhoneHost] = []
        self._serial = itertools.count(1)

    def _keep(self, phone: AnyPhone) -> AnyPhone:
        self._phones.append(phone)
        return phone

    def _unique(self, name: str) -> str:
        # Unique user parts: pjsua matches an incoming INVITE to an account by its user part.
        return f"{name}-{next(self._serial)}"

    def _make(self, host: PhoneHost | None, user: str, **kwargs: Any) -> AnyPhone:
        if host is None:
            return self._keep(Phone(self.stack, user, **kwargs))
        return self._keep(host.phone(user, **kwargs))

    def host(self) -> PhoneHost:
        """A child process with its own pjsua2 stack, closed when the test ends.

        Pass it as ``host=`` to the methods below to make phones there: past the 8 phones and
        4 calls one process can hold, or to keep a phone's crash out of the test process.
        """
        host = PhoneHost()
        self._hosts.append(host)
        return host

    def direct(self, name: str = "phone", *, host: PhoneHost | None = None) -> AnyPhone:
        """An unregistered phone reachable at ``phone.uri`` (phone-to-phone, no server)."""
        return self._make(host, self._unique(name), name=name)

    def extension(
        self,
        user: str,
        password: str,
        server: str | None = None,
        *,
        timeout: float = 5.0,
        host: PhoneHost | None = None,
        name: str | None = None,
        **options: Any,
    ) -> AnyPhone:
        """A phone registered as ``user`` at ``server`` (the directory's by default).

        ``options`` go to :class:`~pbx.phone.phone.Phone` (``tls=``, ``tls_ca=``, ``srtp=``).
        """
        server = server or self._need_directory().server
        phone = self._make(host, user, server=server, password=password, name=name,
                           **options)
        phone.wait_registered(timeout)
        return phone

    def citizen(
        self,
        name: str = "citizen",
        caller_id: str | None = None,
        *,
        host: PhoneHost | None = None,
    ) -> AnyPhone:
        """An anonymous caller at the center's SIP server: registers nowhere, only calls.

        ``caller_id`` becomes the user part of its From (the number the center sees).
        """
        directory = self._need_directory()
        user = caller_id or self._unique(name)
        return self._make(host, user, server=directory.server, name=name)

    def operator(self, n: int = 1, *, host: PhoneHost | None = None) -> AnyPhone:
        """Operator ``n``'s softphone, registered."""
        cred = self._need_directory().operator(n)
        return self.extension(cred.user, cred.password, host=host, name=f"operator{n}")

    def agency(self, key: str, n: int = 1, *, host: PhoneHost | None = None) -> AnyPhone:
        """Phone ``n`` of agency ``key``, registered."""
        cred = self._need_directory().agency(key, n)
        return self.extension(cred.user, cred.password, host=host, name=f"{key}{n}")

    def two_way_audio(self, a: AnyCall, b: AnyCall, **kwargs: float) -> TwoWay:
        """:func:`check_two_way_audio` with recordings in this test's directory."""
        return check_two_way_audio(a, b, self.workdir, **kwargs)

    def recording(self, name: str) -> Path:
        """A path for a recording in this test's directory."""
        return self.workdir / f"{name}.wav"

    @property
    def directory(self) -> Directory:
        """The center's SIP server and role credentials (fetched on first use)."""
        if self._directory is None:
            raise LookupError("no phone directory: these phones need the Asterisk harness")
        if callable(self._directory):
            self._directory = self._directory()
        return self._directory

    def _need_directory(self) -> Directory:
        return self.directory

    def close_all(self) -> None:
        """Close every phone made (calls hung up and drained); raise the first failure after."""
        problems: list[Exception] = []
        for phone in reversed(self._phones):
            try:
                phone.close()
            except PhoneError as exc:
                problems.append(exc)
        self._phones.clear()
        gc.collect()  # pjsua2 objects die here, on the stack's thread
        for host in self._hosts:
            try:
                host.close()
            except PhoneError as exc:
                problems.append(exc)
        self._hosts.clear()
        if problems:
            raise problems[0]


@dataclass(frozen=True)
class TwoWay:
    """What each side of a call heard in :func:`check_two_way_audio`."""

    a_heard: float | None  # dominant frequency on a's side
    b_heard: float | None
    a_hears_b: bool
    b_hears_a: bool

    @property
    def both(self) -> bool:
        """True if each side heard the other's tone."""
        return self.a_hears_b and self.b_hears_a


def check_two_way_audio(
    a: AnyCall,
    b: AnyCall,
    workdir: Path,
    *,
    a_tone: float = CITIZEN_TONE,
    b_tone: float = AGENCY_TONE,
    seconds: float = 1.0,
    timeout: float = 10.0,
) -> TwoWay:
    """Each call plays its tone and records the other; report who heard what.

    Recordings go to ``workdir`` named after the phones, so a failure leaves them to listen to.
    The first 0.3 s are skipped: the jitter buffer fills and the tone generator starts.
    """
    a.play_tone(a_tone)
    b.play_tone(b_tone)
    a.start_recording(workdir / f"{a.phone.name}-{a.id}-hears.wav")
    b.start_recording(workdir / f"{b.phone.name}-{b.id}-hears.wav")
    a_path = a.wait_heard(seconds + 0.3, timeout)
    b_path = b.wait_heard(seconds + 0.3, timeout)
    result = TwoWay(
        a_heard=tones.dominant_frequency(tones.read_wav(a_path).slice(0.3)),
        b_heard=tones.dominant_frequency(tones.read_wav(b_path).slice(0.3)),
        a_hears_b=tones.hears_tone(a_path, b_tone, skip_s=0.3),
        b_hears_a=tones.hears_tone(b_path, a_tone, skip_s=0.3),
    )
    a.stop_audio()
    b.stop_audio()
    a.stop_recording()
    b.stop_recording()
    return result


class PatientStack(SipStack):
    """The tests' stack: every deadline a phone waits on is stretched by ``PATIENCE``, as
    the harness's own waits are (a stalled machine makes a test slower, not red)."""

    def wait_until(self, predicate: Callable[[], T], timeout: float, what: str) -> T:
        """:meth:`SipStack.wait_until` with ``timeout`` × ``PATIENCE``."""
        return super().wait_until(predicate, timeout * PATIENCE, what)


@pytest.fixture(scope="session")
def sip_stack() -> Iterator[SipStack]:
    """The process's pjsua2 stack, started once per test session, closed at its end."""
    stack = PatientStack()
    yield stack
    stack.close()


@pytest.fixture
def phones(
    sip_stack: SipStack, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[PhoneFactory]:
    """A factory of phones for this test; all are closed when the test ends.

    Role phones (citizen, operator N, agency X) look up the ``phone_directory`` fixture on
    first use only, so a test with direct phones alone never starts Asterisk.
    """
    factory = PhoneFactory(
        sip_stack, tmp_path, lambda: request.getfixturevalue("phone_directory")
    )
    yield factory
    factory.close_all()
