"""The names the dialplan and the server share: one definition each, imported by both sides.

The dialplan (``dialplans/templates``, rendered with this module as ``contract``) and the
server (``dispatcher``, ``pbx``) talk through Asterisk: the server originates into dialplan
contexts, sets and reads channel variables, waits for the dialplan's user events and CEL
marks, and knows the queue and the operators' feature codes. Each of those names lives here
and only here, so renaming one on either side is one edit (and
``tests/unit/dialplans/test_contract.py`` fails when the rendered dialplan and this module
disagree).

Pure Python on purpose: no Twisted, no Jinja, nothing from ``dispatcher`` or ``pbx``, so that
rendering the configuration (``siaga render``) never loads the server.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# ---- the operators' queue -------------------------------------------------------------------
QUEUE_NAME = "operators"

# ---- the citizens' PJSIP endpoints (pjsip.conf) --------------------------------------------
#: Any caller reaching our SIP port without credentials (identified by the anonymous identifier).
ENDPOINT_ANONYMOUS = "anonymous"
#: The carrier's trunk (identified by its address); callers through it are dialled back through it.
ENDPOINT_TRUNK = "trunk"

# ---- the SIP edge (Kamailio, dispatcher.topology) ---------------------------------------
#: The header the edge puts a citizen's own address (source IP:port) in, after removing any
#: the caller sent; a node behind the edge trusts it from the edge's address alone.
EDGE_SOURCE_HEADER = "X-Siaga-Source"
#: How often a node pings each staff extension at the edge (answered while the phone is
#: registered there): the longest a node rings no one after an operator's phone registers,
#: or rings a phone that has gone.
NODE_STAFF_QUALIFY_SECONDS = 5

# ---- a caller's location from SIP (hep.conf) --------------------------------------------------
#: The HEP capture agent's id: Asterisk copies each SIP message to the server's location
#: listener (dispatcher.console.sip_location), which takes only packets with this id and
#: :func:`hep_password`.
HEP_CAPTURE_ID = 112


def hep_password(master_key: bytes) -> str:
    """The password of Asterisk's HEP packets to the server, derived from the center's master
    key (nothing new to store; another process on the host cannot forge a location)."""
    return hmac.new(master_key, b"siaga-hep-capture", hashlib.sha256).hexdigest()[:32]

# ---- sounds the server writes for Asterisk (under the run directory's sounds) ----------------
# What a held citizen hears (ivr/hold.py writes it; musiconhold.conf plays it).
HOLD_SOUND = "siaga-hold"

# ---- dialplan contexts ----------------------------------------------------------------------
#: Citizens (anonymous SIP callers and the trunk) enter here: exact hotline numbers only.
CONTEXT_PUBLIC = "public"
#: Cleans the caller's number and name before anything else runs (hostile input).
CONTEXT_CALLER_ID = "siaga-caller-id"
#: Answer, record, IVR, queue, overflow.
CONTEXT_HOTLINE = "hotline"
CONTEXT_OVERFLOW_AGENCY = "overflow-agency"
#: One IVR context per language: ``ivr-<code>``.
IVR_CONTEXT_PREFIX = "ivr-"
#: Runs on the operator's channel before it is bridged to the citizen (arms the codes).
CONTEXT_OPERATOR_LEG = "siaga-operator-leg"
#: The operator's channel after the citizen left it.
CONTEXT_OPERATOR_AFTER = "siaga-operator-after"
#: Where an operator's transfers may go (Asterisk's TRANSFER_CONTEXT).
CONTEXT_TRANSFER = "siaga-transfer"
CONTEXT_AGENCY_GROUPS = "agency-groups"
#: One context per agency: ``agency-<key>`` (its ring group, then its fallback).
AGENCY_CONTEXT_PREFIX = "agency-"
CONTEXT_AGENCY_FAILED = "siaga-agency-failed"
#: The three-way conference (citizen + operator + agency).
CONTEXT_CONFERENCE = "siaga-conference"
CONTEXT_CONFERENCE_AGENCY = "siaga-conference-agency"
#: Operator-first callbacks of missed calls, originated by the server.
CONTEXT_CALLBACK = "siaga-callback"
CONTEXT_QUEUE_CODES = "queue-codes"
CONTEXT_ADD_CONTACT = "siaga-add-contact"
CONTEXT_STAFF_EXTENSIONS = "staff-extensions"
#: The contexts of the staff's own endpoints, by role (pjsip.conf).
CONTEXT_OPERATORS = "operators"
CONTEXT_AGENCIES = "agencies"
CONTEXT_BUTTONS = "buttons"
ROLE_CONTEXTS = {"operator": CONTEXT_OPERATORS, "supervisor": CONTEXT_OPERATORS,
                 "agency": CONTEXT_AGENCIES, "button": CONTEXT_BUTTONS}
#: The self-test endpoint's context: marks its calls as tests.
CONTEXT_SELFTEST = "selftest"
#: The operator console's own actions on a call (dispatcher.console.actions): the citizen
#: held, the operator consulting an agency, and the way back to the citizen.
CONTEXT_CONSOLE = "siaga-console"
#: The agency leg of a console consultation: the agency's ring group and fallback.
CONTEXT_CONSOLE_AGENCY = "siaga-console-agency"
#: Operator-first callbacks of panic-button alerts (extensions_alerts.conf).
CONTEXT_ALERTS = "siaga-alerts"
CONTEXT_ALERTS_OPERATOR = "siaga-alerts-operator"
CONTEXT_ALERTS_CITIZEN = "siaga-alerts-citizen"
#: A supervisor's phone listening to, whispering to or barging into an operator's call
#: (originated by the server, dispatcher.console.spy; one extension per mode).
CONTEXT_SPY = "siaga-spy"

#: Every fixed context of extensions.conf (the per-agency and per-language ones aside).
CONTEXTS = (
    CONTEXT_PUBLIC, CONTEXT_CALLER_ID, CONTEXT_HOTLINE, CONTEXT_OVERFLOW_AGENCY,
    CONTEXT_OPERATOR_LEG, CONTEXT_OPERATOR_AFTER, CONTEXT_TRANSFER, CONTEXT_AGENCY_GROUPS,
    CONTEXT_AGENCY_FAILED, CONTEXT_CONFERENCE, CONTEXT_CONFERENCE_AGENCY, CONTEXT_CALLBACK,
    CONTEXT_QUEUE_CODES, CONTEXT_ADD_CONTACT, CONTEXT_STAFF_EXTENSIONS, CONTEXT_OPERATORS,
    CONTEXT_AGENCIES, CONTEXT_BUTTONS, CONTEXT_SELFTEST, CONTEXT_ALERTS,
    CONTEXT_ALERTS_OPERATOR, CONTEXT_ALERTS_CITIZEN, CONTEXT_CONSOLE, CONTEXT_CONSOLE_AGENCY,
    CONTEXT_SPY,
)

# Extensions the server sends channels to, in CONTEXT_CONFERENCE and in CONTEXT_ALERTS.
EXTEN_OPERATOR = "operator"  # the operator's side
EXTEN_CITIZEN = "citizen"  # the citizen's side
# Extensions of CONTEXT_CONSOLE the server redirects channels to.
EXTEN_HELD = "held"  # the citizen on hold (music on hold)
EXTEN_HOLDING = "holding"  # the operator's leg while the citizen is held
EXTEN_CONSULT = "consult"  # the operator's leg calls an agency while the citizen is held

#: The supervisor's modes in CONTEXT_SPY (each an extension there) and ChanSpy's options
#: for each: q no beep nor name spoken, E end when the operator's channel hangs up, S end
#: when there is nothing to spy on; w the operator hears the supervisor (the citizen does
#: not), B both hear the supervisor.
SPY_MODES = {"listen": "qES", "whisper": "qESw", "barge": "qESB"}


def agency_context(key: str) -> str:
    """The context of agency ``key``'s ring group and fallback."""
    return f"{AGENCY_CONTEXT_PREFIX}{key}"


