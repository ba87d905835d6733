"""``/panic``: the citizens' panic app, a Progressive Web App served from the package.

Static files only (``dispatcher/web/panic/static/``): the page talks to the API (``/api/v1/enrol``,
``/api/v1/alerts``) with the device's own token, which it keeps on the phone. No cookie and
no login of the console are involved. Every file is sent with a policy that lets the page
run only its own script and reach only its own origin, and with ``no-cache`` so a phone
online always revalidates it (offline, the service worker serves its cached copy).
"""

from __future__ import annotations

from importlib import resources

from twisted.web import resource
from twisted.web.iweb import IRequest

from dispatcher.api.errors import error_body

__all__ = ["PANIC_FILES", "PanicApp"]

# The app's files and their types; nothing else under /panic/ exists.
PANIC_FILES = {
    "index.html": b"text/html; charset=utf-8",
    "app.js": b"text/javascript; charset=utf-8",
    "app.css": b"text/css; charset=utf-8",
    "sw.js": b"text/javascript; charset=utf-8",
    "manifest.webmanifest": b"application/manifest+json",
    "icon.svg": b"image/svg+xml",
}

HEADERS = {
    b"Content-Security-Policy": b"default-src 'none'; script-src 'self'; style-src 'self'; "
                                b"img-src 'self'; connect-src 'self'; manifest-src 'self'; "
                                b"worker-src 'self'; base-uri 'none'; form-action 'none'; "
                                b"frame-ancestors 'none'",
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"no-referrer",
    b"X-Frame-Options": b"DENY",
    b"Cache-Control": b"no-cache",
    # Geolocation for this origin's own pages only.
    b"Permissions-Policy": b"geolocation=(self), camera=(), microphone=()",
}


class PanicApp(resource.Resource):
    """``/panic`` redirects to ``/panic/``; ``/panic/`` is the page; then its few files."""

    isLeaf = True

    def render_GET(self, request: IRequest) -> bytes:  # noqa: N802
        """One of :data:`PANIC_FILES`, else a JSON 404."""
        path = request.postpath
        if not path:
            # The service worker's scope is /panic/: the page must be loaded under it.
            request.redirect(b"/panic/")
            return b""
        name = "index.html" if path == [b""] else path[0].decode("ascii", "replace")
        if len(path) > 1 or name not in PANIC_FILES:
            request.setResponseCode(404)
            request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
            return error_body("not_found", "no such file in the panic app")
        data = resources.files("dispatcher.web.panic").joinpath("static", name).read_bytes()
        for header, value in HEADERS.items():
            request.setHeader(header, value)
        request.setHeader(b"Content-Type", PANIC_FILES[name])
        return data
