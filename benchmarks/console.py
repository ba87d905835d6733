"""How fast the call card shows: the operator's phone starts ringing -> the card in the DOM.

The whole center runs (`siaga up` on a private state directory, the e2e harness's way), with
pjsua2 phones in this process: operator 201's phone is registered and logged in, and its
console is open in a headless Chromium, watched with a MutationObserver; ``--others`` more
consoles stay open (operators 202-204 and the supervisors, 5 pages per Chromium process: a
Chromium keeps at most 6 connections to one host), each with its own personal stream.

Each round a citizen calls the hotline and presses 1 (police). The time is measured from the
``Newstate`` (Ringing) of 201's channel, as Asterisk stamped it (``timestampevents``), to the
moment the page's observer sees the card of that call (``#card`` ringing with the call's
linkedid; the page's ``performance.timeOrigin + now()``, the same wall clock). The citizen
then hangs up and the next round waits for the card to end. Printed: p50, p95, max.

    .venv/bin/python benchmarks/console.py                # 50 calls, 20 other consoles
    .venv/bin/python benchmarks/console.py --calls 20 --others 0
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dispatcher.credentials import ensure_credentials  # noqa: E402
from pbx.phone.events import CallState  # noqa: E402
from pbx.phone.phone import Phone  # noqa: E402
from pbx.phone.stack import SipStack  # noqa: E402
from tests.browser import chromium  # noqa: E402
from tests.harness import running_center, wait_for  # noqa: E402

PAGES_PER_BROWSER = 5

# Records, in the measured page, when each call's card first shows ringing.
OBSERVE = """
window.__seen = {};
const card = document.getElementById('card');
const note = () => {
  const id = card.dataset.linkedid;
  if (!card.hidden && card.dataset.state === 'ringing' && id && !(id in window.__seen))
    window.__seen[id] = performance.timeOrigin + performance.now();
};
new MutationObserver(note).observe(card, {attributes: true, childList: true, subtree: true,
                                          characterData: true});
"""


def pct(values: list[float], p: float) -> float:
    """The ``p`` percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def open_console(driver, base: str, extension: str, password: str) -> None:  # noqa: ANN001
    """Log in (first page of a browser) and wait for the console's snapshot."""
    from selenium.webdriver.common.by import By

    driver.get(base + "/console")
    if "/login" in driver.current_url:
        driver.find_element(By.ID, "extension").send_keys(extension)
        driver.find_element(By.ID, "password").send_keys(password)
        driver.find_element(By.ID, "login").click()
    wait_for(lambda: driver.execute_script("return document.body.dataset.loaded"), 30,
             "the console's snapshot")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--others", type=int, default=20)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="siaga-console-") as tmp, ExitStack() as stack:
        server = stack.enter_context(running_center(Path(tmp),
                                                    queue={"overflow_seconds": 600}))
        center = server.center
        creds = ensure_credentials(center)
        base = f"http://{center.http.host}:{center.http.port}"
        sip = f"{center.sip.host}:{center.sip.port}"
        me = center.operators[0].extension
        others = [op.extension for op in center.operators[1:]] + list(center.supervisors)

        browsers = (args.others + PAGES_PER_BROWSER - 1) // PAGES_PER_BROWSER
        for b in range(browsers):
            driver = stack.enter_context(chromium())
            who = others[b % len(others)]
            pages = min(PAGES_PER_BROWSER, args.others - b * PAGES_PER_BROWSER)
            for p in range(pages):
                if p:
                    driver.switch_to.new_window("tab")
                open_console(driver, base, who, creds.console_passwords[who])
        page = stack.enter_context(chromium())
        open_console(page, base, me, creds.console_passwords[me])
        page.execute_script(OBSERVE)

        sip_stack = stack.enter_context(SipStack())
        operator = stack.enter_context(Phone(sip_stack, me, server=sip,
                                             password=creds.password(me)))
        sip_stack.wait_until(lambda: operator.reg_code == 200, 15, "201 registered")
        watch = server.ami()
        stack.callback(watch.close)
        watch.action("QueuePause", Queue="operators", Interface=f"PJSIP/{me}",
                     Paused="false")
        rang: dict[str, float] = {}
        lock = threading.Lock()

        def on_event(event, **_kw) -> None:  # noqa: ANN001
            keys = event.keys
            if (event.name == "Newstate" and keys.get("ChannelStateDesc") == "Ringing"
                    and keys.get("Channel", "").startswith(f"PJSIP/{me}-")):
                with lock:
                    rang.setdefault(keys.get("Linkedid", ""),
                                    float(keys.get("Timestamp") or time.time()))

        watch.client.add_event_listener(on_event)

        def pumped(check):  # noqa: ANN001, ANN202
            def predicate() -> object:
                sip_stack.pump(10)
                return check()
            return predicate

        latencies = []
        for i in range(args.calls):
            citizen = Phone(sip_stack, f"08135{i:07d}", server=sip)
            try:
                call = citizen.call(center.hotline[0])
                call.wait_state(CallState.CONFIRMED, 15)
                call.send_dtmf("1")
                ringing = operator.wait_incoming(30)
                linkedid = wait_for(pumped(lambda: page.execute_script(
                    "return document.getElementById('card').dataset.state === 'ringing'"
                    " && document.getElementById('card').dataset.linkedid")), 15,
                    "the card")
                seen = page.execute_script("return window.__seen[arguments[0]]", linkedid)
                t0 = wait_for(lambda lid=linkedid: rang.get(lid), 10, "the ringing over AMI")
                latencies.append(float(seen) / 1000.0 - float(t0))
                call.hangup()
                wait_for(pumped(lambda: page.execute_script(
                    "return document.getElementById('card').dataset.state === 'ended'")), 15,
                    "the card ended")
                sip_stack.wait_until(lambda r=ringing: r.state is CallState.DISCONNECTED, 10,
                                     "the operator's ringing stopped")
            finally:
                citizen.close()

        ms = [x * 1000 for x in latencies]
        print(f"console: operator's phone ringing (AMI) -> call card in the DOM, "
              f"{args.calls} calls, {args.others} other consoles open")
        print(f"  p50 {pct(ms, 50):.1f} ms   p95 {pct(ms, 95):.1f} ms   "
              f"max {max(ms):.1f} ms   mean {statistics.mean(ms):.1f} ms")


if __name__ == "__main__":
    main()
