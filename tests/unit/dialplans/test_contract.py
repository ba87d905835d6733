"""The dialplan/server contract (dialplans/contract.py): both sides say the same names.

A context, channel variable or user event renamed on one side only breaks calls silently
(the server originates into a context that no longer exists, waits for an event never sent).
These tests render the example center and hold the rendered dialplan and the contract to
each other in both directions, and keep rendering free of the server's modules.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dialplans import contract
from dialplans.render import AsteriskPaths, render_all
from dispatcher.config.loader import load_center
from dispatcher.credentials import ensure_credentials
from tests.harness import EXAMPLE_CONFIG

ROOT = Path(__file__).resolve().parents[3]

# What rendering may load of this tree besides dialplans: the IVR menu and the config types it
# reads (the center object is config data; nothing here runs the server).
RENDER_MAY_LOAD = {"ivr", "ivr.menu", "dispatcher", "dispatcher.config", "dispatcher.yamlnodes",
                   "dispatcher.config.model", "dispatcher.config.loader",
                   "dispatcher.config.directory", "dispatcher.config.network",
                   "dispatcher.selftest", "dispatcher.selftest.settings",
                   "dispatcher.console", "dispatcher.console.map_settings",
                   "dispatcher.console.settings"}

# Variables only the dialplan itself reads and writes (no server code names them).
DIALPLAN_PRIVATE_VARIABLES = {
    "SIAGA_DIAL", "SIAGA_CALLER_URI", "SIAGA_CALLER_RAW", "SIAGA_IVR_DEADLINE",
    "SIAGA_CONF_PEER", "SIAGA_RECORDINGS", "SIAGA_SOUNDS", "SIAGA_AGENCY_CALLED", "SIAGA_ROLE",
}
# Call-log marks this dialplan does not set: the IVR mark of an earlier dialplan, still read
# from CEL files written by it.
MARKS_NOT_SET = {"IVR"}


def _imported_by(code: str) -> list[str]:
    probe = (f"{code}; import sys; print(__import__('json').dumps(sorted(m for m in sys.modules "
             "if m.split('.')[0] in ('twisted', 'dispatcher', 'pbx', 'ivr', 'jinja2'))))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True, timeout=60)
    return json.loads(out.stdout)


def test_given_a_fresh_interpreter_when_render_imported_then_no_server_module_loads() -> None:
    """`siaga render` loads neither Twisted nor the AMI client nor any feature of the server:
    only the contract, the IVR menu and the config types."""
    loaded = _imported_by("import dialplans.render")
    assert not [m for m in loaded if m.split(".")[0] in ("twisted", "pbx")], loaded
    server = [m for m in loaded if m.split(".")[0] in ("dispatcher", "ivr")
              and m not in RENDER_MAY_LOAD]
    assert server == [], f"rendering loads server modules: {server}"


def test_given_a_fresh_interpreter_when_contract_imported_then_it_loads_nothing_of_ours() -> None:
    """The contract is pure: both sides import it without pulling in the other."""
    assert _imported_by("import dialplans.contract") == []


@pytest.fixture(scope="module")
def dialplan(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The example center rendered with every optional part on: overflow to the agencies,
    a self-test desk, a trunk, recordings."""
    tmp = tmp_path_factory.mktemp("contract")
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data = copy.deepcopy(data)
    data["queue"]["overflow"] = "agency"
    data["recordings"] = True
    data["selftest"] = {"enabled": True, "desk": str(data["operators"][0]["extension"])}
    data["trunk"] = {"host": "198.51.100.7", "port": 5060, "username": "city",
                     "password": "from-the-carrier"}
    config = tmp / "siaga.yaml"
    config.write_text(yaml.safe_dump(data))
    center = load_center(config, state_dir=tmp / "state")
    paths = AsteriskPaths.for_center(center, "/mods", "/usr/share/asterisk")
    return render_all(center, ensure_credentials(center), paths)


def _dialplan_text(files: dict[str, str]) -> str:
    return files["extensions.conf"] + files["extensions_alerts.conf"]


def _sections(text: str) -> list[str]:
    return re.findall(r"^\[([^\]]+)\]", text, re.M)


