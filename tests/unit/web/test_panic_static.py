"""``/panic``: the app's files only, with a policy that runs only the app's own script."""

from __future__ import annotations

import json

from twisted.web.test.requesthelper import DummyRequest

from dispatcher.web.panic import PANIC_FILES, PanicApp


def get(postpath: list[bytes]) -> tuple[DummyRequest, bytes]:
    """GET ``/panic/<postpath>`` on the resource; the request and its body."""
    request = DummyRequest(postpath)
    request.method = b"GET"
    body = PanicApp().render(request)
    return request, body


def test_given_each_file_of_the_app_when_fetched_then_served_with_its_type_and_policy() -> None:
    """Every file exists in the package (setup.py ships it), with its type, a CSP without
    inline script, nosniff and no-cache (a phone online revalidates the app)."""
    for name, content_type in PANIC_FILES.items():
        request, body = get([name.encode()])
        assert body, name
        headers = request.responseHeaders
        assert headers.getRawHeaders(b"content-type") == [content_type]
        csp = headers.getRawHeaders(b"content-security-policy")[0]
        assert b"script-src 'self';" in csp and b"unsafe-inline" not in csp
        assert b"connect-src 'self'" in csp and b"frame-ancestors 'none'" in csp
        assert headers.getRawHeaders(b"x-content-type-options") == [b"nosniff"]
        assert headers.getRawHeaders(b"cache-control") == [b"no-cache"]


def test_given_the_bare_path_when_fetched_then_redirected_under_the_worker_scope() -> None:
    """``/panic`` → ``/panic/`` (the service worker's scope); ``/panic/`` is the page."""
    request, _ = get([])
    assert request.responseCode == 302
    assert request.responseHeaders.getRawHeaders(b"location") == [b"/panic/"]
    request, body = get([b""])
    assert b"<html" in body and request.responseHeaders.getRawHeaders(
        b"content-type") == [b"text/html; charset=utf-8"]


def test_given_other_names_or_traversal_when_fetched_then_json_404() -> None:
    """Names outside the list, dot-dot, nested paths and the package's Python: 404 JSON."""
    for postpath in ([b"__init__.py"], [b".."], [b"..", b"__init__.py"],
                     [b"static", b"app.js"], [b"app.js", b""], [b"%2e%2e"]):
        request, body = get(postpath)
        assert request.responseCode == 404, postpath
        assert json.loads(body)["error"] == "not_found"


def test_given_the_app_script_then_no_server_value_is_parsed_as_html() -> None:
    """The app writes server values with textContent: no innerHTML, outerHTML,
    insertAdjacentHTML, document.write or eval anywhere in its files."""
    from importlib import resources

    for name in ("app.js", "sw.js", "index.html"):
        text = resources.files("dispatcher.web.panic").joinpath("static", name).read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
                     "eval(", "new Function"):
            assert sink not in text, (name, sink)
