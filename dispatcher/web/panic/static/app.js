// Siaga's panic app: enrol by a one-time link, press to raise an alert, follow it.
//
// Rules this file keeps:
// - The enrolment code arrives in the URL's fragment and leaves it at once
//   (history.replaceState); it is spent once for the device's token, kept on the phone.
// - A press is written to IndexedDB before it is sent, with its alert id; it is sent (again)
//   with that same id until the center answers, so a retry or a double press never opens
//   a second incident: the API answers a known id with the first alert's incident.
// - Every value from the server is shown with textContent, never parsed as HTML.
"use strict";

const API = "/api/v1";
const POLL_MS = 3000;
const RETRY_MS = 5000;
const FIX_WAIT_MS = 4000;
// Incident states after which a press opens a new alert rather than resending this one.
const OVER = new Set(["closed", "cancelled", "unreachable"]);

const TEXT = {
  id: {
    title: "Tombol Darurat",
    other_lang: "English",
    enrol_title: "Aktifkan aplikasi",
    enrol_needed: "Buka tautan pendaftaran (atau pindai kode QR) yang diberikan pusat " +
      "panggilan darurat.",
    enrolling: "Mendaftarkan telepon ini…",
    enrol_offline: "Tidak ada jaringan. Pendaftaran dicoba lagi saat jaringan kembali.",
    code_used: "Tautan ini sudah dipakai. Minta tautan baru ke pusat panggilan.",
    code_expired: "Tautan ini sudah kedaluwarsa. Minta tautan baru ke pusat panggilan.",
    invalid_code: "Kode pendaftaran tidak sah. Minta tautan baru ke pusat panggilan.",
    enrolled: "Telepon ini terdaftar.",
    type_legend: "Jenis keadaan darurat",
    type_panic: "Darurat", type_medical: "Medis", type_fire: "Kebakaran",
    type_crime: "Kejahatan", type_other: "Lainnya",
    press: "TOLONG",
    press_hint: "Tekan untuk meminta bantuan",
    press_again: "Tersimpan: dikirim saat ada jaringan",
    press_sent: "Peringatan terkirim",
    ready: "Siap. Tekan tombol bila Anda butuh bantuan.",
    locating: "Mencari lokasi Anda…",
    queued: "Belum terkirim: tidak ada jaringan. Peringatan Anda disimpan dan dikirim " +
      "otomatis saat jaringan kembali.",
    sending: "Mengirim peringatan…",
    state_new: "Pusat menerima peringatan Anda. Mencari operator…",
    state_operator_ringing: "Operator sedang dihubungi. Siapkan telepon Anda.",
    step_operator_answered: "Operator sedang menelepon Anda. Angkat telepon Anda.",
    step_citizen_no_answer: "Kami menelepon Anda tetapi tidak diangkat. Kami akan " +
      "menelepon lagi.",
    state_talking: "Anda terhubung dengan operator.",
    state_handed_to_agency: "Bantuan diteruskan ke {agency}.",
    state_closed: "Kasus ditutup. Tekan tombol lagi bila perlu bantuan.",
    state_cancelled: "Peringatan dibatalkan.",
    state_unreachable: "Kami tidak dapat menghubungi Anda. Tekan lagi, atau telepon 112.",
    incident: "Kejadian #{id} · {type} · dikirim {time}",
    refused: "Pusat menolak peringatan: {reason}",
    revoked: "Telepon ini tidak terdaftar lagi. Hubungi pusat panggilan.",
    location: "Lokasi: ±{accuracy} m",
    no_location: "Lokasi belum diketahui (izinkan akses lokasi).",
    location_denied: "Akses lokasi ditolak: operator tidak akan tahu lokasi Anda.",
    number_line: "Kami menelepon balik ke: {number}",
    settings: "Pengaturan",
    number_label: "Nomor telepon Anda (untuk ditelepon balik)",
    number_bad: "Tulis 3 sampai 20 angka, boleh diawali +.",
    save: "Simpan",
    saved: "Nomor disimpan.",
    device: "Perangkat: {id}",
    done: "Selesai",
    offline: "Tidak ada jaringan.",
    call_112: "Jika bisa, telepon juga 112.",
    agency_police: "Polisi", agency_fire: "Pemadam Kebakaran", agency_health: "Ambulans",
    agency_disaster: "BPBD (penanggulangan bencana)", agency_public_order: "Satpol PP",
    agency_transport: "Dinas Perhubungan",
  },
  en: {
    title: "Emergency Button",
    other_lang: "Indonesia",
    enrol_title: "Activate the app",
    enrol_needed: "Open the enrolment link (or scan the QR code) the emergency center gave you.",
    enrolling: "Enrolling this phone…",
    enrol_offline: "No network. Enrolment is tried again when the network returns.",
    code_used: "This link was already used. Ask the center for a new one.",
    code_expired: "This link has expired. Ask the center for a new one.",
    invalid_code: "This enrolment code is not valid. Ask the center for a new link.",
    enrolled: "This phone is enrolled.",
    type_legend: "Kind of emergency",
    type_panic: "Emergency", type_medical: "Medical", type_fire: "Fire",
    type_crime: "Crime", type_other: "Other",
    press: "HELP",
    press_hint: "Press to ask for help",
    press_again: "Kept: sent when there is a network",
    press_sent: "Alert sent",
    ready: "Ready. Press the button if you need help.",
    locating: "Finding your location…",
    queued: "Not sent yet: no network. Your alert is saved and will be sent automatically " +
      "when the network returns.",
    sending: "Sending the alert…",
    state_new: "The center received your alert. Finding an operator…",
    state_operator_ringing: "An operator is being reached. Keep your phone at hand.",
    step_operator_answered: "An operator is calling you. Answer your phone.",
    step_citizen_no_answer: "We called you but nobody answered. We will call again.",
    state_talking: "You are talking with an operator.",
    state_handed_to_agency: "Help was passed on to {agency}.",
    state_closed: "The case is closed. Press the button again if you need help.",
    state_cancelled: "The alert was cancelled.",
    state_unreachable: "We could not reach you. Press again, or call 112.",
    incident: "Incident #{id} · {type} · sent {time}",
    refused: "The center refused the alert: {reason}",
    revoked: "This phone is no longer enrolled. Contact the center.",
    location: "Location: ±{accuracy} m",
    no_location: "Location not known yet (allow location access).",
    location_denied: "Location access denied: the operator will not know where you are.",
    number_line: "We call you back on: {number}",
    settings: "Settings",
    number_label: "Your phone number (to call you back)",
    number_bad: "Write 3 to 20 digits, optionally after a +.",
    save: "Save",
    saved: "Number saved.",
    device: "Device: {id}",
    done: "Done",
    offline: "No network.",
    call_112: "If you can, also call 112.",
    agency_police: "the police", agency_fire: "the fire brigade", agency_health: "an ambulance",
    agency_disaster: "the disaster agency", agency_public_order: "public order officers",
    agency_transport: "the transport office",
  },
};

