"""The generated hotline dialplan and features: the shapes the design relies on."""

from __future__ import annotations

import re
from pathlib import Path

from dialplans.render import AsteriskPaths, render_all
from dispatcher.config.loader import load_center
from dispatcher.credentials import ensure_credentials
from dispatcher.hotline import codes
from tests.harness import EXAMPLE_CONFIG


def render(tmp_path: Path, old: str | None = None, new: str | None = None) -> dict[str, str]:
    """Every generated file for the example (optionally with one text replaced)."""
    config = EXAMPLE_CONFIG
    if old is not None and new is not None:
        text = EXAMPLE_CONFIG.read_text()
        assert old in text
        config = tmp_path / "siaga.example.yaml"
        config.write_text(text.replace(old, new, 1))
    center = load_center(config, state_dir=tmp_path / "state")
    paths = AsteriskPaths.for_center(center, "/mods", "/usr/share/asterisk")
    return render_all(center, ensure_credentials(center), paths)


def context(conf: str, name: str) -> str:
    """The text of one [context] of a generated file."""
    match = re.search(rf"^\[{re.escape(name)}\]\n(.*?)(?=^\[|\Z)", conf, re.M | re.S)
    assert match, f"no context {name}"
    return match.group(1)


def block(conf: str, exten: str) -> str:
    """The lines of one extension (from its priority 1 to the next extension)."""
    start = conf.index(f"exten => {exten},1")
    end = conf.find("exten =>", start + 1)
    return conf[start:end if end >= 0 else None]


def test_given_the_example_when_rendered_then_every_ivr_language_never_traps_a_caller(
        tmp_path: Path) -> None:
    """Each menu has its deadline, and no-key, wrong-key and deadline exits to the queue."""
    ext = render(tmp_path)["extensions.conf"]
    for lang in ("id", "en"):
        menu = context(ext, f"ivr-{lang}")
        assert "Set(TIMEOUT(absolute)=10)" in menu
        for exit_ in ("i", "t", "T", "0"):
            assert "Goto(hotline,queue,1)" in block(menu, exit_), (lang, exit_)
        for digit in range(1, 7):
            assert f"exten => {digit},1,Set(__SIAGA_CATEGORY=" in menu
    assert "exten => 9,1,Goto(ivr-en,s,1)" in context(ext, "ivr-id")
    assert "exten => 8,1,Goto(ivr-id,s,1)" in context(ext, "ivr-en")
    # The queue clears the deadline first, and hotline has its own T for the race.
    hotline = context(ext, "hotline")
    assert "exten => queue,1,Set(TIMEOUT(absolute)=0)" in hotline
    assert "exten => T,1,Goto(queue,1)" in hotline


def test_given_the_example_when_rendered_then_operators_get_the_in_call_codes(
        tmp_path: Path) -> None:
    """Three codes per agency in features.conf; the operator's leg arms exactly those."""
    files = render(tmp_path)
    features = context(files["features.conf"], "applicationmap")
    agencies = codes.agency_codes(load_center(EXAMPLE_CONFIG, state_dir=tmp_path).agencies)
    for a in agencies:
        assert f"siaga-blind-{a.digit} => {a.blind},self,BlindTransfer(s,agency-{a.agency})" \
            in features
        assert f"siaga-consult-{a.digit} => {a.consult},self,AttendedTransfer(*{a.digit})" \
            in features
        assert f"siaga-conference-{a.digit} => {a.conference},self,Gosub(siaga-conference," \
            f"start,1({a.agency}))" in features
    armed = re.search(r"DYNAMIC_FEATURES=(\S+)\)", files["extensions.conf"]).group(1)
    assert len(armed.split("#")) == 3 * len(agencies)
    general = context(files["features.conf"], "general")
    assert f"atxfercomplete = {codes.CONSULT_COMPLETE}" in general
    assert f"atxferabort = {codes.CONSULT_CANCEL}" in general


