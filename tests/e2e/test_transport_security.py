"""Transport security end to end: the whole center (`siaga up`) with a ``tls:`` section.

Real parts only: Asterisk with its TLS transport and res_srtp, pjsua2 phones over TLS with
SRTP mandatory (a call whose answer lacks SRTP fails on the phone), a plain-UDP citizen, and
a real Chromium on the console over HTTPS. Certificates are made fresh by a test CA.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import re
import socket
import ssl
import subprocess
import sys
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from dispatcher.credentials import ensure_credentials
from pbx.phone.call import Call
from pbx.phone.phone import Phone
from tests.browser import chromium, settled
from tests.certs import CenterCertificates, make_certificates
from tests.e2e.hotline_helpers import getvar
from tests.harness import (
    PATIENCE,
    AmiWatch,
    SiagaProcess,
    free_port,
    wait_for,
    write_test_config,
)
from tests.phones import PhoneFactory

pytestmark = pytest.mark.asterisk

QUEUE = "operators"


class TlsCenter:
    """The running center, its test CA, and where its TLS listeners are."""

    def __init__(self, proc: SiagaProcess, certs: CenterCertificates) -> None:
        self.proc = proc
        self.certs = certs
        self.center = proc.center
        assert self.center.tls is not None
        self.sip_tls = f"{self.center.sip.host}:{self.center.tls.sip_port}"
        self.sip_udp = f"{self.center.sip.host}:{self.center.sip.port}"
        self.base = f"https://{self.center.http.host}:{self.center.http.port}"
        self.creds = ensure_credentials(self.center)

    def operator(self, phones: PhoneFactory, n: int = 1, **options: object) -> Phone:
        """Operator ``n`` registered over TLS (SRTP mandatory unless ``options`` say)."""
        ext = self.center.operators[n - 1].extension
        return phones.extension(ext, self.creds.password(ext), self.sip_tls,  # type: ignore[return-value]
                                name=f"operator{n}", tls=True, tls_ca=str(self.certs.ca),
                                **{"srtp": "mandatory", **options})


@contextmanager
def running_center(tmp: Path, **tls: object) -> Iterator[TlsCenter]:
    """The example city with transport security on (``tls`` adds to the section), on free
    loopback ports, stopped when the block ends."""
    certs = make_certificates(tmp / "certs")
    config = write_test_config(tmp / "center.yaml")
    doc = yaml.safe_load(config.read_text())
    doc["tls"] = {"certificate": str(certs.certificate), "key": str(certs.key),
                  "sip_port": free_port(), **tls}
    config.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    proc = SiagaProcess(config, tmp / "state")
    proc.start()
    try:
        yield TlsCenter(proc, certs)
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def tls_center(tmp_path_factory: pytest.TempPathFactory,
               asterisk_install) -> Iterator[TlsCenter]:  # noqa: ANN001
    """The center with the defaults of a tls section: SRTP required of staff."""
    with running_center(tmp_path_factory.mktemp("tls")) as center:
        yield center


@pytest.fixture
def ami(tls_center: TlsCenter) -> Iterator[AmiWatch]:
    """An AMI connection to the center's Asterisk recording events, for one test."""
    watch = tls_center.proc.ami()
    try:
        yield watch
    finally:
        watch.close()


def reach_operator(tls_center: TlsCenter, ami: AmiWatch, citizen: Phone,
                   operator: Phone) -> tuple[Call, Call, dict[str, str]]:
    """The citizen calls the hotline, asks for an operator (0), the operator answers.

    Returns both calls and the queue's AgentConnect event (Channel: the citizen's channel,
    DestChannel: the operator's).
    """
    call = citizen.call(tls_center.center.hotline[0])
    call.wait_confirmed(15)
    call.send_dtmf("0")
    taken = operator.answer(30)
    connect = ami.wait_event("AgentConnect", 15, Queue=QUEUE)
    assert connect["DestChannel"].startswith(f"PJSIP/{operator.user}-")
    return call, taken, connect


def test_given_tls_on_when_a_citizen_app_calls_over_tls_with_srtp_then_an_operator_on_tls_talks_with_it(  # noqa: E501
        tls_center: TlsCenter, phones: PhoneFactory, ami: AmiWatch) -> None:
    """An operator's softphone registers over TLS (the CA checked); a citizen's app calls
    the hotline over TLS with SRTP mandatory; through the IVR and the queue the operator
    answers with SRTP mandatory too. Each hears the other's tone, and Asterisk reports both
    legs' signalling and media as secure: nothing of the call crosses the network in clear."""
    operator = tls_center.operator(phones)
    assert operator.registered
    citizen = phones._keep(Phone(phones.stack, "081355500001", server=tls_center.sip_tls,
                                 name="citizen-app", tls=True,
                                 tls_ca=str(tls_center.certs.ca), srtp="mandatory"))
    call, taken, connect = reach_operator(tls_center, ami, citizen, operator)
    heard = phones.two_way_audio(call, taken)
    assert heard.both, heard
    for channel in (connect["Channel"], connect["DestChannel"]):
        assert getvar(ami, channel, "CHANNEL(pjsip,secure)") == "1", channel
        assert getvar(ami, channel, "CHANNEL(rtp,secure)") == "1", channel


