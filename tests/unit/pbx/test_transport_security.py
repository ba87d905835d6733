"""Transport security's config and generated files: TLS for SIP with SRTP, HTTPS for the
console. Off by default; when on, every unusable certificate or key is a config error naming
file, line and key, and what Asterisk and the site get follows the config."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from dialplans.render import AsteriskPaths, render_all
from dispatcher.config.loader import load_center
from dispatcher.credentials import ensure_credentials
from dispatcher.tls import https_options, install_for_asterisk
from dispatcher.web.site import build_site
from dispatcher.yamlnodes import ConfigError
from tests.certs import CenterCertificates, make_certificates, other_key, write_private
from tests.harness import EXAMPLE_CONFIG


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CenterCertificates:
    """A CA and the center's certificate and key, made for this module."""
    return make_certificates(tmp_path_factory.mktemp("certs"))


def with_tls(tmp_path: Path, block: str) -> Path:
    """The example config with a ``tls:`` section appended."""
    path = tmp_path / "siaga.example.yaml"
    path.write_text(EXAMPLE_CONFIG.read_text() + "\ntls:\n" + block)
    return path


def tls_block(cert: Path, key: Path, extra: str = "") -> str:
    return f"  certificate: {cert}\n  key: {key}\n{extra}"


def line_of(path: Path, start: str) -> int:
    """The last line starting with ``start`` (the appended section comes last)."""
    return max(i for i, line in enumerate(path.read_text().splitlines(), start=1)
               if line.startswith(start))


def pjsip_section(pjsip: str, name: str) -> str:
    return pjsip[pjsip.index(f"[{name}]"):].split("\n\n", 1)[0]


def render(center) -> dict[str, str]:  # noqa: ANN001
    paths = AsteriskPaths.for_center(center, "/mods", "/usr/share/asterisk")
    return render_all(center, ensure_credentials(center), paths)


def test_given_the_example_when_loaded_then_transport_security_is_off(tmp_path: Path) -> None:
    """The single-node center's defaults stay: no TLS, no SRTP module, plain HTTP."""
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    assert center.tls is None
    files = render(center)
    assert "protocol = tls" not in files["pjsip.conf"]
    assert "media_encryption" not in files["pjsip.conf"]
    assert "res_srtp" not in files["modules.conf"]


def test_given_a_tls_section_when_loaded_then_paths_port_and_staff_policy_are_kept(
        tmp_path: Path, certs: CenterCertificates) -> None:
    """Defaults: SIP over TLS on 5061 and SRTP required of staff phones."""
    center = load_center(with_tls(tmp_path, tls_block(certs.certificate, certs.key)),
                         state_dir=tmp_path / "state")
    assert center.tls is not None
    assert (center.tls.certificate, center.tls.key) == (certs.certificate, certs.key)
    assert center.tls.sip_port == 5061
    assert center.tls.staff == "required"


def test_given_relative_paths_when_loaded_then_taken_from_the_config_folder(
        tmp_path: Path, certs: CenterCertificates) -> None:
    """Like state_dir, relative certificate paths are read from the config file's folder."""
    (tmp_path / "c.crt").write_bytes(certs.certificate.read_bytes())
    write_private(tmp_path / "c.key", certs.key.read_bytes())
    center = load_center(with_tls(tmp_path, "  certificate: c.crt\n  key: c.key\n"),
                         state_dir=tmp_path / "state")
    assert center.tls is not None and center.tls.certificate == tmp_path / "c.crt"


def _missing(tmp: Path, certs: CenterCertificates) -> tuple[str, str]:
    return tls_block(tmp / "nowhere.crt", certs.key), "tls.certificate"


def _not_a_certificate(tmp: Path, certs: CenterCertificates) -> tuple[str, str]:
    (tmp / "junk.crt").write_text("hello\n")
    return tls_block(tmp / "junk.crt", certs.key), "tls.certificate"


def _key_is_the_certificate(tmp: Path, certs: CenterCertificates) -> tuple[str, str]:
    write_private(tmp / "swapped.key", certs.certificate.read_bytes())
    return tls_block(certs.certificate, tmp / "swapped.key"), "tls.key"


def _key_of_another(tmp: Path, certs: CenterCertificates) -> tuple[str, str]:
    return tls_block(certs.certificate, other_key(tmp)), "tls.key"