def ivr_context(language: str) -> str:
    """The IVR context of ``language``."""
    return f"{IVR_CONTEXT_PREFIX}{language}"


# ---- channel variables ----------------------------------------------------------------------
# Set(__NAME=...) makes a variable inherited; AMI's VarSet then names it with the underscores.
INHERIT = "__"

VAR_CALL = "SIAGA_CALL"  # the call's id (the citizen channel's linkedid); names the recording
VAR_CATEGORY = "SIAGA_CATEGORY"  # what the citizen chose: agency key, operator, panic, ...
VAR_QPRIO = "SIAGA_QPRIO"  # the call's queue priority (QUEUE_PRIO)
VAR_LANGUAGE = "SIAGA_LANGUAGE"  # the IVR language the citizen listened in
VAR_FROM = "SIAGA_FROM"  # the citizen's SIP source address (to call back an app user)
VAR_CITIZEN = "SIAGA_CITIZEN"  # "yes" on the citizen's own channel (not inherited)
VAR_TEST = "SIAGA_TEST"  # "1": the center's self-test call (set in [selftest] only)
VAR_AGENCY = "SIAGA_AGENCY"  # an agency's endpoint's own agency (pjsip.conf set_var)
VAR_QUEUE = "SIAGA_QUEUE"  # the queue (a dialplan global), and a CEL mark before Queue()
VAR_QUEUE_EXIT = "SIAGA_QUEUE_EXIT"  # CEL mark: ${QUEUESTATUS} after Queue() returns
VAR_RECORDING = "SIAGA_RECORDING"  # CEL mark: the recording's file
VAR_CONF_AGENCY = "SIAGA_CONF_AGENCY"  # the agency an operator's conference calls
VAR_CONSOLE_AGENCY = "SIAGA_CONSOLE_AGENCY"  # the agency a console consultation calls
VAR_CONSOLE_CITIZEN = "SIAGA_CONSOLE_CITIZEN"  # the held citizen's channel (the way back)
VAR_CONSOLE_DONE = "SIAGA_CONSOLE_DONE"  # set: the consultation ended in a hand-over
VAR_HELD = "SIAGA_HELD"  # SHARED() on a citizen's channel: "1" while the console holds it
VAR_CALLBACK_ID = "SIAGA_CALLBACK_ID"  # a missed-call callback's id (server -> dialplan)
VAR_CALLBACK_TARGET = "SIAGA_CALLBACK_TARGET"  # its dial string, validated by the server
VAR_INCIDENT = "SIAGA_INCIDENT"  # an alert's incident (server -> dialplan)
VAR_ATTEMPT = "SIAGA_ATTEMPT"  # the alert callback's attempt number
VAR_QUEUE_PRIO = "SIAGA_QUEUE_PRIO"  # the alert callback's queue priority
VAR_CITIZEN_DIAL = "SIAGA_CITIZEN_DIAL"  # the alert callback's citizen dial string
VAR_CITIZEN_RING = "SIAGA_CITIZEN_RING"  # and how long it rings
VAR_SPY_TARGET = "SIAGA_SPY_TARGET"  # the operator's channel a supervisor spies on
#: Call-log mark on a supervisor's spy call (its mode): the center's own call, not a
#: citizen's, kept out of the reports (the supervisions table says what it was).
VAR_SUPERVISION = "SIAGA_SUPERVISION"
#: The Asterisk global holding the server's per-boot event key (pbx.ami.attribution).
VAR_EVENT_KEY = "SIAGA_EVENT_KEY"
#: The SIP Call-ID of a citizen's INVITE that carried a Geolocation header (letters,
#: digits and ``-.!%*_+~@:`` only): the server finds the INVITE's location by it
#: (dispatcher.console.sip_location).
VAR_SIP_CALL_ID = "SIAGA_SIP_CALL_ID"

