"""How fast the live push channel shows a change: an AMI event -> visible in a page's DOM.

The whole center runs (`siaga up` on a private state directory, the e2e harness's way). One
supervisor's wallboard is open in a headless Chromium and watched with a MutationObserver;
``--others`` more wallboards stay open in other Chromium processes (each Chromium keeps at
most 6 connections to one host, so 5 pages per process), all following the same stream.

Each round pauses operator 201 in the queue over AMI with a fresh reason (``QueuePause``):
Asterisk sends ``QueueMemberPause``, the server's live model takes it, the push channel
sends a delta, the page writes the reason into the operator's row. The time is measured
from the moment this script's own AMI connection receives the event (Asterisk writes it to
every AMI connection at once) to the moment the page's observer sees the text (the page's
``performance.timeOrigin + now()``, the same wall clock). Then the operator is unpaused and
the row seen cleared before the next round. Printed: p50, p95, max over ``--events``.

    .venv/bin/python benchmarks/push.py                 # 50 events, 20 other pages
    .venv/bin/python benchmarks/push.py --events 100 --others 40
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
from tests.browser import chromium  # noqa: E402
from tests.harness import running_center, wait_for  # noqa: E402

PAGES_PER_BROWSER = 5

# Records, in the measured page, when each reason first shows in operator 201's row.
OBSERVE = """
window.__seen = {};
const row = () => [...document.querySelectorAll('#operators tbody tr')]
  .find(tr => tr.firstChild && tr.firstChild.textContent === arguments[0]);
const note = () => {
  const r = row();
  const reason = r ? r.children[3].textContent : null;
  if (reason !== null && !(reason in window.__seen))
    window.__seen[reason] = performance.timeOrigin + performance.now();
};
new MutationObserver(note).observe(document.body, {childList: true, subtree: true,
                                                  characterData: true});
"""


def pct(values: list[float], p: float) -> float:
    """The ``p`` percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def open_wallboard(driver, base: str, extension: str, password: str) -> None:  # noqa: ANN001
    """Log in (first page of a browser) and wait for the wallboard's snapshot."""
    from selenium.webdriver.common.by import By

    driver.get(base + "/wallboard")
    if "/login" in driver.current_url:
        driver.find_element(By.ID, "extension").send_keys(extension)
        driver.find_element(By.ID, "password").send_keys(password)
        driver.find_element(By.ID, "login").click()
    wait_for(lambda: driver.execute_script("return document.body.dataset.loaded"), 30,
             "the wallboard's snapshot")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--others", type=int, default=20)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="siaga-push-") as tmp, ExitStack() as stack:
        server = stack.enter_context(running_center(Path(tmp)))
        center = server.center
        creds = ensure_credentials(center)
        base = f"http://{center.http.host}:{center.http.port}"
        supervisor = center.supervisors[0]
        password = creds.console_passwords[supervisor]
        operator = center.operators[0].extension

        browsers = (args.others + PAGES_PER_BROWSER - 1) // PAGES_PER_BROWSER
        for b in range(browsers):
            driver = stack.enter_context(chromium())
            pages = min(PAGES_PER_BROWSER, args.others - b * PAGES_PER_BROWSER)
            for p in range(pages):
                if p:
                    driver.switch_to.new_window("tab")
                open_wallboard(driver, base, supervisor, password)
        page = stack.enter_context(chromium())
        open_wallboard(page, base, supervisor, password)
        page.execute_script(OBSERVE, operator)

        watch = server.ami()
        stack.callback(watch.close)
        arrived: dict[str, float] = {}
        lock = threading.Lock()

        def on_event(event, **_kw) -> None:  # noqa: ANN001
            if event.name == "QueueMemberPause" and event.keys.get("Paused") == "1":
                reason = event.keys.get("PausedReason") or event.keys.get("Reason") or ""
                # Asterisk's own time of the event (timestampevents): this script's reader
                # thread may take the event later than the server does.
                stamp = float(event.keys.get("Timestamp") or time.time())
                with lock:
                    arrived.setdefault(reason, stamp)

        watch.client.add_event_listener(on_event)
        interface = f"PJSIP/{operator}"
        latencies = []
        for i in range(args.events):
            reason = f"bench-{i}"
            response = watch.action("QueuePause", Queue="operators", Interface=interface,
                                    Paused="true", Reason=reason)
            if response is None or response.status != "Success":
                raise SystemExit(f"QueuePause refused: {response}")
            seen = wait_for(lambda r=reason: page.execute_script(
                "return window.__seen[arguments[0]]", r), 10, f"{reason} on the page")
            t0 = wait_for(lambda r=reason: arrived.get(r), 10, f"{reason} over AMI")
            latencies.append(float(seen) / 1000.0 - float(t0))  # type: ignore[arg-type]
            watch.action("QueuePause", Queue="operators", Interface=interface,
                         Paused="false")
            wait_for(lambda: page.execute_script("return '' in window.__seen"), 10,
                     "the reason cleared")
            page.execute_script("delete window.__seen['']")

        ms = [x * 1000 for x in latencies]
        print(f"push: AMI event -> DOM of a wallboard, {args.events} events, "
              f"{args.others} other pages open")
        print(f"  p50 {pct(ms, 50):.1f} ms   p95 {pct(ms, 95):.1f} ms   "
              f"max {max(ms):.1f} ms   mean {statistics.mean(ms):.1f} ms")


if __name__ == "__main__":
    main()