def _key_readable_by_all(tmp: Path, certs: CenterCertificates) -> tuple[str, str]:
    key = tmp / "open.key"
    key.write_bytes(certs.key.read_bytes())
    os.chmod(key, 0o644)
    return tls_block(certs.certificate, key), "tls.key"


def _key_unreadable(tmp: Path, certs: CenterCertificates) -> tuple[str, str]:
    return tls_block(certs.certificate, tmp), "tls.key"  # a directory: cannot be read


def _key_encrypted(tmp: Path, certs: CenterCertificates) -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(certs.key.read_bytes(), None)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.BestAvailableEncryption(b"secret"))
    return tls_block(certs.certificate, write_private(tmp / "enc.key", pem)), "tls.key"


def _port_clash(tmp: Path, certs: CenterCertificates) -> tuple[str, str]:
    return tls_block(certs.certificate, certs.key, "  sip_port: 8080\n"), "tls.sip_port"


def _bad_policy(tmp: Path, certs: CenterCertificates) -> tuple[str, str]:
    return tls_block(certs.certificate, certs.key, "  staff: maybe\n"), "tls.staff"


def _no_key(tmp: Path, certs: CenterCertificates) -> tuple[str, str]:
    return f"  certificate: {certs.certificate}\n", "tls.key"


@pytest.mark.parametrize(("make", "reason"), [
    (_missing, "does not exist"),
    (_not_a_certificate, "no PEM certificate"),
    (_key_is_the_certificate, "no usable PEM private key"),
    (_key_of_another, "is not the key of the certificate"),
    (_key_readable_by_all, "readable by every user"),
    (_key_unreadable, "is a directory"),
    (_key_encrypted, "is encrypted"),
    (_port_clash, "already used"),
    (_bad_policy, "must be 'required' or 'optional'"),
    (_no_key, "is required"),
])
def test_given_an_unusable_tls_setting_when_loaded_then_the_error_names_file_line_and_key(
        tmp_path: Path, certs: CenterCertificates, make, reason: str) -> None:  # noqa: ANN001
    """A center that asked for TLS never starts in clear by mistake: each bad certificate,
    key or setting stops the load with file:line, the key and a reason."""
    block, key = make(tmp_path, certs)
    path = with_tls(tmp_path, block)
    with pytest.raises(ConfigError) as err:
        load_center(path, state_dir=tmp_path / "state")
    assert err.value.path == key
    assert reason in err.value.reason
    assert err.value.file == "siaga.example.yaml"
    field = key.split(".")[1] + ":"
    expected = (line_of(path, "  " + field) if field in block
                else line_of(path, "tls:") + 1)  # an absent key: where its section starts
    assert err.value.line == expected
    assert str(err.value).startswith(f"siaga.example.yaml:{expected} {key}: ")


def test_given_tls_when_rendered_then_asterisk_listens_tls12_and_staff_need_srtp(
        tmp_path: Path, certs: CenterCertificates) -> None:
    """pjsip.conf gains a TLS 1.2 transport on the TLS port with the copied files; staff
    phones are reached over it with SRTP required; the anonymous citizen accepts SRTP but
    keeps plain RTP; modules.conf loads res_srtp."""
    center = load_center(with_tls(tmp_path, tls_block(certs.certificate, certs.key)),
                         state_dir=tmp_path / "state")
    files = render(center)
    pjsip = files["pjsip.conf"]
    etc = center.run_dir / "etc"
    tls = pjsip_section(pjsip, "transport-tls")
    assert "protocol = tls" in tls
    assert f"bind = {center.sip.host}:5061" in tls
    assert "method = tlsv1_2" in tls
    assert f"cert_file = {etc / 'tls-certificate.pem'}" in tls
    assert f"priv_key_file = {etc / 'tls-key.pem'}" in tls
    # The UDP transport stays for citizens and the trunk.
    assert "[transport-udp]" in pjsip
    staff = pjsip_section(pjsip, "staff")
    assert "transport = transport-tls" in staff
    assert "media_encryption = sdes" in staff
    assert "media_encryption_optimistic = no" in staff
    anonymous = pjsip_section(pjsip, "anonymous")
    assert "media_encryption = sdes" in anonymous
    assert "media_encryption_optimistic = yes" in anonymous
    assert "require => res_srtp.so" in files["modules.conf"]


