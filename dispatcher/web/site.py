"""The console's HTTP side: login, the wallboard, supervisors' reports; the API mounts here.

Pages need a console login (operators and supervisors, with the console password from
``siaga accounts``); reports need a supervisor. A session is a random token in a cookie
(HttpOnly, SameSite=Strict) and a row in the server's session table (``sessions.py``): logout
deletes the row, and each request checks the user's role in the current config. A POST whose
Origin is another site is refused. JSON errors carry a reason.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from twisted.web import resource, server
from twisted.web.iweb import IRequest

from dialplans.contract import PAUSE_REASONS
from dispatcher.api.base import JsonResource
from dispatcher.api.errors import error_body, json_body
from dispatcher.config.model import Center
from dispatcher.credentials import Credentials
from dispatcher.web.console_api import csrf_token
from dispatcher.web.limits import GuardedSite
from dispatcher.web.panic import PanicApp
from dispatcher.web.push import PushHub, PushResource
from dispatcher.web.sessions import (
    LoginThrottle,
    SessionTable,
    Staff,
    check_password,
    load_sessions,
    safe_next,
    save_sessions,
)

COOKIE = b"siaga_session"
MAX_FORM_BYTES = 4096

TEXT = {
    "id": {
        "login": "Masuk", "logout": "Keluar", "extension": "Ekstensi", "password": "Kata sandi",
        "wallboard": "Papan panggilan", "reports": "Laporan", "waiting": "Menunggu",
        "console": "Konsol",
        "nodes_down": "Node {names} mati: panggilan baru dilayani node yang lain.",
        "longest_wait": "Tunggu terlama", "available": "Operator siap",
        "active_calls": "Panggilan aktif", "callers": "Penelepon dalam antrean",
        "caller": "Penelepon", "wait": "Tunggu", "operators": "Operator", "name": "Nama",
        "state": "Status", "reason": "Alasan", "agencies": "Instansi", "agency": "Instansi",
        "phones_reachable": "Telepon terhubung", "updated": "Diperbarui",
        "callbacks": "Perlu ditelepon balik", "missed_reason": "Sebab",
        "since": "Sejak",
        "selftest_alarm": "ALARM: uji otomatis saluran darurat gagal berturut-turut",
        "bad_login": "Ekstensi atau kata sandi salah.",
        "throttled": "Terlalu banyak percobaan. Coba lagi dalam {seconds} detik.",
        # The operator's console (console.html.j2, console.js): Bahasa first.
        "desk": {
            "desk": "Meja saya", "card": "Panggilan", "no_call": "Tidak ada panggilan",
            "desk_login": "Masuk antrean", "desk_logout": "Keluar antrean",
            "pause": "Jeda", "unpause": "Lanjut", "caller_number": "Nomor penelepon",
            "caller_name": "Nama", "dialed": "Nomor dihubungi", "category": "Kategori",
            "language": "Bahasa", "waited": "Lama menunggu", "priority": "Prioritas",
            "origin": "Asal", "device": "Perangkat", "incident": "Insiden",
            "queue": "Penelepon menunggu", "owed": "Perlu ditelepon balik",
            "incidents": "Insiden terbuka", "position": "#", "caller": "Penelepon",
            "wait": "Tunggu", "reason": "Sebab", "since": "Sejak", "attempts": "Percobaan",
            "call_back_now": "Telepon balik sekarang", "state": "Status",
            "agency": "Instansi", "type": "Jenis", "none": "—",
            "failed": "Gagal", "owed_more": "dari",
        },
        "desk_labels": {
            "logged out": "keluar", "available": "siap", "paused": "jeda",
            "ringing": "berdering", "on call": "dalam panggilan", "offline": "tidak terhubung",
            "talking": "bicara", "ended": "selesai",
            "break": "istirahat", "meal": "makan", "briefing": "pengarahan",
            "technical": "gangguan teknis",
            "hotline": "saluran darurat", "alert": "peringatan aplikasi",
            "button": "tombol panik", "callback": "telepon balik",
            "police": "polisi", "fire": "kebakaran", "health": "kesehatan",
            "disaster": "bencana", "public_order": "ketertiban umum",
            "transport": "perhubungan", "operator": "operator", "unknown": "tidak memilih",
            "panic": "panik", "medical": "medis", "crime": "kejahatan", "other": "lainnya",
            "id": "Bahasa Indonesia", "en": "Inggris",
            "abandoned": "menutup saat menunggu", "dropped": "terputus",
            "pending": "menunggu", "new": "baru", "operator_ringing": "operator dipanggil",
            "handed_to_agency": "diserahkan ke instansi", "unreachable": "tak terjangkau",
        },
        # The call card's location and map (static/console-map.js).
        "map": {
            "location": "Lokasi", "coordinates": "Koordinat", "accuracy": "Akurasi",
            "fix_age": "Umur posisi", "source": "Sumber", "none": "Lokasi tidak diketahui",
            "loading": "Mencari lokasi…", "failed": "Lokasi tidak dapat dimuat",
            "open": "Buka di OpenStreetMap", "seconds": "{n} detik lalu",
            "minutes": "{n} menit lalu", "hours": "{n} jam lalu", "unknown": "tidak diketahui",
            "sources": {"alert": "GPS aplikasi darurat", "button": "lokasi tombol darurat",
                        "sip": "lokasi dari panggilan (SIP PIDF-LO)"},
        },
        # The wallboard's words for desk and callback states and reasons (the server sends
        # the plain English word; the page shows this label, the word when it has none).
        "labels": {
            "available": "siap", "ringing": "berdering", "on call": "dalam panggilan",
            "paused": "jeda", "offline": "tidak terhubung", "logged out": "keluar",
            "break": "istirahat", "meal": "makan", "briefing": "pengarahan",
            "technical": "gangguan teknis", "logged-out": "keluar",
            "abandoned": "menutup saat menunggu", "dropped": "terputus",
            "pending": "menunggu", "done": "selesai", "failed": "gagal",
        },
        # The call card's history and case work (static/console-incident.js, the
        # flagged numbers' page).
        "incident": {
            "history": "Riwayat penelepon", "days": "{days} hari terakhir",
            "no_history": "Tidak ada panggilan sebelumnya.",
            "withheld": "Nomor disembunyikan: tidak ada riwayat.",
            "earlier_calls": "Panggilan sebelumnya", "callbacks_owed": "Perlu ditelepon balik",
            "incidents": "Insiden", "flag_repeat": "PENELEPON BERULANG",
            "flag_prank": "PERNAH DITANDAI ISENG",
            "flag_note": "Hanya informasi: panggilan tetap dilayani.",
            "calls_in_window": "{count} panggilan dalam {hours} jam",
            "incident": "Insiden", "open": "Buka insiden", "category": "Kategori",
            "address": "Alamat", "note": "Catatan", "notes": "Catatan",
            "add_note": "Tambah catatan", "disposition": "Jenis panggilan",
            "mark": "Tandai", "close": "Tutup insiden", "outcome": "Hasil",
            "state": "Status", "no_incident": "Belum ada insiden untuk panggilan ini.",
            "saved": "Tersimpan.", "failed": "Gagal: {reason}",
            "flagged_title": "Nomor yang ditandai", "number": "Nomor", "calls": "Panggilan",
            "reasons": "Alasan", "none_flagged": "Tidak ada nomor yang ditandai.",
            "when": "Waktu", "outcome_call": "Hasil panggilan", "by": "Oleh",
            "values": {
                "emergency": "darurat nyata", "information": "informasi", "prank": "iseng",
                "silent": "diam", "test": "uji", "wrong_number": "salah sambung",
                "repeat": "berulang", "answered": "dijawab", "abandoned_ivr": "menutup di menu",
                "abandoned_queue": "menutup saat menunggu", "unanswered": "tidak dijawab",
                "dropped": "terputus", "in_progress": "berlangsung", "talking": "berbicara",
                "handed_to_agency": "diserahkan ke instansi", "closed": "ditutup",
                "new": "baru", "operator_ringing": "operator berdering",
                "unreachable": "tidak terjangkau", "cancelled": "dibatalkan",
                "police": "polisi", "fire": "pemadam kebakaran", "health": "kesehatan",
                "disaster": "bencana", "public_order": "ketertiban umum",
                "transport": "perhubungan", "other": "lainnya", "pending": "menunggu",
                "ringing": "berdering", "abandoned": "menutup saat menunggu",
                "alert": "tombol darurat", "medical": "medis", "crime": "kejahatan",
                "panic": "panik",
            },
        },
        # The call card's actions (static/console-actions.js, through /console/api/call).
        "actions": {
            "title": "Tindakan", "blind": "Sambungkan langsung", "consult": "Konsultasi dulu",
            "handover": "Serahkan", "cancel": "Batal, kembali ke penelepon",
            "threeway": "Panggilan bertiga", "leave": "Tinggalkan panggilan bertiga",
            "hold": "Tahan", "unhold": "Lanjutkan", "hangup": "Tutup panggilan",
            "progress": "Penyerahan", "mode_blind": "langsung", "mode_consult": "konsultasi",
            "mode_threeway": "bertiga", "requested": "diminta", "ringing": "berdering",
            "fallback": "tidak dijawab, cadangan berdering", "answered": "dijawab",
            "failed": "gagal, tidak ada yang menjawab", "cancelled": "dibatalkan",
            "handed_over": "diserahkan", "target_group": "kelompok",
            "target_fallback": "cadangan", "refused": "Ditolak",
            "agencies": {"police": "Polisi", "fire": "Pemadam Kebakaran",
                         "health": "Ambulans", "disaster": "Bencana (BPBD)",
                         "public_order": "Satpol PP", "transport": "Perhubungan"},
        },
        # The supervisor's page (dispatcher/web/templates/supervisor.html.j2).
        "sv": {
            "title": "Pengawas", "desks": "Meja operator", "call": "Panggilan saat ini",
            "duration": "Durasi", "listen": "Dengar", "whisper": "Bisiki operator",
            "barge": "Ikut bicara", "recent": "Panggilan terakhir", "started": "Mulai",
            "outcome": "Hasil", "recording": "Rekaman", "play": "Putar",
            "none": "tanpa rekaman", "idle": "—",
            "ringing_you": "Telepon Anda berdering: angkat untuk {mode} meja {desk}.",
            "refused": "Ditolak",
            "outcomes": {
                "answered": "dijawab", "abandoned_ivr": "ditutup di menu",
                "abandoned_queue": "ditutup saat antre", "unanswered": "tak terjawab",
                "dropped": "terputus",
            },
        },
    },
    "en": {
        "login": "Log in", "logout": "Log out", "extension": "Extension",
        "password": "Password", "wallboard": "Wallboard", "reports": "Reports",
        "console": "Console",
        "nodes_down": "Node {names} is down: new calls go to the other nodes.",
        "waiting": "Waiting", "longest_wait": "Longest wait", "available": "Operators free",
        "active_calls": "Active calls", "callers": "Callers in the queue", "caller": "Caller",
        "wait": "Wait", "operators": "Operators", "name": "Name", "state": "State",
        "reason": "Reason", "agencies": "Agencies", "agency": "Agency",
        "phones_reachable": "Phones reachable", "updated": "Updated",
        "callbacks": "To call back", "missed_reason": "Why", "since": "Since",
        "selftest_alarm": "ALARM: the hotline's self-test calls keep failing",
        "bad_login": "Wrong extension or password.",
        "throttled": "Too many attempts. Try again in {seconds} s.",
        "desk": {
            "desk": "My desk", "card": "Call", "no_call": "No call",
            "desk_login": "Log in to the queue", "desk_logout": "Log out of the queue",
            "pause": "Pause", "unpause": "Resume", "caller_number": "Caller's number",
            "caller_name": "Name", "dialed": "Number dialled", "category": "Category",
            "language": "Language", "waited": "Waited", "priority": "Priority",
            "origin": "Origin", "device": "Device", "incident": "Incident",
            "queue": "Callers waiting", "owed": "Callbacks owed",
            "incidents": "Open incidents", "position": "#", "caller": "Caller",
            "wait": "Wait", "reason": "Why", "since": "Since", "attempts": "Attempts",
            "call_back_now": "Call back now", "state": "State",
            "agency": "Agency", "type": "Type", "none": "—",
            "failed": "Failed", "owed_more": "of",
        },
        "desk_labels": {
            "on call": "on a call", "break": "break", "meal": "meal",
            "briefing": "briefing", "technical": "technical problem",
            "hotline": "hotline", "alert": "app alert", "button": "panic button",
            "callback": "callback", "public_order": "public order",
            "unknown": "no choice", "id": "Indonesian", "en": "English",
            "abandoned": "hung up waiting", "dropped": "cut off",
            "operator_ringing": "ringing an operator", "handed_to_agency": "handed to agency",
        },
        "map": {
            "location": "Location", "coordinates": "Coordinates", "accuracy": "Accuracy",
            "fix_age": "Fix age", "source": "Source", "none": "No location known",
            "loading": "Looking for a location…", "failed": "The location could not be loaded",
            "open": "Open in OpenStreetMap", "seconds": "{n} s ago", "minutes": "{n} min ago",
            "hours": "{n} h ago", "unknown": "unknown",
            "sources": {"alert": "panic app GPS", "button": "panic button's place",
                        "sip": "sent with the call (SIP PIDF-LO)"},
        },
        "labels": {
            "on call": "on a call", "logged-out": "logged out",
            "abandoned": "hung up waiting", "dropped": "cut off",
        },
        "incident": {
            "history": "Caller's history", "days": "last {days} days",
            "no_history": "No earlier calls.", "withheld": "Number withheld: no history.",
            "earlier_calls": "Earlier calls", "callbacks_owed": "Callbacks owed",
            "incidents": "Incidents", "flag_repeat": "REPEAT CALLER",
            "flag_prank": "MARKED PRANK BEFORE",
            "flag_note": "For information only: the call is answered as any other.",
            "calls_in_window": "{count} calls within {hours} h",
            "incident": "Incident", "open": "Open incident", "category": "Category",
            "address": "Address", "note": "Note", "notes": "Notes", "add_note": "Add note",
            "disposition": "Disposition", "mark": "Mark", "close": "Close incident",
            "outcome": "Outcome", "state": "State",
            "no_incident": "No incident for this call yet.", "saved": "Saved.",
            "failed": "Failed: {reason}", "flagged_title": "Flagged numbers",
            "number": "Number", "calls": "Calls", "reasons": "Reasons",
            "none_flagged": "No flagged numbers.", "when": "When",
            "outcome_call": "Call outcome", "by": "By",
            "values": {
                "emergency": "real emergency", "information": "information",
                "prank": "prank", "silent": "silent", "test": "test",
                "wrong_number": "wrong number", "repeat": "repeat",
                "abandoned_ivr": "hung up in the menu", "abandoned_queue": "hung up waiting",
                "in_progress": "in progress", "handed_to_agency": "handed to an agency",
                "operator_ringing": "operator ringing", "public_order": "public order",
                "abandoned": "hung up waiting", "alert": "panic alert",
            },
        },
        "actions": {
            "title": "Actions", "blind": "Put through", "consult": "Consult first",
            "handover": "Hand over", "cancel": "Cancel, back to the caller",
            "threeway": "Three-way call", "leave": "Leave the three-way call",
            "hold": "Hold", "unhold": "Resume", "hangup": "Hang up",
            "progress": "Hand-offs", "mode_blind": "blind", "mode_consult": "consult",
            "mode_threeway": "three-way", "requested": "requested", "ringing": "ringing",
            "fallback": "no answer, fallback ringing", "answered": "answered",
            "failed": "failed, nobody answered", "cancelled": "cancelled",
            "handed_over": "handed over", "target_group": "group",
            "target_fallback": "fallback", "refused": "Refused",
            "agencies": {"police": "Police", "fire": "Fire", "health": "Ambulance",
                         "disaster": "Disaster", "public_order": "Public order",
                         "transport": "Transport"},
        },
        "sv": {
            "title": "Supervisor", "desks": "Operator desks", "call": "Current call",
            "duration": "Duration", "listen": "Listen", "whisper": "Whisper",
            "barge": "Barge in", "recent": "Recent calls", "started": "Started",
            "outcome": "Outcome", "recording": "Recording", "play": "Play",
            "none": "no recording", "idle": "—",
            "ringing_you": "Your phone rings: answer it to {mode} desk {desk}.",
            "refused": "Refused",
            "outcomes": {
                "answered": "answered", "abandoned_ivr": "hung up in the menu",
                "abandoned_queue": "hung up waiting", "unanswered": "unanswered",
                "dropped": "cut off",
            },
        },
    },
}

SECURITY_HEADERS = {
    b"Content-Security-Policy": b"default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                b"frame-ancestors 'none'",
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"same-origin",
    b"X-Frame-Options": b"DENY",
    b"Cache-Control": b"no-store",
}



def security_headers(tile_origin: str | None) -> dict[bytes, bytes]:
    """The pages' headers; with the map's tile server configured, the policy lets images
    (and nothing else) come from that one origin besides the page's own."""
    if tile_origin is None:
        return SECURITY_HEADERS
    policy = SECURITY_HEADERS[b"Content-Security-Policy"] + (
        b"; img-src 'self' " + tile_origin.encode("ascii"))
    return {**SECURITY_HEADERS, b"Content-Security-Policy": policy}