#: The channel variables both sides name (the dialplan's private ones are not listed).
VARIABLES = (
    VAR_CALL, VAR_CATEGORY, VAR_QPRIO, VAR_LANGUAGE, VAR_FROM, VAR_CITIZEN, VAR_TEST,
    VAR_AGENCY, VAR_QUEUE, VAR_QUEUE_EXIT, VAR_RECORDING, VAR_CONF_AGENCY, VAR_CONSOLE_AGENCY,
    VAR_CONSOLE_CITIZEN, VAR_CONSOLE_DONE, VAR_HELD, VAR_CALLBACK_ID,
    VAR_CALLBACK_TARGET, VAR_INCIDENT, VAR_ATTEMPT, VAR_QUEUE_PRIO, VAR_CITIZEN_DIAL,
    VAR_CITIZEN_RING, VAR_EVENT_KEY, VAR_SIP_CALL_ID, VAR_SPY_TARGET, VAR_SUPERVISION,
)

# The call log's marks: ``SIAGA_<NAME>`` set with Set() (AMI VarSet) or CELGenUserEvent.
MARK_PREFIX = "SIAGA_"
MARK_NAMES = (
    "IVR",
    "CATEGORY",
    "LANGUAGE",
    "AGENCY",
    "INCIDENT",
    "QUEUE",
    "QUEUE_EXIT",
    "RECORDING",
    "FROM",
    "TEST",
    "SUPERVISION",
)