def test_given_staff_optional_when_rendered_then_srtp_is_offered_not_enforced(
        tmp_path: Path, certs: CenterCertificates) -> None:
    """``staff: optional``: staff endpoints are not pinned to TLS and accept plain RTP."""
    center = load_center(with_tls(tmp_path, tls_block(certs.certificate, certs.key,
                                                      "  staff: optional\n")),
                         state_dir=tmp_path / "state")
    staff = pjsip_section(render(center)["pjsip.conf"], "staff")
    assert "transport-tls" not in staff
    assert "media_encryption_optimistic = yes" in staff


def test_given_tls_when_installed_for_asterisk_then_copies_are_private_and_identical(
        tmp_path: Path, certs: CenterCertificates) -> None:
    """Asterisk (chrooted, perhaps unprivileged) reads copies in its configuration folder,
    with the generated files' mode: not readable by other users, even under umask 0."""
    etc = tmp_path / "etc"
    etc.mkdir()
    old = os.umask(0)
    try:
        cert, key = install_for_asterisk(certs.certificate, certs.key, etc)
    finally:
        os.umask(old)
    assert cert.read_bytes() == certs.certificate.read_bytes()
    assert key.read_bytes() == certs.key.read_bytes()
    for path in (cert, key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in etc.iterdir()) == ["tls-certificate.pem", "tls-key.pem"]


def test_given_the_certificate_when_https_options_built_then_tls12_is_the_minimum(
        certs: CenterCertificates) -> None:
    """The console's context refuses TLS 1.0 and 1.1 and serves the chain after the leaf."""
    from OpenSSL import SSL

    options = https_options(certs.certificate, certs.key)
    flags = options.getContext().set_options(0)  # adds nothing, returns the flags in force
    assert flags & SSL.OP_NO_TLSv1
    assert flags & SSL.OP_NO_TLSv1_1
    assert len(options.extraCertChain) == 1


@implementer(ISSLTransport)
class _TLSStringTransport(StringTransport):
    """A StringTransport the request sees as TLS (what Twisted's TLS wrapper provides)."""

    def getPeerCertificate(self) -> None:  # noqa: N802 - ISSLTransport's name
        return None

    def setTcpNoDelay(self, enabled: bool) -> None:  # noqa: N802 - ITCPTransport's name
        """HTTP asks a TCP transport for no Nagle delay; nothing to do on a test wire."""


@pytest.mark.parametrize(("transport", "secure"),
                         [(_TLSStringTransport, True), (StringTransport, False)])
def test_given_a_login_when_over_https_then_the_session_cookie_is_secure(
        tmp_path: Path, transport: type[StringTransport], secure: bool) -> None:
    """A session cookie issued over HTTPS carries Secure, so the browser never sends it in
    clear; over plain HTTP (TLS off) it cannot carry it, or the browser would drop it."""
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    creds = ensure_credentials(center)
    clock = task.Clock()
    clock.advance(1_800_000_000)
    site = build_site(center, creds, clock.seconds, wallboard=dict,
                      reports=lambda _query: defer.succeed(("text/plain", "")))
    operator = center.operators[0].extension
    body = f"extension={operator}&password={creds.console_passwords[operator]}".encode()
    peer = IPv4Address("TCP", "127.0.0.1", 40000)
    channel = site.buildProtocol(peer)
    wire = transport(peerAddress=peer)
    channel.makeConnection(wire)
    channel.dataReceived(
        b"POST /login HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    channel.connectionLost(None)
    head = wire.value().split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    assert head[0].split()[1] == "302", head
    cookie = next(line.split(": ", 1)[1] for line in head
                  if line.lower().startswith("set-cookie: siaga_session="))
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert ("secure" in flags) is secure, cookie
    assert "httponly" in flags


def test_given_siaga_phone_with_tls_options_when_parsed_then_they_land() -> None:
    """``siaga phone --tls --ca FILE --srtp mandatory`` reaches the handler; without them
    it stays a plain UDP phone without SRTP, as before; a made-up SRTP mode is refused."""
    import argparse

    from pbx.phone import cli

    root = argparse.ArgumentParser(prog="siaga")
    cli.register(root.add_subparsers(dest="command", required=True))
    base = ["phone", "--server", "127.0.0.1:5061", "--user", "201", "--password", "pw"]
    args = root.parse_args([*base, "--tls", "--ca", "/ca.pem", "--srtp", "mandatory"])
    assert (args.tls, args.ca, args.srtp) == (True, "/ca.pem", "mandatory")
    plain = root.parse_args(base)
    assert (plain.tls, plain.ca, plain.srtp) == (False, None, "off")
    with pytest.raises(SystemExit):
        root.parse_args([*base, "--srtp", "maybe"])