ReportRunner = Callable[[dict[str, Any]], "defer.Deferred[tuple[str, str]]"]


def _environment() -> Environment:
    return Environment(loader=PackageLoader("dispatcher.web", "templates"),
                       autoescape=select_autoescape(["html", "j2"]))


def send_json(request: IRequest, status: int, document: object) -> bytes:
    """Set status and JSON headers, return the body."""
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    return json_body(document)


def send_error(request: IRequest, status: int, code: str, reason: str) -> bytes:
    """A JSON error with its reason."""
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    return error_body(code, reason)


SESSIONS_FILE = "console-sessions.json"


def staff_roles(center: Center) -> dict[str, str]:
    """Extension → console role, as the config says now."""
    roles = {op.extension: "operator" for op in center.operators}
    roles.update({ext: "supervisor" for ext in center.supervisors})
    return roles


class Console:
    """Shared state of the console's resources: who is logged in, texts, templates.

    ``center`` and ``creds`` may be replaced (a config reload): roles and passwords are read
    from them on every request, and :meth:`reloaded` revokes sessions no longer valid.
    """

    def __init__(self, center: Center, creds: Credentials, clock: Callable[[], float],
                 sessions_path: Path | None = None):
        self.center = center
        self.creds = creds
        self.clock = clock
        path = sessions_path or center.state_dir / SESSIONS_FILE
        self.sessions = SessionTable(clock, lambda: self.roles, rows=load_sessions(path),
                                     save=lambda rows: save_sessions(path, rows))
        self.throttle = LoginThrottle(clock)
        self.env = _environment()

    @property
    def roles(self) -> dict[str, str]:
        """Extension → role in the current config."""
        return staff_roles(self.center)

    def reloaded(self, center: Center, creds: Credentials) -> int:
        """Take a new config; revoke sessions of removed users or changed roles (how many)."""
        self.center, self.creds = center, creds
        return self.sessions.revoke_invalid()

    def set_cookie(self, request: IRequest, value: bytes, max_age: int) -> None:
        """The session cookie: one place decides its attributes. Secure over HTTPS: the
        browser then never sends the session over plain HTTP."""
        request.addCookie(COOKIE, value, path=b"/", httpOnly=True, sameSite="strict",
                          max_age=str(max_age), secure=request.isSecure())

    def language(self, request: IRequest) -> str:
        lang = (request.args.get(b"lang") or [b""])[0].decode("ascii", "replace")
        return lang if lang in TEXT else (
            self.center.ivr.default_language if self.center.ivr.default_language in TEXT
            else "id")

    def token(self, request: IRequest) -> str | None:
        raw = request.getCookie(COOKIE)
        return raw.decode("ascii", "replace") if raw else None

    def staff(self, request: IRequest) -> Staff | None:
        """Who this request's session belongs to now (None: log in)."""
        return self.sessions.lookup(self.token(request))

    def page(self, request: IRequest, template: str, **ctx: Any) -> bytes:
        for name, value in security_headers(self.center.console_map.tile_origin).items():
            request.setHeader(name, value)
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        lang = self.language(request)
        staff = self.staff(request)
        csrf = csrf_token(self.token(request) or "") if staff is not None else ""
        html = self.env.get_template(template).render(
            lang=lang, t=TEXT[lang], center_name=self.center.name, staff=staff, csrf=csrf,
            **ctx)
        return html.encode("utf-8")

    def same_origin(self, request: IRequest) -> bool:
        """A browser's POST must come from our own pages (CSRF), or carry no Origin."""
        origin = request.getHeader(b"origin")
        if origin is None:
            return True
        host = request.getHeader(b"host") or b""
        return urlsplit(origin.decode("ascii", "replace")).netloc == host.decode(
            "ascii", "replace")