def test_given_tls_on_when_a_citizen_calls_over_plain_udp_then_the_hotline_still_answers(
        tls_center: TlsCenter, phones: PhoneFactory, ami: AmiWatch) -> None:
    """Citizens' phones know nothing of TLS: an anonymous caller on plain UDP and RTP still
    reaches the operator (on TLS and SRTP), and both hear each other."""
    operator = tls_center.operator(phones)
    citizen = phones._keep(Phone(phones.stack, "081355500002", server=tls_center.sip_udp,
                                 name="citizen-udp"))
    call, taken, connect = reach_operator(tls_center, ami, citizen, operator)
    heard = phones.two_way_audio(call, taken)
    assert heard.both, heard
    assert getvar(ami, connect["Channel"], "CHANNEL(rtp,secure)") == "0"
    assert getvar(ami, connect["DestChannel"], "CHANNEL(rtp,secure)") == "1"


@pytest.mark.parametrize("tls", [False, True], ids=["udp", "tls"])
def test_given_staff_srtp_required_when_a_staff_phone_offers_plain_rtp_then_refused(
        tls_center: TlsCenter, phones: PhoneFactory, tls: bool) -> None:
    """A staff account whose phone would talk in clear (plain RTP, over UDP or even over
    TLS) has its call refused with 488 instead of carrying an emergency conversation
    unencrypted; with the same account and SRTP, the call goes through."""
    ext = tls_center.center.operators[1].extension
    server = tls_center.sip_tls if tls else tls_center.sip_udp
    options = {"tls": True, "tls_ca": str(tls_center.certs.ca)} if tls else {}
    clear = phones.extension(ext, tls_center.creds.password(ext), server, name="clear",
                             **options)
    call = clear.call(tls_center.center.hotline[0])
    call.wait_disconnected(15)
    assert call.status_code == 488, (call.status_code, call.reason)
    assert call.confirmed_at is None
    clear.close()
    secure = tls_center.operator(phones, 2)
    ok = secure.call(tls_center.center.hotline[0])
    ok.wait_confirmed(15)


def test_given_https_on_when_plain_http_is_tried_then_nothing_is_served(
        tls_center: TlsCenter) -> None:
    """No plain-HTTP console is left to carry a password in clear: an http:// request to
    the console's port gets no HTTP answer, while https:// (the test CA trusted) serves the
    login page."""
    host, port = tls_center.center.http.host, tls_center.center.http.port
    plain = http.client.HTTPConnection(host, port, timeout=10)
    with pytest.raises((http.client.HTTPException, OSError)):
        plain.request("GET", "/login")
        plain.getresponse()
    plain.close()
    context = ssl.create_default_context(cafile=str(tls_center.certs.ca))
    with urllib.request.urlopen(tls_center.base + "/login", context=context,
                                timeout=10) as page:
        assert page.status == 200
        assert b"password" in page.read()


def handshake(host: str, port: int, ca: Path, version: ssl.TLSVersion) -> str:
    """Open TLS with exactly ``version`` offered; the version agreed, or why it failed."""
    context = ssl.create_default_context(cafile=str(ca))
    # Let this client offer old versions at all (OpenSSL's defaults refuse them locally):
    # what is checked is the server's refusal.
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():  # naming TLS 1.0/1.1 is deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = context.maximum_version = version
    try:
        with socket.create_connection((host, port), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname=host) as tls:
            return tls.version() or ""
    except (ssl.SSLError, OSError) as exc:
        return f"refused: {exc}"