def _code(text: str) -> str:
    """The configuration without its comments (a name in a comment calls nothing)."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(";"))


def test_given_rendered_dialplan_then_every_contract_context_is_a_section(
        dialplan: dict[str, str]) -> None:
    """Each context the contract names (and the server may send a call to) exists."""
    sections = set(_sections(_dialplan_text(dialplan)))
    missing = [c for c in contract.CONTEXTS if c not in sections]
    assert missing == [], f"contexts in the contract but not in the dialplan: {missing}"


def test_given_rendered_dialplan_then_every_section_is_a_contract_context(
        dialplan: dict[str, str]) -> None:
    """A context renamed in a template but not in the contract shows up here."""
    known = set(contract.CONTEXTS) | {"general", "globals"}
    unknown = [s for s in _sections(_dialplan_text(dialplan))
               if s not in known and not s.startswith(contract.AGENCY_CONTEXT_PREFIX)
               and not s.startswith(contract.IVR_CONTEXT_PREFIX)]
    assert unknown == [], f"dialplan contexts the contract does not name: {unknown}"


def test_given_rendered_dialplan_then_each_agency_and_language_has_its_context(
        dialplan: dict[str, str]) -> None:
    """The server builds agency contexts by name (blind transfer, missed-call rules)."""
    sections = set(_sections(_dialplan_text(dialplan)))
    for key in ("police", "fire"):
        assert contract.agency_context(key) in sections
    assert contract.ivr_context("id") in sections


def _contexts(text: str) -> dict[str, str]:
    """Each context's text, by name."""
    parts = re.split(r"^\[([^\]]+)\]\n", _code(text), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_given_rendered_dialplan_then_the_extensions_the_server_calls_exist(
        dialplan: dict[str, str]) -> None:
    """The server originates, redirects and transfers to these (context, extension) pairs."""
    contexts = _contexts(_dialplan_text(dialplan))
    targets = [(contract.CONTEXT_CALLBACK, "s"),
               (contract.CONTEXT_CONFERENCE, contract.EXTEN_OPERATOR),
               (contract.CONTEXT_CONFERENCE, contract.EXTEN_CITIZEN),
               (contract.CONTEXT_ALERTS, contract.EXTEN_OPERATOR),
               (contract.CONTEXT_ALERTS, contract.EXTEN_CITIZEN),
               (contract.agency_context("police"), "s"),
               (contract.CONTEXT_TRANSFER, None),
               *((contract.CONTEXT_SPY, mode) for mode in contract.SPY_MODES)]
    for context, exten in targets:
        assert context in contexts, context
        if exten is not None:
            assert f"exten => {exten},1," in contexts[context], (context, exten)


def _uses(name: str, code: str) -> bool:
    # ``__NAME`` (inherited) counts; ``NAME_MORE`` does not.
    return re.search(rf"(?<![A-Za-z0-9]){name}(?![A-Za-z0-9_])", code) is not None


def test_given_rendered_config_then_every_shared_variable_is_used(
        dialplan: dict[str, str]) -> None:
    """Each channel variable the server sets or reads is one the dialplan names."""
    code = _code(_dialplan_text(dialplan) + dialplan["pjsip.conf"])
    missing = [v for v in contract.VARIABLES if not _uses(v, code)]
    assert missing == [], f"variables in the contract but not in the dialplan: {missing}"
    marks = [f"{contract.MARK_PREFIX}{m}" for m in contract.MARK_NAMES if m not in MARKS_NOT_SET]
    missing = [m for m in marks if not _uses(m, code)]
    assert missing == [], f"call-log marks the dialplan never sets: {missing}"


def test_given_rendered_config_then_every_variable_is_shared_or_private(
        dialplan: dict[str, str]) -> None:
    """A variable renamed in a template only is neither in the contract nor private."""
    code = _code(_dialplan_text(dialplan) + dialplan["pjsip.conf"])
    names = set(re.findall(r"(?<![A-Za-z0-9])SIAGA_[A-Z0-9_]*[A-Z0-9]", code))
    unknown = sorted(names - set(contract.VARIABLES) - DIALPLAN_PRIVATE_VARIABLES)
    assert unknown == [], f"dialplan variables the contract does not name: {unknown}"


def test_given_rendered_dialplan_then_user_events_match_the_contract(
        dialplan: dict[str, str]) -> None:
    """The dialplan sends exactly the user events the contract names, no other."""
    sent = set(re.findall(r"UserEvent\(([A-Za-z0-9]+),", _code(_dialplan_text(dialplan))))
    assert sent == set(contract.USER_EVENTS)


def test_given_rendered_config_then_queue_codes_endpoints_and_selftest_match(
        dialplan: dict[str, str]) -> None:
    """The queue, the feature codes, the pause reasons, the endpoints and the self-test's
    names are the contract's."""
    plan = _code(_dialplan_text(dialplan))
    pjsip = _code(dialplan["pjsip.conf"])
    assert contract.QUEUE_NAME in _sections(dialplan["queues.conf"])
    assert f"SIAGA_QUEUE = {contract.QUEUE_NAME}\n" in plan
    for code in (contract.LOGIN_TOGGLE, contract.PAUSE, contract.UNPAUSE):
        assert f"exten => {code}," in plan
    for reason in (contract.LOGGED_OUT_REASON, contract.LOGGED_IN_REASON,
                   contract.AVAILABLE_REASON, contract.DEFAULT_PAUSE_REASON,
                   *contract.PAUSE_REASONS.values()):
        assert re.search(rf"[,?(=]{re.escape(reason)}\)", plan), reason
    for code in (contract.CONSULT_CANCEL, contract.CONSULT_COMPLETE, contract.CONSULT_THREEWAY,
                 contract.CONSULT_SWAP, contract.BUILTIN_BLIND, contract.BUILTIN_ATTENDED):
        assert re.search(rf"^\w+ = {re.escape(code)}$", dialplan["features.conf"], re.M), code
    for endpoint in (contract.ENDPOINT_ANONYMOUS, contract.ENDPOINT_TRUNK,
                     contract.SELFTEST_ENDPOINT):
        assert f"\n[{endpoint}](media)\n" in pjsip, endpoint
    contexts = set(re.findall(r"^context = (\S+)$", pjsip, re.M))
    assert contexts == {contract.CONTEXT_PUBLIC, contract.CONTEXT_SELFTEST,
                        *contract.ROLE_CONTEXTS.values()}
    assert f"QUEUE_MIN_PENALTY={contract.SELFTEST_DESK_PENALTY}" in plan
    assert f",{contract.SELFTEST_DESK_PENALTY}," in dialplan["queues.conf"]


# The server's side: feature modules name contract values only through the contract.
_SERVER_PACKAGES = ("dispatcher", "pbx")
# Strings equal to a contract value that mean something else there.
_NOT_CONTRACT = {
    ("dispatcher/selftest/child.py", "siaga-selftest"),  # the probe program's name (argparse)
}


def _shared_values() -> set[str]:
    values = set()
    for name in dir(contract):
        value = getattr(contract, name)
        if (name.startswith(("CONTEXT_", "VAR_", "EVENT_", "SELFTEST_ENDPOINT"))
                and isinstance(value, str) and "siaga" in value.lower()):
            values.add(value)
    return values


def test_given_server_sources_then_no_contract_name_is_spelled_out() -> None:
    """No feature module writes ``"siaga-callback"``, ``"SIAGA_CALL"`` or ``"SiagaAlert"``
    itself (nor ``"__SIAGA_..."``): it imports the name, so a rename reaches it."""
    shared = _shared_values()
    found = []
    for package in _SERVER_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            tree = ast.parse(path.read_text(), rel)
            docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                          if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef
                                        | ast.AsyncFunctionDef)
                          and node.body and isinstance(node.body[0], ast.Expr)}
            for node in ast.walk(tree):
                if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                        and id(node) not in docstrings
                        and (node.value in shared or node.value.lstrip("_") in shared)
                        and (rel, node.value) not in _NOT_CONTRACT):
                    found.append(f"{rel}:{node.lineno}: {node.value!r}")
    assert found == [], "contract names spelled out instead of imported:\n" + "\n".join(found)
