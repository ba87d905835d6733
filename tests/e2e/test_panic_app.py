"""The citizen's panic app (``/panic``) in a real Chromium against the whole center.

A phone-sized headless Chromium with an emulated position and emulated network loss; the
center is ``siaga up`` with real Asterisk; the operator and the citizen are pjsua2 phones.
Enrol by the link ``siaga device add --link`` prints → press with no network → the network
returns → exactly one incident, at the emulated position; the operator's phone rings, and
the app says what happens next from the incident's state.

Screenshots of each step go to the test's temporary directory; with
``SIAGA_UPDATE_SCREENSHOTS=1`` the one shown in the README is written to
``docs/screenshots/panic-app.png`` as well.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from dispatcher.calllog import db
from dispatcher.calllog.models import Alert, Device, Incident
from dispatcher.credentials import ensure_credentials
from tests.browser import chromium
from tests.harness import SiagaProcess, running_center, wait_for

pytestmark = pytest.mark.asterisk

CITIZEN_EXT = "339"  # the disaster agency's duty phone stands in for the citizen's mobile
WHERE = {"latitude": 1.4456, "longitude": 125.1824, "accuracy": 12}
PHONE_SCREEN = {"width": 412, "height": 915, "deviceScaleFactor": 1, "mobile": True}
README_SHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "panic-app.png"


@pytest.fixture(scope="module")
def center_server(tmp_path_factory: pytest.TempPathFactory,
                  asterisk_install) -> Iterator[SiagaProcess]:  # noqa: ANN001
    """The whole center (`siaga up`) on free ports, for this module."""
    with running_center(tmp_path_factory.mktemp("panic-app")) as proc:
        yield proc


def link_for(server: SiagaProcess, device_id: str, label: str = "Ibu Sari") -> str:
    """`siaga device add --link` on the center's config, as an administrator runs it."""
    out = subprocess.run(
        [str(Path(sys.executable).parent / "siaga"), "device", "add", device_id, "--link",
         "--config", str(server.config), "--state-dir", str(server.state_dir),
         "--label", label, "--json"],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout)["link"]


def phone_browser(base: str) -> Any:
    """A headless Chromium the size of a phone, allowed to read an emulated position."""
    manager = chromium("--window-size=412,915")
    driver = manager.__enter__()
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE_SCREEN)
    driver.execute_cdp_cmd("Browser.grantPermissions",
                           {"origin": base, "permissions": ["geolocation"]})
    driver.execute_cdp_cmd("Emulation.setGeolocationOverride", WHERE)
    driver.execute_cdp_cmd("Network.enable", {})
    driver._siaga_manager = manager  # noqa: SLF001 -- closed by close_browser
    return driver


def close_browser(driver: Any) -> None:
    """Quit the browser and remove its profile."""
    driver._siaga_manager.__exit__(None, None, None)  # noqa: SLF001


def network(driver: Any, online: bool) -> None:
    """Cut or restore the page's network (the phone in a lift, then out of it)."""
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": not online, "latency": 0, "downloadThroughput": -1,
        "uploadThroughput": -1})


def settled(check: Callable[[], object]) -> Callable[[], object]:
    """``check`` as a wait predicate that is false while the page is being replaced."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    def predicate() -> object:
        try:
            return check()
        except (NoSuchElementException, StaleElementReferenceException):
            return False
    return predicate


def status(driver: Any) -> tuple[str, str, str]:
    """The app's status box: (data-state, data-step, the sentence shown)."""
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.ID, "status")
    return (box.get_attribute("data-state"), box.get_attribute("data-step") or "",
            driver.find_element(By.ID, "status-text").text)


def rows(server: SiagaProcess, device_id: str) -> tuple[int, list[Incident]]:
    """Alerts and incidents the center's database holds for the device."""
    engine = db.make_engine(server.center.database_url)
    try:
        with db.make_sessionmaker(engine)() as session:
            device = session.scalar(select(Device).where(Device.device_id == device_id))
            alerts = session.scalar(select(func.count()).select_from(Alert)
                                    .where(Alert.device_id == device.id))
            incidents = list(session.scalars(select(Incident)
                                             .where(Incident.device_id == device.id)))
            session.expunge_all()
            return alerts, incidents
    finally:
        engine.dispose()