class _Protected(resource.Resource):
    """A resource for logged-in staff; pages redirect to the login, JSON says 401."""

    isLeaf = True
    roles: tuple[str, ...] = ("operator", "supervisor")
    json = False

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def render(self, request: IRequest) -> bytes | int:
        staff = self.console.staff(request)
        if staff is None:
            if self.json:
                return send_error(request, 401, "login_required", "log in to the console")
            request.redirect(b"/login?next=" + quote(request.path.decode()).encode())
            return b""
        if staff.role not in self.roles:
            return send_error(request, 403, "forbidden",
                              f"a {staff.role} may not open this page")
        return super().render(request)


class LoginPage(resource.Resource):
    """GET shows the form; POST checks the console password and sets the session cookie."""

    isLeaf = True
    log = Logger()

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def render_GET(self, request: IRequest) -> bytes:  # noqa: N802
        nxt = (request.args.get(b"next") or [b""])[0].decode("utf-8", "replace")
        return self.console.page(request, "login.html.j2", error=None, next=safe_next(nxt))

    def render_POST(self, request: IRequest) -> bytes:  # noqa: N802
        console = self.console
        if not console.same_origin(request):
            return send_error(request, 403, "cross_site", "login from another site refused")
        body = request.content.read(MAX_FORM_BYTES + 1)
        if len(body) > MAX_FORM_BYTES:
            return send_error(request, 413, "too_large", "the login form is too large")
        form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10)
        extension = (form.get("extension") or [""])[0].strip()
        password = (form.get("password") or [""])[0]
        nxt = safe_next((form.get("next") or [""])[0])
        account = extension[:16]
        source = str(getattr(request.getClientAddress(), "host", "?"))
        lang = console.language(request)
        wait = console.throttle.wait(account, source)
        if wait > 0:
            # Refused before the password is even compared: a guess here costs nothing.
            seconds = max(1, math.ceil(wait))
            request.setResponseCode(429)
            request.setHeader(b"Retry-After", str(seconds).encode())
            return console.page(request, "login.html.j2",
                                error=TEXT[lang]["throttled"].format(seconds=seconds),
                                next=nxt)
        role = console.roles.get(extension)
        if role is None or not check_password(console.creds.console_passwords, extension,
                                              password):
            console.throttle.failed(account, source)
            self.log.warn("console login refused for {ext!r} from {source}", ext=account,
                          source=source)
            request.setResponseCode(401)
            return console.page(request, "login.html.j2", error=TEXT[lang]["bad_login"],
                                next=nxt)
        console.throttle.succeeded(account, source)
        token = console.sessions.open(Staff(extension, role))
        console.set_cookie(request, token.encode(), int(console.sessions.lifetime))
        request.redirect(nxt.encode())
        return b""


