"""The console page: its panels by id (the scripts' contract), Bahasa first and English,
and a script that only ever puts pushed values into the page as text."""

from __future__ import annotations

import json
import re
from importlib import resources

from tests.unit.web.test_web_console import world  # noqa: F401 (the fixture)


def _texts(body: bytes) -> dict:
    block = re.search(rb'<script type="application/json" id="console-text">(.*?)</script>',
                      body, re.S)
    assert block is not None
    return json.loads(block.group(1))


def test_given_an_operator_when_opening_the_console_then_every_panel_and_the_desk_buttons(
        world) -> None:  # noqa: ANN001, F811
    """The page has each panel the scripts fill, the desk's buttons with the four pause
    reasons, the CSRF meta, and loads push.js before console.js."""
    center, creds, _, client, _ = world
    ext = center.operators[0].extension
    client.login(ext, creds.console_passwords[ext])
    page = client.request("GET", "/console")
    assert page.status == 200
    body = page.body
    for panel in ("desk", "card", "card-summary", "card-actions", "card-location",
                  "card-history", "card-incident", "queue", "owed", "incidents"):
        assert f'id="{panel}"'.encode() in body, panel
    for reason in ("break", "meal", "briefing", "technical"):
        assert f'id="desk-pause-{reason}"'.encode() in body
    assert b'name="siaga-csrf"' in body
    assert body.index(b"/static/push.js") < body.index(b"/static/console.js")
    texts = _texts(body)
    assert texts["me"] == ext and texts["agencies"]["police"] == center.agencies[0].name
    assert texts["text"]["call_back_now"] == "Telepon balik sekarang"  # Bahasa first
    english = _texts(client.request("GET", "/console?lang=en").body)
    assert english["text"]["call_back_now"] == "Call back now"
    assert set(english["text"]) == set(texts["text"])  # every word in both languages


def test_given_the_console_script_when_read_then_values_only_ever_become_text() -> None:
    """console.js shows caller IDs, device names and reasons: no API that parses HTML
    appears in it, and it announces the card as the contract says."""
    source = resources.files("dispatcher.web").joinpath("static", "console.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function"):
        assert sink not in source, sink
    assert 'new CustomEvent("siaga:card", {detail: window.siagaCard})' in source
    assert "window.siagaCard =" in source and "window.siagaAction = siagaAction" in source
    assert '"X-Siaga-CSRF": CSRF' in source


def test_given_the_console_and_supervisor_pages_then_a_hidden_node_banner_filled_as_text(
        world) -> None:  # noqa: ANN001, F811
    """Both pages carry the node banner (hidden until the pushed ``console`` view names a
    node down) with its words in the page's language, and load nodes.js after push.js;
    nodes.js only ever sets text."""
    center, creds, _, client, _ = world
    sup = center.supervisors[0]
    client.login(sup, creds.console_passwords[sup])
    for path in ("/console", "/supervisor", "/console?lang=en"):
        body = client.request("GET", path).body
        banner = re.search(rb'<p id="nodes-banner"[^>]*>', body)
        assert banner is not None, path
        assert b" hidden" in banner.group(0) and b'role="alert"' in banner.group(0)
        assert b"{names}" in banner.group(0)
        assert body.index(b"/static/push.js") < body.index(b"/static/nodes.js")
    assert b"is down" in client.request("GET", "/supervisor?lang=en").body
    source = resources.files("dispatcher.web").joinpath("static", "nodes.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in source, sink
    assert "banner.textContent =" in source
