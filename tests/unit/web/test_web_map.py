"""The card's map on the HTTP side: the vendored Leaflet served (and nothing else of the
package), the page's policy opening images to the configured tile server only, the config's
map keys refused with their line."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from twisted.internet import defer, task

from dispatcher.config.loader import load_center
from dispatcher.credentials import ensure_credentials
from dispatcher.web.site import build_site
from dispatcher.yamlnodes import ConfigError
from tests.harness import EXAMPLE_CONFIG, write_test_config
from tests.unit.web.test_web_console import Client

STATIC = Path(__file__).parents[3] / "dispatcher" / "web" / "static"


def _client(tmp_path: Path, console: dict | None = None) -> tuple[Client, object, object]:
    config = write_test_config(tmp_path / "c.yaml",
                               sections={"console": console} if console else None)
    center = load_center(config, state_dir=tmp_path / "state")
    creds = ensure_credentials(center)
    clock = task.Clock()
    clock.advance(1_800_000_000)
    site = build_site(center, creds, clock.seconds, wallboard=dict,
                      reports=lambda _q: defer.succeed(("text/csv", "")))
    return Client(site), center, creds


@pytest.mark.parametrize("path,ctype", [
    ("/static/vendor/leaflet/leaflet.js", "text/javascript"),
    ("/static/vendor/leaflet/leaflet.css", "text/css"),
    ("/static/vendor/leaflet/images/marker-icon.png", "image/png"),
    ("/static/console-map.js", "text/javascript"),
])
def test_given_the_vendored_leaflet_when_fetched_then_served_as_packaged(
        tmp_path: Path, path: str, ctype: str) -> None:
    """Leaflet's script, style and images come from the package byte for byte."""
    client, _, _ = _client(tmp_path)
    response = client.request("GET", path)
    assert response.status == 200 and response.header("content-type").startswith(ctype)
    on_disk = (STATIC / path.removeprefix("/static/")).read_bytes()
    assert hashlib.sha256(response.body).digest() == hashlib.sha256(on_disk).digest()
    assert response.header("x-content-type-options") == "nosniff"


@pytest.mark.parametrize("path", [
    "/static/vendor/leaflet/../../site.py",
    "/static/vendor/leaflet/../../../panic/static/app.js",
    "/static/vendor/leaflet/images/..%2F..%2F..%2F..%2Fpanic%2Fstatic%2Fapp.js",
    "/static/vendor/leaflet/%2e%2e/%2e%2e/site.py",
    "/static/vendor/leaflet/..%2f..%2fsite.js",
    "/static/vendor/leaflet/images/../../../templates/console.html.j2",
    "/static/vendor/leaflet/LICENSE",
    "/static/vendor/leaflet/VENDORED.md",
    "/static/vendor/other/x.js",
    "/static/vendor/leaflet/.hidden.js",
    "/static/vendor/leaflet/images/",
    "/static/vendor/leaflet/images/x/y.png",
    "/static//etc/passwd.js",
    "/static/vendor/leaflet/leaflet.js/x.js",
])
def test_given_a_path_outside_the_folders_when_fetched_then_404(tmp_path: Path,
                                                                 path: str) -> None:
    """Traversal, encoded slashes, other suffixes and other folders: a JSON 404 each."""
    client, _, _ = _client(tmp_path)
    response = client.request("GET", path)
    assert response.status == 404 and response.json()["error"] == "not_found", path


def _console_page(client: Client, center, creds):  # noqa: ANN001, ANN202
    ext = center.operators[0].extension
    client.login(ext, creds.console_passwords[ext])
    return client.request("GET", "/console")


def test_given_tiles_configured_when_the_console_opens_then_images_from_that_host_only(
        tmp_path: Path) -> None:
    """img-src names the tile server's origin, and no other directive changes."""
    client, center, creds = _client(tmp_path, {
        "map_tiles": "https://tiles.example.id/osm/{z}/{x}/{y}.png",
        "map_attribution": "<b>© OpenStreetMap</b>"})
    page = _console_page(client, center, creds)
    policy = page.header("content-security-policy")
    assert "img-src 'self' https://tiles.example.id" in policy
    assert policy.startswith("default-src 'self'; style-src 'self' 'unsafe-inline'; "
                             "frame-ancestors 'none'")
    assert policy.count("tiles.example.id") == 1
    assert b"https://tiles.example.id/osm/{z}/{x}/{y}.png" in page.body
    assert b"<b>" not in page.body.split(b'id="map-config"')[1].split(b"</script>")[0]
    wallboard = client.request("GET", "/wallboard")
    assert wallboard.status == 200


def test_given_no_tiles_when_the_console_opens_then_the_policy_is_unchanged(
        tmp_path: Path) -> None:
    """Without tiles the page loads nothing from anywhere but itself."""
    client, center, creds = _client(tmp_path)
    page = _console_page(client, center, creds)
    assert "img-src" not in page.header("content-security-policy")
    assert b"/static/console-map.js" in page.body and b'"tiles": null' in page.body


@pytest.mark.parametrize("value,reason", [
    ("ftp://tiles.example.id/{z}/{x}/{y}.png", "http"),
    ("https://tiles.example.id/{z}/{x}.png", "{y}"),
    ("https://{s}.tile.example.id/{z}/{x}/{y}.png", "subdomains"),
    ("https://tiles.example.id/{z}/{x}/{y}.png?key=1", "http"),
    ("https://tiles.example.id;script-src */{z}/{x}/{y}.png", "http"),
    ("https://tiles.example.id/{z}/{x}/{y}.png' 'unsafe-inline", "http"),
])
def test_given_a_bad_tile_url_when_loading_then_the_key_and_line_are_named(
        tmp_path: Path, value: str, reason: str) -> None:
    """A tile URL the policy could not name safely is a config error at its line."""
    config = write_test_config(tmp_path / "c.yaml", sections={"console": {"map_tiles": value}})
    with pytest.raises(ConfigError) as err:
        load_center(config, state_dir=tmp_path / "s")
    text = str(err.value)
    assert re.match(r"^c\.yaml:\d+ console\.map_tiles: ", text) and reason in text, text


def test_given_a_sip_location_port_taken_when_loading_then_refused(tmp_path: Path) -> None:
    """The HEP port must not be SIP's, AMI's or HTTP's."""
    import yaml

    config = write_test_config(tmp_path / "c.yaml")
    doc = yaml.safe_load(config.read_text())
    doc["console"] = {"sip_location_port": doc["ami"]["port"]}
    config.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="sip_location_port"):
        load_center(config, state_dir=tmp_path / "s")
    assert EXAMPLE_CONFIG.exists()