class LogoutPage(resource.Resource):
    """POST ends the session on the server (its cookie is worthless afterwards) and clears
    the cookie."""

    isLeaf = True

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def render_POST(self, request: IRequest) -> bytes:  # noqa: N802
        if not self.console.same_origin(request):
            return send_error(request, 403, "cross_site", "logout from another site refused")
        self.console.sessions.close(self.console.token(request))
        self.console.set_cookie(request, b"", 0)
        request.redirect(b"/login")
        return b""


class ConsolePage(_Protected):
    """The operator's console page (``/console``); its live data is pushed on ``/events``,
    its actions are the JSON endpoints under ``/console/api/``."""

    def render_GET(self, request: IRequest) -> bytes:  # noqa: N802
        agencies = {a.key: a.name for a in self.console.center.agencies}
        return self.console.page(request, "console.html.j2",
                                 pause_reasons=list(PAUSE_REASONS.values()), agencies=agencies,
                                 center_map=self.console.center.console_map)


class ConsoleRoot(resource.Resource):
    """``/console``: the page; ``/console/api/<name>``: the console's JSON endpoints."""

    def __init__(self, console: Console, endpoints: Mapping[str, resource.Resource],
                 pages: Mapping[str, resource.Resource] | None = None) -> None:
        super().__init__()
        self.page = ConsolePage(console)
        self.api = JsonResource()
        for name, endpoint in endpoints.items():
            self.api.putChild(name.encode("ascii"), endpoint)
        for name, page in (pages or {}).items():  # /console/<name>, e.g. flagged
            self.putChild(name.encode("ascii"), page)

    def render(self, request: IRequest) -> bytes | int:
        return self.page.render(request)

    def getChild(self, path: bytes, request: IRequest) -> resource.Resource:  # noqa: N802
        if path == b"":
            return self.page
        if path == b"api":
            return self.api
        return _NotFound()