def shot(driver: Any, directory: Path, name: str) -> Path:
    """A screenshot of the phone's screen."""
    path = directory / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def test_given_a_link_when_pressed_offline_then_one_incident_at_the_phone_and_the_operator_rings(
        center_server: SiagaProcess, phones, tmp_path: Path) -> None:  # noqa: ANN001
    """Enrol by the link (the code leaves the address bar at once); enter the callback
    number; cut the network; reload (the app opens from its service worker); press twice:
    nothing reaches the center. Network back: exactly one alert and one incident, at the
    emulated position, with the number typed; the operator's phone rings; the app says an
    operator is being reached, then that the operator is calling; the citizen answers and
    the app says they talk. A press while the alert is live opens nothing new."""
    from selenium.webdriver.common.by import By

    center = center_server.center
    creds = ensure_credentials(center)
    sip = f"{center.sip.host}:{center.sip.port}"
    base = f"http://{center.http.host}:{center.http.port}"
    op_ext = center.operators[0].extension
    link = link_for(center_server, "sari-phone")
    code = link.split("#code=", 1)[1]

    driver = phone_browser(base)
    try:
        driver.get(link)
        wait_for(settled(lambda: driver.find_element(By.ID, "settings-view").is_displayed()),
                 15, "the app to be enrolled and ask for the callback number")
        assert driver.current_url == base + "/panic/", driver.current_url
        assert code not in driver.execute_script("return location.href + document.body.innerHTML")
        kept = json.loads(driver.execute_script("return localStorage['siaga.device']"))
        assert kept["device_id"] == "sari-phone" and kept["token"]
        shot(driver, tmp_path, "1-number")
        driver.find_element(By.ID, "number").send_keys(CITIZEN_EXT)
        driver.find_element(By.ID, "save-number").click()
        wait_for(settled(lambda: "±12 m" in driver.find_element(By.ID, "location").text),
                 15, "the app to show the phone's position and accuracy")
        wait_for(lambda: driver.execute_script(
            "return !!(navigator.serviceWorker && navigator.serviceWorker.controller)"),
            15, "the service worker to control the page (the app works offline)")
        shot(driver, tmp_path, "2-ready")

        network(driver, online=False)
        driver.refresh()  # no network: the page comes from the service worker's cache
        wait_for(settled(lambda: driver.execute_script("return document.body.dataset.ready")
                         and driver.find_element(By.ID, "panic").is_displayed()),
                 15, "the app to open with no network")
        assert driver.execute_script(
            "return performance.getEntriesByType('navigation')[0].workerStart") > 0
        driver.find_element(By.CSS_SELECTOR, "#types input[value='medical'] + span").click()
        driver.find_element(By.ID, "panic").click()
        wait_for(settled(lambda: status(driver)[0] == "queued"), 15,
                 "the press to be kept for lack of network")
        driver.find_element(By.ID, "panic").click()  # a second, anxious press
        kept_alerts = driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const open = indexedDB.open("siaga-panic", 1);
            open.onsuccess = () => {
              const all = open.result.transaction("alerts").objectStore("alerts").getAll();
              all.onsuccess = () => done(all.result.map((a) => [a.alert_id, a.sent]));
            };""")
        assert len(kept_alerts) == 1 and kept_alerts[0][1] is False, kept_alerts
        shot(driver, tmp_path, "3-offline")
        assert rows(center_server, "sari-phone") == (0, [])

        # The phones register only now: their SIP stack answers Asterisk's qualify pings
        # only while the test waits, and the browser's steps above do not wait.
        operator = phones.extension(op_ext, creds.password(op_ext), sip)
        citizen = phones.extension(CITIZEN_EXT, creds.password(CITIZEN_EXT), sip)
        network(driver, online=True)
        wait_for(lambda: rows(center_server, "sari-phone")[0] >= 1, 30,
                 "the kept alert to reach the center once the network is back")
        taken = operator.wait_incoming(30)
        wait_for(settled(lambda: status(driver)[0] == "operator_ringing"), 20,
                 "the app to say an operator is being reached")
        shot(driver, tmp_path, "4-operator-ringing")
        taken.answer()
        taken.wait_confirmed()
        ringing = citizen.wait_incoming(30)
        wait_for(settled(lambda: status(driver)[1] == "operator_answered"), 20,
                 "the app to say the operator is calling")
        assert "Operator sedang menelepon Anda" in status(driver)[2]
        readme = shot(driver, tmp_path, "5-operator-calling")
        ringing.answer()
        ringing.wait_confirmed()
        wait_for(settled(lambda: status(driver)[0] == "talking"), 20,
                 "the app to say the citizen talks with the operator")
        driver.find_element(By.ID, "panic").click()  # pressed again while talking
        driver.find_element(By.ID, "lang").click()
        wait_for(settled(lambda: "talking with an operator" in status(driver)[2]), 10,
                 "the app in English")
        shot(driver, tmp_path, "6-talking-en")

        alerts, incidents = rows(center_server, "sari-phone")
        assert (alerts, len(incidents)) == (1, 1), (alerts, incidents)
        incident = incidents[0]
        assert (incident.lat, incident.lon, incident.accuracy_m) == (
            WHERE["latitude"], WHERE["longitude"], WHERE["accuracy"])
        assert incident.type == "medical" and incident.callback_number == CITIZEN_EXT
        if os.environ.get("SIAGA_UPDATE_SCREENSHOTS") == "1":
            README_SHOT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(readme, README_SHOT)
        taken.hangup()
        ringing.wait_disconnected(15)
    finally:
        close_browser(driver)


HOSTILE_LABEL = '<img src=x onerror="document.title=\'owned\'">Budi'


def test_given_a_spent_link_when_opened_again_then_the_app_says_so_and_gets_no_token(
        center_server: SiagaProcess, tmp_path: Path) -> None:
    """The link works once: a second phone opening it is told to ask for a new one and
    holds no credential; the API answers a JSON 410 with a reason; a made-up code gets a
    JSON 403. The device's label, markup typed by whoever enrolled it, is shown as text."""
    from selenium.webdriver.common.by import By

    center = center_server.center
    base = f"http://{center.http.host}:{center.http.port}"
    link = link_for(center_server, "budi-phone", HOSTILE_LABEL)
    first = phone_browser(base)
    try:
        first.get(link)
        wait_for(settled(lambda: first.find_element(By.ID, "settings-view").is_displayed()),
                 15, "the first phone to enrol")
        line = first.find_element(By.ID, "device-line")
        assert HOSTILE_LABEL in line.text
        assert line.find_elements(By.TAG_NAME, "img") == []
        assert first.title != "owned"
        shot(first, tmp_path, "hostile-label")
    finally:
        close_browser(first)
    second = phone_browser(base)
    try:
        second.get(link)
        wait_for(settled(lambda: "sudah dipakai" in second.find_element(
            By.ID, "enrol-text").text), 15, "the second phone to be told the link is spent")
        assert second.execute_script("return localStorage['siaga.device'] || ''") == ""
        shot(second, tmp_path, "spent-link")
    finally:
        close_browser(second)

    def enrol(code: str) -> tuple[int, dict[str, Any]]:
        req = urllib.request.Request(f"{base}/api/v1/enrol", method="POST",
                                     data=json.dumps({"code": code}).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    status_code, doc = enrol(link.split("#code=", 1)[1])
    assert (status_code, doc["error"]) == (410, "code_used") and doc["reason"]
    status_code, doc = enrol("made-up-code-made-up-code-0")
    assert (status_code, doc["error"]) == (403, "invalid_code") and doc["reason"]