# ---- user events ----------------------------------------------------------------------------
EVENT_QUEUED = "SiagaQueued"  # a hotline call entered the queue
EVENT_AGENCY_RING = "SiagaAgencyRing"  # an agency's ring group rings
EVENT_AGENCY_FAILED = "SiagaAgencyFailed"  # an agency's group or fallback did not answer
EVENT_CONFERENCE = "SiagaConference"  # an operator's conference calls an agency
EVENT_CALLBACK_DIAL = "SiagaCallbackDial"  # a callback's operator answered: citizen dialled
EVENT_CALLBACK_RESULT = "SiagaCallbackResult"  # signed: how a callback ended
EVENT_ALERT = "SiagaAlert"  # signed: a stage of an alert callback
USER_EVENTS = (EVENT_QUEUED, EVENT_AGENCY_RING, EVENT_AGENCY_FAILED, EVENT_CONFERENCE,
               EVENT_CALLBACK_DIAL, EVENT_CALLBACK_RESULT, EVENT_ALERT)

# Signed user events (the key, header names and MAC are checked by pbx.ami.attribution).
SIGNED_HEADER = "Signed"
MAC_HEADER = "Mac"
_EVENT_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,39}$")


def dialplan_user_event(name: str, fields: Sequence[tuple[str, str]]) -> str:
    """The dialplan application text of a signed ``UserEvent``.

    ``fields`` are ``(header, dialplan expression)`` pairs, e.g. ``("Call", "${SIAGA_CALL}")``.
    Header names are letters and digits only (they go into the event and into the MAC).
    """
    for header in [name, *(h for h, _ in fields)]:
        if not _EVENT_NAME_RE.match(header):
            raise ValueError(f"not a user event or header name: {header!r}")
    body = ",".join(f"{header}: {value}" for header, value in fields)
    material = "|".join([f"${{{VAR_EVENT_KEY}}}", name,
                         *(f"{header}={value}" for header, value in fields)])
    signed = " ".join(header for header, _ in fields)
    return (f"UserEvent({name},{body},{SIGNED_HEADER}: {signed},"
            f"{MAC_HEADER}: ${{SHA1({material})}})")


# ---- caller ID limits (dispatcher.callerid checks what the dialplan cleaned) ----------------
#: Digits kept of a caller's number (E.164 has at most 15; room for national prefixes).
CALLERID_MAX_DIGITS = 20
#: Characters kept of a caller's name.
CALLERID_MAX_NAME = 40
#: Characters of the From (``CHANNEL(pjsip,remote_uri)``, display name first) read from its
#: end to find the URI in. URIENCODE() makes a byte at most three: 3 × 1024 stays within the
#: 4095 characters a dialplan value holds, whatever the display name before the URI holds.
CALLERID_URI_TAIL = 1024
#: The anonymous endpoint's caller ID until the dialplan has read the number from the From.
ANONYMOUS_NUMBER = "anonymous"
ANONYMOUS_NAME = "Citizen"