ConsoleEndpoints = Callable[[Console], Mapping[str, resource.Resource]]


class WallboardPage(_Protected):
    """The wallboard page (its data is pushed on ``/events``, view ``wallboard``)."""

    def render_GET(self, request: IRequest) -> bytes:  # noqa: N802
        return self.console.page(request, "wallboard.html.j2")


class SupervisorPage(_Protected):
    """The supervisor's page (``/supervisor``): every desk live (view ``desks`` on
    ``/events``), listen/whisper/barge and recordings through ``/console/api/``."""

    roles = ("supervisor",)

    def render_GET(self, request: IRequest) -> bytes:  # noqa: N802
        return self.console.page(request, "supervisor.html.j2")


class WallboardData(_Protected):
    """The wallboard's figures as JSON, read once (scripts; the page itself is pushed)."""

    json = True

    def __init__(self, console: Console, document: Callable[[], dict[str, Any]]) -> None:
        super().__init__(console)
        self.document = document

    def render_GET(self, request: IRequest) -> bytes:  # noqa: N802
        request.setHeader(b"Cache-Control", b"no-store")
        return send_json(request, 200, self.document())


class ReportsPage(_Protected):
    """Supervisors' reports: ``?from=YYYY-MM-DD&to=YYYY-MM-DD&format=html|csv|json&lang=``."""

    roles = ("supervisor",)
    log = Logger()

    def __init__(self, console: Console, runner: ReportRunner) -> None:
        super().__init__(console)
        self.runner = runner

    def render_GET(self, request: IRequest) -> bytes | int:  # noqa: N802
        def arg(name: str, default: str) -> str:
            return (request.args.get(name.encode()) or [default.encode()])[0].decode(
                "utf-8", "replace")

        today = dt.date.fromtimestamp(self.console.clock())
        try:
            start = dt.date.fromisoformat(arg("from", (today - dt.timedelta(days=6)).isoformat()))
            end = dt.date.fromisoformat(arg("to", today.isoformat()))
        except ValueError:
            return send_error(request, 400, "bad_date", "from and to must be YYYY-MM-DD dates")
        if end < start or (end - start).days > 366:
            return send_error(request, 400, "bad_period",
                              "to must not be before from, and a period is at most a year")
        fmt = arg("format", "html")
        if fmt not in ("html", "csv", "json"):
            return send_error(request, 400, "bad_format", "format is html, csv or json")
        query = {"from": start, "to": end, "format": fmt,
                 "language": self.console.language(request)}
        d = self.runner(query)

        def done(result: tuple[str, str]) -> None:
            content_type, text = result
            for name, value in SECURITY_HEADERS.items():
                request.setHeader(name, value)
            request.setHeader(b"Content-Type", content_type.encode())
            request.write(text.encode("utf-8"))
            request.finish()

        def failed(failure) -> None:  # noqa: ANN001
            self.log.failure("report failed", failure)
            request.write(send_error(request, 500, "report_failed",
                                     "the report could not be computed; see the server log"))
            request.finish()

        d.addCallbacks(done, failed)
        return server.NOT_DONE_YET