def test_given_the_example_when_rendered_then_the_queue_call_keeps_the_operator_leg_alive(
        tmp_path: Path) -> None:
    """Queue: ringback, transfers allowed, F (operator goes on), the leg's gosub, overflow."""
    hotline = context(render(tmp_path)["extensions.conf"], "hotline")
    queue = re.search(r"Queue\((.*)\)\n", hotline).group(1).split(",")
    assert queue[0] == "${SIAGA_QUEUE}"
    assert queue[1] == "rtF(siaga-operator-after^s^1)"
    assert queue[4] == "60" and queue[6] == "siaga-operator-leg"
    assert "MixMonitor(${SIAGA_RECORDINGS}/${SIAGA_CALL}.wav)" in hotline


def test_given_recordings_off_when_rendered_then_no_mixmonitor(tmp_path: Path) -> None:
    """recordings: false records nothing."""
    ext = render(tmp_path, "recordings: true", "recordings: false")["extensions.conf"]
    assert "MixMonitor" not in ext


def test_given_overflow_to_the_agency_when_rendered_then_the_category_agency_rings_first(
        tmp_path: Path) -> None:
    """overflow: agency rings the chosen agency, then the supervisors."""
    ext = render(tmp_path, "overflow: supervisors ", "overflow: agency ")["extensions.conf"]
    assert "overflow-agency,${SIAGA_CATEGORY},1" in context(ext, "hotline")
    agency = context(ext, "overflow-agency")
    assert "exten => police,1" in agency and "Goto(hotline,overflow,supervisors)" in agency


def test_given_ring_groups_when_rendered_then_contact_uris_never_pass_through_execif(
        tmp_path: Path) -> None:
    """A contact URI holds ':'; ExecIf and IF split on it, so they never carry one."""
    ext = render(tmp_path)["extensions.conf"]
    for line in ext.splitlines():
        if "ExecIf" in line or "${IF(" in line:
            assert "PJSIP_DIAL_CONTACTS" not in line and "SIAGA_DIAL" not in line, line
    police = context(ext, "agency-police")
    assert police.count("Gosub(siaga-add-contact,s,1(") == 4  # 301-303 and fallback 309


def test_given_the_example_when_rendered_then_static_members_and_the_wait_prompt(
        tmp_path: Path) -> None:
    """Every operator is a static member; the periodic prompt is the built one."""
    queues = render(tmp_path)["queues.conf"]
    for ext in ("201", "202", "203", "204"):
        assert f"member => PJSIP/{ext},0," in queues
    assert re.search(r"periodic-announce = \S+/run/sounds/siaga-wait\n", queues)


def test_given_the_example_when_rendered_then_waiting_callers_ring_free_operators_in_parallel(
        tmp_path: Path) -> None:
    """autofill is on: with several operators free, every waiting caller rings one at once
    (Asterisk's default serves the queue one caller at a time: the capacity benchmark saw
    ten callers connected one by one, about a ring time apart, with sixteen desks free)."""
    general = context(render(tmp_path)["queues.conf"], "general")
    assert re.search(r"^autofill = yes$", general, re.M), general


def test_given_the_example_when_rendered_then_the_from_is_read_only_encoded_and_in_bounds(
        tmp_path: Path) -> None:
    """siaga-caller-id reads the From (display name first) only URI-encoded, from its end,
    and no more of it than an encoded dialplan value holds (4095 characters): the display
    name is stored in no variable, and a long one leaves the URI at the end readable."""
    from dialplans import contract

    cleaner = context(render(tmp_path)["extensions.conf"], contract.CONTEXT_CALLER_ID)
    code = [line for line in cleaner.splitlines() if not line.lstrip().startswith(";")]
    reads = [line for line in code if "remote_uri" in line]
    tail = contract.CALLERID_URI_TAIL
    assert reads and all(
        f"${{URIENCODE(${{CHANNEL(pjsip,remote_uri):-{tail}}})}}" in line
        and line.count("remote_uri") == 1 for line in reads), reads
    assert 3 * tail + 64 <= 4095
    assert not any("PJSIP_HEADER" in line for line in code)
