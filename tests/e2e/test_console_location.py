"""Where the caller is, through the whole center (`siaga up`): a PIDF-LO location in a real
INVITE lands in the call log and on the card's endpoint; a hostile one changes nothing and the
call goes on; an alert's GPS fix is a marker on the card's map in a real Chromium."""

from __future__ import annotations

import datetime as dt
import http.cookiejar
import json
import socket
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from dispatcher.calllog.models import Call, CallLocation
from dispatcher.credentials import ensure_credentials
from pbx.phone.dialing import BodyPart
from pbx.phone.phone import Phone
from tests.browser import chromium, screenshot_path, settled
from tests.e2e.test_center_alert import enrol, post
from tests.harness import SiagaProcess, free_port, wait_for, write_test_config

pytestmark = pytest.mark.asterisk

SCREENSHOT = Path(__file__).parents[2] / "docs" / "screenshots" / "console-map.png"
NS = ('xmlns="urn:ietf:params:xml:ns:pidf" xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10" '
      'xmlns:gml="http://www.opengis.net/gml" xmlns:gs="http://www.opengis.net/pidflo/1.0"')
# Monas, Jakarta, within 30 m, as a phone's GPS would put it (RFC 5491 Circle).
PIDF_CIRCLE = f"""<?xml version="1.0" encoding="UTF-8"?>
<presence {NS} entity="pres:081355507777@citizen.example">
 <tuple id="gps"><status><gp:geopriv><gp:location-info>
  <gs:Circle srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>-6.175392 106.827153</gml:pos>
   <gs:radius uom="urn:ogc:def:uom:EPSG::9001">30</gs:radius></gs:Circle>
 </gp:location-info><gp:usage-rules/><gp:method>GPS</gp:method></gp:geopriv></status>
 <timestamp>2026-12-07T10:00:00Z</timestamp></tuple>
</presence>"""
# What killed Asterisk 22.10's own res_geolocation (a DOCTYPE; no usage-rules): refused by the
# server, and the call is answered as any other.
PIDF_HOSTILE = f"""<?xml version="1.0"?>
<!DOCTYPE presence [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<presence {NS} entity="pres:x@y"><tuple id="t"><status><gp:geopriv><gp:location-info>
<gml:Point><gml:pos>&x;</gml:pos></gml:Point></gp:location-info></gp:geopriv></status></tuple>
</presence>"""


@pytest.fixture(scope="module")
def center(tmp_path_factory: pytest.TempPathFactory,
           asterisk_install) -> Iterator[SiagaProcess]:  # noqa: ANN001
    """The whole center, with Asterisk's SIP copies going to the server's location port."""
    tmp = tmp_path_factory.mktemp("console-location")
    config = write_test_config(tmp / "center.yaml", sections={
        "console": {"sip_location_port": free_port(socket.SOCK_DGRAM)}})
    proc = SiagaProcess(config, tmp / "state")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


class Session:
    """A logged-in console session over plain HTTP (cookies kept)."""

    def __init__(self, server: SiagaProcess, extension: str) -> None:
        http_ = server.center.http
        self.base = f"http://{http_.host}:{http_.port}"
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        password = ensure_credentials(server.center).console_passwords[extension]
        form = urllib.parse.urlencode({"extension": extension, "password": password,
                                       "next": "/console"}).encode()
        self.opener.open(self.base + "/login", form, timeout=10).read()

    def location(self, linkedid: str) -> dict:
        query = urllib.parse.urlencode({"linkedid": linkedid})
        with self.opener.open(f"{self.base}/console/api/location?{query}", timeout=10) as r:
            return json.loads(r.read())


def _citizen_call(server: SiagaProcess, phones, number: str, pidf: str):  # noqa: ANN001, ANN202
    sip = f"{server.center.sip.host}:{server.center.sip.port}"
    citizen = phones._keep(Phone(phones.stack, number, server=sip))
    cid = f"loc-{uuid.uuid4().hex[:8]}@citizen.example"
    return citizen.call(server.center.hotline[0],
                        headers={"Geolocation": f"<cid:{cid}>", "Geolocation-Routing": "no"},
                        parts=[BodyPart("application/pidf+xml", pidf,
                                        (("Content-ID", f"<{cid}>"),))])