class Static(resource.Resource):
    """The console's static files, from the package: its own scripts and styles at the top,
    and vendored libraries (Leaflet, with its images) in the folders listed in ``FOLDERS``.
    A path is a list of plain names (no dot first, no ``..``, no encoded slash) inside one of
    those folders, with a suffix of ``TYPES``: nothing else of the package is reachable."""

    isLeaf = True
    TYPES = {".js": b"text/javascript; charset=utf-8", ".css": b"text/css; charset=utf-8",
             ".png": b"image/png"}
    FOLDERS = frozenset({(), ("vendor", "leaflet"), ("vendor", "leaflet", "images")})
    _NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,80}$")

    def render_GET(self, request: IRequest) -> bytes:  # noqa: N802
        names = [p.decode("ascii", "replace") for p in request.postpath]
        name = names[-1] if names else ""
        folder = tuple(names[:-1])
        suffix = name[name.rfind("."):] if "." in name else ""
        if folder not in self.FOLDERS or suffix not in self.TYPES \
                or not all(self._NAME.match(n) and ".." not in n for n in names):
            return send_error(request, 404, "not_found", "no such file")
        try:
            data = resources.files("dispatcher.web").joinpath("static", *names).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return send_error(request, 404, "not_found", "no such file")
        request.setHeader(b"Content-Type", self.TYPES[suffix])
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        return data