const $ = (id) => document.getElementById(id);
const store = window.localStorage;
let lang = store.getItem("siaga.lang") === "en" ? "en" : "id";
let fix = null;  // the latest position: {lat, lon, accuracy_m, fix_time}
let locationDenied = false;
let current = null;  // the alert being followed (as kept in IndexedDB)
let sending = false;
let pendingCode = null;
let enrolMessage = {key: "enrol_needed", values: null, error: false};

function t(key, values) {
  let text = TEXT[lang][key] || TEXT.id[key] || key;
  for (const [name, value] of Object.entries(values || {})) {
    text = text.split("{" + name + "}").join(String(value));
  }
  return text;
}

// -- storage: the device in localStorage, alerts in IndexedDB ---------------------------

function device() {
  try {
    const kept = JSON.parse(store.getItem("siaga.device") || "null");
    return kept && kept.device_id && kept.token ? kept : null;
  } catch (e) {
    return null;
  }
}

function number() {
  return store.getItem("siaga.number") || "";
}

function openDb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open("siaga-panic", 1);
    request.onupgradeneeded = () => request.result.createObjectStore("alerts",
      {keyPath: "alert_id"});
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function dbDo(mode, work) {
  const db = await openDb();
  return new Promise((resolve, reject) => {
    const tx = db.transaction("alerts", mode);
    const result = work(tx.objectStore("alerts"));
    tx.oncomplete = () => { db.close(); resolve(result && result.result); };
    tx.onerror = () => { db.close(); reject(tx.error); };
  });
}