def _rows(server: SiagaProcess, linkedid: str) -> tuple[Call | None, CallLocation | None]:
    engine = create_engine(server.center.database_url)
    try:
        with engine.connect() as conn:
            call = conn.execute(select(Call).where(Call.linkedid == linkedid)).first()
            loc = conn.execute(select(CallLocation).where(
                CallLocation.linkedid == linkedid)).first()
            return call, loc
    finally:
        engine.dispose()


def test_given_an_invite_with_a_pidf_lo_when_the_citizen_calls_then_logged_and_on_the_card(
        center: SiagaProcess, phones) -> None:  # noqa: ANN001
    """A citizen's INVITE carries a Geolocation header and a multipart body (PIDF-LO + SDP):
    the call is answered as ever, the card's endpoint gives that Circle (source sip, 30 m),
    and the call log keeps it beside the call's row."""
    ami = center.ami()
    try:
        call = _citizen_call(center, phones, "081355507777", PIDF_CIRCLE)
        call.wait_confirmed(10)
        mark = ami.wait_event("VarSet", 15, Variable="SIAGA_SIP_CALL_ID")
    finally:
        ami.close()
    linkedid = mark["Linkedid"]
    supervisor = Session(center, center.center.supervisors[0])
    doc = wait_for(lambda: supervisor.location(linkedid)["location"], 15,
                   "the INVITE's location on the card")
    assert (doc["source"], doc["lat"], doc["lon"], doc["accuracy_m"], doc["label"]) == (
        "sip", -6.175392, 106.827153, 30.0, "GPS")
    call.hangup()
    call.wait_disconnected(10)
    def finished() -> tuple[Call, CallLocation] | None:
        # The writer keeps a call's row while it is in progress too (written before the
        # dialplan set its caller ID): wait for the finished one.
        call_row, location_row = _rows(center, linkedid)
        if call_row is None or location_row is None or call_row.outcome == "in_progress":
            return None
        return call_row, location_row

    row = wait_for(finished, 20, "the finished call and its location in the call log")
    logged_call, logged_loc = row  # type: ignore[misc]
    assert logged_call.caller_number == "081355507777"
    assert (logged_loc.lat, logged_loc.lon, logged_loc.radius_m, logged_loc.method) == (
        -6.175392, 106.827153, 30.0, "GPS")


def test_given_a_hostile_pidf_lo_when_the_citizen_calls_then_refused_and_the_call_goes_on(
        center: SiagaProcess, phones) -> None:  # noqa: ANN001
    """An external entity in the location: the call is answered, Asterisk lives on, the
    server says why it refused, and no location is kept or shown."""
    ami = center.ami()
    try:
        call = _citizen_call(center, phones, "081355508888", PIDF_HOSTILE)
        call.wait_confirmed(10)
        mark = wait_for(lambda: [e for e in ami.matching("VarSet",
                                                         Variable="SIAGA_SIP_CALL_ID")
                                 if e.get("CallerIDNum") == "081355508888"], 15,
                        "the dialplan's Call-ID mark")[0]  # type: ignore[index]
    finally:
        ami.close()
    wait_for(lambda: "INVITE location was refused" in center.output()
             and "DOCTYPE" in center.output(), 10, "the server's refusal in its log")
    assert center.asterisk_pid() is not None
    linkedid = mark["Linkedid"]
    supervisor = Session(center, center.center.supervisors[0])
    assert supervisor.location(linkedid)["location"] is None
    call.hangup()
    call.wait_disconnected(10)
    wait_for(lambda: _rows(center, linkedid)[0] is not None, 20, "the call in the call log")
    assert _rows(center, linkedid)[1] is None