@pytest.mark.parametrize("service", ["sip", "https"])
def test_given_tls_on_when_a_client_offers_only_tls_1_1_then_refused_and_1_2_accepted(
        tls_center: TlsCenter, service: str) -> None:
    """Neither the SIP TLS port nor the console's HTTPS port lets a client (or a
    man-in-the-middle forcing a downgrade) settle on TLS 1.0 or 1.1; TLS 1.2 works."""
    center = tls_center.center
    assert center.tls is not None
    port = center.tls.sip_port if service == "sip" else center.http.port
    host = center.sip.host if service == "sip" else center.http.host
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old_versions = (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1)
    for old in old_versions:
        assert handshake(host, port, tls_center.certs.ca, old).startswith("refused"), old
    assert handshake(host, port, tls_center.certs.ca, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"


def spki_hash(certificate: Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of the first certificate in a PEM file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificates(certificate.read_bytes())[0]
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def test_given_https_on_when_a_supervisor_logs_in_in_chromium_then_the_session_cookie_is_secure(
        tls_center: TlsCenter, tmp_path: Path) -> None:
    """A real Chromium (trusting exactly the center's key) logs in over HTTPS and reaches the
    wallboard; the session cookie it holds is Secure and HttpOnly, so the browser will never
    send it over plain HTTP, nor show it to a script."""
    from selenium.webdriver.common.by import By

    center = tls_center.center
    supervisor = center.supervisors[0]
    pin = f"--ignore-certificate-errors-spki-list={spki_hash(tls_center.certs.certificate)}"
    with chromium(pin) as browser:
        browser.get(tls_center.base + "/wallboard")
        wait_for(lambda: "/login" in browser.current_url, 10, "the login page")
        browser.find_element(By.ID, "extension").send_keys(supervisor)
        browser.find_element(By.ID, "password").send_keys(
            tls_center.creds.console_passwords[supervisor])
        browser.find_element(By.ID, "login").click()
        wait_for(settled(lambda: browser.current_url.endswith("/wallboard")
                         and browser.find_element(By.TAG_NAME, "body").get_attribute(
                             "data-loaded")),
                 20, "the wallboard over HTTPS")
        assert browser.current_url.startswith("https://")
        cookies = {c["name"]: c for c in browser.get_cookies()}
        session = cookies["siaga_session"]
        assert session["secure"] is True, session
        assert session["httpOnly"] is True, session
        browser.save_screenshot(str(tmp_path / "console-https.png"))


def test_given_staff_srtp_optional_when_the_queue_rings_a_clear_or_an_encrypted_desk_then_both_answer(  # noqa: E501
        tmp_path_factory: pytest.TempPathFactory, asterisk_install,  # noqa: ANN001
        phones: PhoneFactory) -> None:
    """``staff: optional`` (a center whose desk phones are not all TLS-capable): the queue
    reaches an operator registered on plain UDP (plain RTP) and, in turn, one registered
    over TLS (SRTP), each as its phone can; a citizen's call is answered either way."""
    with running_center(tmp_path_factory.mktemp("tls-optional"), staff="optional") as center:
        watch = center.proc.ami()
        try:
            for secure in (False, True):
                if secure:
                    # Asterisk's optimistic offer is RTP/AVP with keys: a phone set to
                    # optional SRTP takes them, one set to mandatory would refuse it.
                    desk = center.operator(phones, 2, srtp="optional")
                else:
                    ext = center.center.operators[0].extension
                    desk = phones.extension(ext, center.creds.password(ext), center.sip_udp,
                                            name="clear-desk")
                citizen = phones._keep(Phone(phones.stack, f"08135550001{int(secure)}",
                                             server=center.sip_udp, name="citizen"))
                call, taken, connect = reach_operator(center, watch, citizen, desk)
                assert getvar(watch, connect["DestChannel"], "CHANNEL(rtp,secure)") == (
                    "1" if secure else "0")
                heard = phones.two_way_audio(call, taken)
                assert heard.both, heard
                citizen.close()
                desk.close()  # the next round's call must ring the other desk
                watch.events.clear()
        finally:
            watch.close()
            phones.close_all()  # while their registrar still runs


def test_given_tls_on_when_siaga_phone_runs_with_tls_and_srtp_then_it_registers_and_calls(
        tls_center: TlsCenter) -> None:
    """The headless ``siaga phone`` an administrator tests a desk with speaks TLS and SRTP
    too: it registers as an operator over TLS (the CA checked) and its call to the hotline
    is answered."""
    ext = tls_center.center.operators[2].extension
    done = subprocess.run(
        [str(Path(sys.executable).parent / "siaga"), "phone", "--server", tls_center.sip_tls,
         "--tls", "--ca", str(tls_center.certs.ca), "--srtp", "mandatory", "--user", ext,
         # One argument: a generated password may start with "-" (argparse: an option).
         f"--password={tls_center.creds.password(ext)}", "--call",
         tls_center.center.hotline[0], "--hangup-after", "1",
         "--timeout", str(15 * PATIENCE)],
        capture_output=True, text=True, timeout=120 * PATIENCE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"registration 200 ", done.stdout), done.stdout
    assert "CONFIRMED" in done.stdout, done.stdout