const saveAlert = (alert) => dbDo("readwrite", (s) => s.put(alert));
const dropAlert = (alertId) => dbDo("readwrite", (s) => s.delete(alertId));
const KEEP_MS = 7 * 24 * 3600 * 1000;  // sent alerts older than this are forgotten

async function forgetOld() {
  const alerts = await allAlerts();
  for (const alert of alerts) {
    if (alert.sent && alert.created < Date.now() - KEEP_MS) {
      await dropAlert(alert.alert_id);
    }
  }
}
const allAlerts = () => dbDo("readonly", (s) => s.getAll());

async function latestAlert() {
  const alerts = await allAlerts();
  alerts.sort((a, b) => a.created - b.created);
  return alerts.length ? alerts[alerts.length - 1] : null;
}

function newAlertId() {
  if (window.crypto && crypto.randomUUID) {
    return crypto.randomUUID();
  }
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// -- the API --------------------------------------------------------------------------

async function api(method, path, body, extraHeaders) {
  const headers = Object.assign({"Accept": "application/json"}, extraHeaders || {});
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
  }
  const response = await fetch(API + path, {
    method, headers, cache: "no-store", credentials: "omit",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let doc = null;
  try {
    doc = await response.json();
  } catch (e) {
    doc = null;
  }
  return {status: response.status, doc: doc || {},
          retryAfter: Number(response.headers.get("Retry-After")) || 0};
}

function auth(dev) {
  return {"Authorization": "Bearer " + dev.token, "X-Siaga-Device": dev.device_id};
}

// -- enrolment ------------------------------------------------------------------------

function takeCodeFromUrl() {
  const params = new URLSearchParams(window.location.hash.slice(1));
  const code = params.get("code");
  if (window.location.hash || window.location.search) {
    // The code must not stay in the address bar, the history or a bookmark.
    history.replaceState(null, "", window.location.pathname);
  }
  return code;
}

async function enrol() {
  if (!pendingCode) {
    return;
  }
  show("enrol");
  enrolSays("enrolling");
  let reply;
  try {
    reply = await api("POST", "/enrol", {code: pendingCode});
  } catch (e) {
    enrolSays("enrol_offline", null, true);
    return;  // kept in memory only; retried on "online"
  }
  pendingCode = null;
  if (reply.status !== 200) {
    const known = ["code_used", "code_expired", "invalid_code"];
    if (known.includes(reply.doc.error)) {
      enrolSays(reply.doc.error, null, true);
    } else {
      enrolSays("refused", {reason: reply.doc.reason || reply.status}, true);
    }
    if (device()) {
      // Enrolled before (the link opened twice): the app works; say why the link did not.
      route();
      setText("error", $("enrol-text").textContent);
    }
    return;
  }
  store.setItem("siaga.device", JSON.stringify({device_id: reply.doc.device_id,
    token: reply.doc.token, label: reply.doc.label || ""}));
  if (!number() && reply.doc.callback_number) {
    store.setItem("siaga.number", reply.doc.callback_number);
  }
  setText("error", "");
  route();
}

function enrolSays(key, values, error) {
  enrolMessage = {key, values: values || null, error: !!error};
  renderEnrol();
}

function renderEnrol() {
  const node = $("enrol-text");
  node.textContent = t(enrolMessage.key, enrolMessage.values);
  node.className = enrolMessage.error ? "error" : "";
}

// -- location -------------------------------------------------------------------------

function keepFix(position) {
  const c = position.coords;
  fix = {lat: c.latitude, lon: c.longitude, accuracy_m: Math.round(c.accuracy * 10) / 10,
         fix_time: new Date(position.timestamp || Date.now()).toISOString()};
  locationDenied = false;
  renderLocation();
}

function watchLocation() {
  if (!("geolocation" in navigator)) {
    renderLocation();
    return;
  }
  navigator.geolocation.watchPosition(keepFix, (error) => {
    locationDenied = error.code === error.PERMISSION_DENIED;
    renderLocation();
  }, {enableHighAccuracy: true, maximumAge: 10000, timeout: 30000});
}

function freshFix() {
  // A press waits a few seconds at most for a position: help without one beats no help.
  if (fix || !("geolocation" in navigator)) {
    return Promise.resolve(fix);
  }
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(fix), FIX_WAIT_MS);
    navigator.geolocation.getCurrentPosition((p) => {
      keepFix(p);
      clearTimeout(timer);
      resolve(fix);
    }, () => { clearTimeout(timer); resolve(fix); },
    {enableHighAccuracy: true, maximumAge: 10000, timeout: FIX_WAIT_MS});
  });
}