def test_given_an_alert_with_gps_when_its_call_rings_the_operator_then_a_marker_there(
        center: SiagaProcess, phones) -> None:  # noqa: ANN001
    """An app's alert with a GPS fix: its callback rings the operator's phone first; the
    operator's page (logged in before) gets the card from the server's push while the phone
    rings (an alert's card, its incident and device), the endpoint gives the fix
    (coordinates, accuracy, age) and the card's map puts its marker and accuracy circle there
    (no tiles here: the map has none, the marker shows). The page is in Bahasa Indonesia."""
    from selenium.webdriver.common.by import By

    srv = center.center
    creds = ensure_credentials(srv)
    sip = f"{srv.sip.host}:{srv.sip.port}"
    op_ext = srv.operators[0].extension
    operator = phones.extension(op_ext, creds.password(op_ext), sip)
    mobile = srv.buttons[0].extension  # a button's endpoint stands in for the citizen's mobile
    phones.extension(mobile, creds.password(mobile), sip)
    token = enrol(center, "location-app-1", mobile)

    with chromium() as driver:
        base = f"http://{srv.http.host}:{srv.http.port}"
        driver.get(base + "/console")
        wait_for(lambda: "/login" in driver.current_url, 10, "the login page")
        driver.find_element(By.ID, "extension").send_keys(op_ext)
        driver.find_element(By.ID, "password").send_keys(creds.console_passwords[op_ext])
        driver.find_element(By.ID, "login").click()
        wait_for(settled(lambda: driver.current_url.endswith("/console")
                         and driver.find_element(By.TAG_NAME, "body").get_attribute(
                             "data-loaded")), 15, "the console page")

        fix = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=20)).isoformat()
        status, receipt = post(center, "/alerts", {
            "alert_id": str(uuid.uuid4()), "device_id": "location-app-1", "type": "medical",
            "location": {"lat": -6.1754, "lon": 106.8272, "accuracy_m": 45, "fix_time": fix},
            "callback_number": mobile}, token)
        assert status == 201, receipt
        ringing = operator.wait_incoming(30)
        card = driver.find_element(By.ID, "card")

        def card_ringing() -> bool:
            phones.stack.pump(20)
            return settled(lambda: card.get_attribute("data-state") == "ringing")()

        wait_for(card_ringing, 15, "the alert's card while the phone rings")
        detail = driver.execute_script("return window.siagaCard")
        assert detail["origin"] == {"kind": "alert", "incident_id": receipt["incident_id"],
                                    "device": "location-app-1"}, detail
        assert driver.find_element(By.ID, "card-origin").get_attribute("data-kind") == "alert"

        def first_waiting() -> str | None:
            phones.stack.pump(20)
            rows = driver.find_elements(By.CSS_SELECTOR, "#queue tbody tr")
            return rows[0].text if rows else None

        # Waiting in the queue while it rings: not a blank caller, but the alert's incident
        # and the number it will ring.
        waiting = wait_for(settled(lambda: (t := first_waiting()) and
                                   f"#{receipt['incident_id']}" in t and t), 15,
                           "the alert's call in the callers waiting")
        assert "peringatan aplikasi" in waiting and mobile in waiting, waiting

        def marker() -> dict | None:
            phones.stack.pump(20)
            return driver.execute_script(
                "const v = window.siagaCardMap; if (!v || !v.marker) return null;"
                "const p = v.marker.getLatLng();"
                "const b = v.map.getBounds();"
                "return {lat: p.lat, lng: p.lng, radius: v.circle && v.circle.getRadius(),"
                " shown: b.contains(p), icon: v.marker.getElement().complete &&"
                " v.marker.getElement().naturalWidth}")

        # The marker, its icon loaded.
        at = wait_for(settled(lambda: (m := marker()) and m["icon"] and m), 15,
                      "the marker on the card's map")
        assert (at["lat"], at["lng"], at["radius"]) == (-6.1754, 106.8272, 45)  # type: ignore
        assert at["shown"] and at["icon"], at  # type: ignore[index]
        text = driver.find_element(By.ID, "card-location").text
        assert "-6.175400, 106.827200" in text and "± 45 m" in text, text
        assert "GPS" in text  # the source, in the page's language
        link = driver.find_element(By.CSS_SELECTOR, "#card-location a")
        assert link.get_attribute("href").startswith(
            "https://www.openstreetmap.org/?mlat=-6.175400&mlon=106.827200")
        assert card.get_attribute("data-state") == "ringing"  # all of it before the answer
        # The whole page: the window as tall as the page (the card with its map at the top).
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, height + 140)
        driver.save_screenshot(str(screenshot_path(SCREENSHOT.name)))
    ringing.hangup()