# ---- the self-test --------------------------------------------------------------------------
#: The PJSIP endpoint the self-test calls from. Not an extension (2 to 8 digits), so no config
#: number can clash with it; its password is generated with the other secrets.
SELFTEST_ENDPOINT = "siaga-selftest"
#: The queue penalty of the self-test's desk: test calls ask for members at or above it
#: (QUEUE_MIN_PENALTY), citizens' calls for members below it (QUEUE_MAX_PENALTY).
SELFTEST_DESK_PENALTY = 100

# ---- TLS files Asterisk reads (written by dispatcher.tls into its etc directory) -----------
ASTERISK_CERT_FILE = "tls-certificate.pem"
ASTERISK_KEY_FILE = "tls-key.pem"

# ---- the operators' feature codes -----------------------------------------------------------
# Two kinds:
#
# * Dialled codes (a new call from the softphone, like dialling an extension): log in/out of
#   the operators' queue and pause/unpause with a reason.
# * In-call codes (DTMF keys during a call with a citizen): bridge the citizen to an agency
#   blind, attended (consult first) or as a three-way conference. ``<d>`` is the agency's
#   ``digit`` in the config (1 police ... 6 transport in the example city).
#
# Keys were chosen so no code is a prefix of another (Asterisk then acts on the last key at
# once, without waiting for more) and none clashes with another phase: ``*<d>``, ``**<d>`` and
# ``*0<d>`` in a call; ``#0``/``#1``/``#3``/``#4`` only while consulting an agency.

# Dialled codes.
LOGIN_TOGGLE = "*45"  # logged out (or paused) -> logged in; logged in -> logged out
PAUSE = "*46"  # pause with reason "break"; *46<n> pauses with PAUSE_REASONS[n]
UNPAUSE = "*47"
PAUSE_REASONS = {1: "break", 2: "meal", 3: "briefing", 4: "technical"}
DEFAULT_PAUSE_REASON = "break"
LOGGED_OUT_REASON = "logged-out"  # the pause reason that means "not at the desk"
LOGGED_IN_REASON = "logged-in"  # the unpause reason of a login
AVAILABLE_REASON = "available"  # the unpause reason of an unpause

# In-call codes, per agency digit.
BLIND_PREFIX = "*"  # *<d>: the citizen goes to the agency; the operator is free
CONSULT_PREFIX = "**"  # **<d>: the operator talks to the agency first
CONFERENCE_PREFIX = "*0"  # *0<d>: citizen + operator + agency; the operator may leave

# While consulting an agency (Asterisk's attended-transfer keys).
CONSULT_COMPLETE = "#1"  # citizen and agency together, operator leaves
CONSULT_CANCEL = "#0"  # agency leg hung up, back to the citizen
CONSULT_THREEWAY = "#3"  # all three in one call
CONSULT_SWAP = "#4"  # talk alternately to citizen and agency

# Asterisk's own transfer keys (to any number; the number is keyed after the code).
BUILTIN_BLIND = "##"
BUILTIN_ATTENDED = "#*"


@dataclass(frozen=True)
class AgencyCodes:
    """The three in-call codes of one agency."""

    agency: str
    digit: int

    @property
    def blind(self) -> str:
        """Blind transfer to the agency."""
        return f"{BLIND_PREFIX}{self.digit}"

    @property
    def consult(self) -> str:
        """Attended transfer (consult the agency first)."""
        return f"{CONSULT_PREFIX}{self.digit}"

    @property
    def conference(self) -> str:
        """Three-way conference with the agency."""
        return f"{CONFERENCE_PREFIX}{self.digit}"


def agency_codes(agencies: Iterable) -> list[AgencyCodes]:
    """In-call codes for ``(agency key, digit)`` pairs (or config Agency objects)."""
    out = []
    for item in agencies:
        key, digit = (item.key, item.digit) if hasattr(item, "key") else item
        out.append(AgencyCodes(key, int(digit)))
    return out