// -- pressing and sending -------------------------------------------------------------

function chosenType() {
  const checked = document.querySelector('#types input[name="type"]:checked');
  return checked ? checked.value : "panic";
}

async function press() {
  const dev = device();
  if (!dev || !number()) {
    route();
    return;
  }
  if (current && !OVER.has(current.state)) {
    // The same alert again: a double press, or a press while it waits for the network.
    sendPending();
    return;
  }
  current = {alert_id: newAlertId(), type: chosenType(), callback_number: number(),
             created: Date.now(), sent: false, state: "locating"};
  render();
  const position = await freshFix();
  const body = {alert_id: current.alert_id, device_id: dev.device_id, type: current.type,
                callback_number: current.callback_number};
  if (position) {
    body.location = position;
  }
  current.body = body;
  current.state = "queued";
  await saveAlert(current);  // kept before the first try: a lost network loses nothing
  render();
  sendPending();
}

async function sendPending() {
  const dev = device();
  if (sending || !dev) {
    return;
  }
  sending = true;
  try {
    const alerts = await allAlerts();
    for (const alert of alerts.filter((a) => !a.sent && a.body)) {
      await sendOne(dev, alert);
    }
  } finally {
    sending = false;
  }
}

async function sendOne(dev, alert) {
  if (current && current.alert_id === alert.alert_id) {
    current.state = current.state === "queued" ? "sending" : current.state;
    render();
  }
  let reply;
  try {
    reply = await api("POST", "/alerts", alert.body, {"Authorization": "Bearer " + dev.token});
  } catch (e) {
    alert.state = "queued";  // no network: kept; sent again with the same id
    await saveAlert(alert);
    syncCurrent(alert);
    return;
  }
  if (reply.status === 200 || reply.status === 201) {
    alert.sent = true;
    alert.incident_id = reply.doc.incident_id;
    alert.state = reply.doc.state;
    alert.error = null;
  } else if (reply.status === 401) {
    alert.state = "refused";
    alert.error = t("revoked");
  } else if (reply.status === 429 || reply.status >= 500) {
    alert.state = "queued";  // the center asks for patience: the timer sends it again
  } else {
    alert.sent = true;  // a refusal the same body would meet again: stop sending it
    alert.state = "refused";
    alert.error = t("refused", {reason: reply.doc.reason || reply.status});
  }
  await saveAlert(alert);
  syncCurrent(alert);
  if (alert.sent && alert.state !== "refused") {
    poll();
  }
}

function syncCurrent(alert) {
  if (current && current.alert_id === alert.alert_id) {
    current = alert;
  }
  render();
}

async function poll() {
  const dev = device();
  if (!dev || !current || !current.sent || current.state === "refused") {
    return;
  }
  let reply;
  try {
    reply = await api("GET", "/alerts/" + encodeURIComponent(current.alert_id), undefined,
      auth(dev));
  } catch (e) {
    setText("net", t("offline"));
    return;
  }
  setText("net", "");
  if (reply.status === 200 && current && reply.doc.alert_id === current.alert_id) {
    current.state = reply.doc.state;
    current.step = reply.doc.step;
    current.agency = reply.doc.agency;
    current.incident_id = reply.doc.incident_id;
    await saveAlert(current);
    render();
  } else if (reply.status === 401) {
    current.state = "refused";
    current.error = t("revoked");
    render();
  }
}

// -- the screen -----------------------------------------------------------------------

function setText(id, text) {
  $(id).textContent = text;
}

function show(view) {
  for (const name of ["enrol", "panic", "settings"]) {
    $(name + "-view").hidden = name !== view;
  }
  $("open-settings").hidden = view !== "panic";
}