class Root(resource.Resource):
    """``/``: redirects to the wallboard; unknown paths get a JSON 404."""

    def render_GET(self, request: IRequest) -> bytes:  # noqa: N802
        request.redirect(b"/wallboard")
        return b""

    def getChild(self, path: bytes, request: IRequest) -> resource.Resource:  # noqa: N802
        if path == b"":
            return self
        return _NotFound()


class _NotFound(resource.Resource):
    isLeaf = True

    def render(self, request: IRequest) -> bytes:
        return send_error(request, 404, "not_found", f"no such page: {request.path.decode()!r}")


def build_site(center: Center, creds: Credentials, clock: Callable[[], float],
               wallboard: Callable[[], dict[str, Any]], reports: ReportRunner,
               api: resource.Resource | None = None,
               request_factory: type[server.Request] | None = None,
               reactor: Any = None, metrics: resource.Resource | None = None,
               push: PushHub | None = None,
               console_endpoints: ConsoleEndpoints | None = None,
               console_pages: ConsoleEndpoints | None = None) -> GuardedSite:
    """The whole HTTP site: console pages, static files and (when given) the API under /api
    and the metrics under /metrics.

    ``request_factory`` is the API's request class, which refuses oversized bodies before
    buffering them. ``reactor`` (``IReactorTime``) times the site's connection deadlines
    (``center.http_limits``). ``push`` is the live push channel, served at ``/events`` to
    logged-in pages (the wallboard follows it). The site is the factory to listen with;
    its console is ``site.console``. ``console_endpoints(console)`` names the console's JSON
    endpoints, mounted at ``/console/api/<name>`` (``dispatcher.web.console_api``).
    """
    console = Console(center, creds, clock)
    root = Root()
    root.putChild(b"login", LoginPage(console))
    root.putChild(b"logout", LogoutPage(console))
    root.putChild(b"wallboard", WallboardPage(console))
    root.putChild(b"console", ConsoleRoot(
        console, console_endpoints(console) if console_endpoints is not None else {},
        console_pages(console) if console_pages is not None else None))
    root.putChild(b"wallboard.json", WallboardData(console, wallboard))
    root.putChild(b"reports", ReportsPage(console, reports))
    root.putChild(b"supervisor", SupervisorPage(console))
    root.putChild(b"static", Static())
    if push is not None:
        root.putChild(b"events", PushResource(push, console.staff, SECURITY_HEADERS))
    root.putChild(b"panic", PanicApp())
    if api is not None:
        root.putChild(b"api", api)
    if metrics is not None:
        root.putChild(b"metrics", metrics)
    site = GuardedSite(root, center.http_limits,
                       requestFactory=request_factory or server.Request, reactor=reactor)
    site.displayTracebacks = False
    site.console = console  # type: ignore[attr-defined]
    return site


def report_text(query: dict[str, Any], report: dict[str, Any]) -> tuple[str, str]:
    """Content type and text of a computed report in the asked format."""
    from dispatcher.calllog.report_render import render

    types = {"html": "text/html; charset=utf-8", "csv": "text/csv; charset=utf-8",
             "json": "application/json; charset=utf-8"}
    return types[query["format"]], render(report, query["format"])


def report_runner(reactor: Any, pool: ThreadPool, sessions: Any) -> ReportRunner:
    """Reports computed in ``pool``, a pool of their own, so a long report never delays a
    write or the reactor; fires with ``report_text``'s content type and text."""
    from dispatcher.calllog.db import transaction
    from dispatcher.calllog.report_figures import build_report
    from dispatcher.calllog.report_period import ReportOptions

    def run(query: dict[str, Any]) -> defer.Deferred[tuple[str, str]]:
        options = ReportOptions(start=query["from"], end=query["to"],
                                language=query["language"])

        def work() -> tuple[str, str]:
            with transaction(sessions) as session:
                return report_text(query, build_report(session, options))

        return threads.deferToThreadPool(reactor, pool, work)

    return run


__all__ = ["Console", "build_site", "report_runner", "report_text"]