function statusText(alert) {
  if (!alert) {
    return t("ready");
  }
  switch (alert.state) {
    case "locating": return t("locating");
    case "queued": return t("queued");
    case "sending": return t("sending");
    case "refused": return alert.error || t("refused", {reason: ""});
    case "operator_ringing":
      if (alert.step === "operator_answered") {
        return t("step_operator_answered");
      }
      if (alert.step === "citizen_no_answer") {
        return t("step_citizen_no_answer");
      }
      return t("state_operator_ringing");
    case "handed_to_agency":
      return t("state_handed_to_agency",
        {agency: alert.agency ? t("agency_" + alert.agency) : "—"});
    default:
      return TEXT[lang]["state_" + alert.state] ? t("state_" + alert.state) : alert.state;
  }
}

function render() {
  document.documentElement.lang = lang;
  document.title = "Siaga — " + t("title");
  for (const node of document.querySelectorAll("[data-t]")) {
    node.textContent = t(node.dataset.t);
  }
  setText("lang", t("other_lang"));
  const status = $("status");
  status.dataset.state = current ? current.state : "idle";
  status.dataset.step = current && current.step ? current.step : "";
  setText("status-text", statusText(current));
  let detail = "";
  if (current && current.incident_id) {
    const time = new Date(current.created).toLocaleTimeString(lang === "en" ? "en-GB" : "id-ID",
      {hour: "2-digit", minute: "2-digit"});
    detail = t("incident", {id: current.incident_id, type: t("type_" + current.type), time});
  }
  setText("status-detail", detail);
  const active = current && !OVER.has(current.state) && current.state !== "refused";
  let hint = t("press_hint");
  if (active) {
    hint = current.sent ? t("press_sent") : t("press_again");
  }
  $("panic").querySelector(".small").textContent = hint;
  renderEnrol();
  $("done").hidden = !(current && (OVER.has(current.state) || current.state === "refused"));
  setText("number-line", number() ? t("number_line", {number: number()}) : "");
  const dev = device();
  setText("device-line", dev ? t("device", {id: dev.device_id + (dev.label ? " · " + dev.label
    : "")}) : "");
  renderLocation();
}

function renderLocation() {
  let text = t("no_location");
  if (fix) {
    text = t("location", {accuracy: Math.round(fix.accuracy_m)});
  } else if (locationDenied) {
    text = t("location_denied");
  }
  setText("location", text);
}

function route() {
  render();
  if (pendingCode) {
    show("enrol");
  } else if (!device()) {
    show("enrol");
  } else if (!number()) {
    show("settings");
    $("number").value = "";
  } else {
    show("panic");
  }
}

function saveNumber() {
  const value = $("number").value.replace(/[\s-]/g, "");
  if (!/^\+?[0-9]{3,20}$/.test(value)) {
    setText("number-error", t("number_bad"));
    return;
  }
  setText("number-error", "");
  store.setItem("siaga.number", value);
  route();
}

async function start() {
  pendingCode = takeCodeFromUrl();
  $("panic").addEventListener("click", press);
  $("save-number").addEventListener("click", saveNumber);
  $("number").addEventListener("keydown", (e) => { if (e.key === "Enter") saveNumber(); });
  $("open-settings").addEventListener("click", () => {
    $("number").value = number();
    show("settings");
  });
  $("done").addEventListener("click", () => { current = null; render(); });
  $("lang").addEventListener("click", () => {
    lang = lang === "id" ? "en" : "id";
    store.setItem("siaga.lang", lang);
    render();
  });
  window.addEventListener("online", () => { setText("net", ""); enrol(); sendPending(); });
  window.addEventListener("offline", () => setText("net", t("offline")));
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("sw.js").catch(() => undefined);
  }
  await forgetOld().catch(() => undefined);
  current = await latestAlert().catch(() => null);
  if (current && current.state === "locating") {
    current = null;  // the page closed before the press was kept: nothing to resend
  }
  route();
  watchLocation();
  if (pendingCode) {
    enrol();
  }
  sendPending();
  // The network may return without an "online" event (a captive portal, a flaky cell):
  // keep trying what is kept, and follow the alert until it is over.
  setInterval(sendPending, RETRY_MS);
  setInterval(() => { if (current && !OVER.has(current.state)) poll(); }, POLL_MS);
  document.body.dataset.ready = "1";
}

start();
