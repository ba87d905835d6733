// The wallboard follows the live push channel (push.js): the server pushes each change.
// Every value is put into the page as text, never as HTML: a caller ID is whatever the
// caller's phone said it is.
"use strict";

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = String(text);
  row.appendChild(td);
  return td;
}

// The page's words for the states and reasons the server sends as plain English words
// (a JSON block the template writes; it is data, never run).
const LABELS = JSON.parse(document.getElementById("labels").textContent);
const WORDS = new Set(["state", "reason"]);

function label(col, value) {
  return WORDS.has(col) && Object.hasOwn(LABELS, value) ? LABELS[value] : value;
}

function fill(tableId, rows, columns) {
  const body = document.querySelector("#" + tableId + " tbody");
  body.replaceChildren();
  for (const item of rows) {
    const tr = document.createElement("tr");
    for (const col of columns) {
      const td = cell(tr, typeof col === "function" ? col(item) : label(col, item[col]));
      if (col === "state") td.className = "state " + String(item.state).replace(/\s/g, "-");
    }
    body.appendChild(tr);
  }
}

function seconds(s) {
  const m = Math.floor(s / 60);
  return m + ":" + String(s % 60).padStart(2, "0");
}

// The self-test's alarm: a banner of plain text (the stage and error come from the probe).
function showAlarm(selftest, age) {
  const banner = document.getElementById("selftest-alarm");
  if (!selftest || !selftest.alarm) { banner.hidden = true; banner.textContent = ""; return; }
  const since = selftest.since_s === null ? "" : " (" + seconds(selftest.since_s + age) + ")";
  banner.textContent = banner.dataset.text + since + " — " + selftest.stage +
    (selftest.error ? ": " + selftest.error : "");
  banner.hidden = false;
}

let board = null;
let received = 0;  // when the board was last pushed (waits count on from there)

function show() {
  if (board === null) return;
  const age = Math.max(0, Math.floor((Date.now() - received) / 1000));
  document.getElementById("waiting").textContent = board.waiting;
  document.getElementById("longest").textContent =
    seconds(board.waiting ? board.longest_wait_s + age : 0);
  document.getElementById("available").textContent = board.available;
  document.getElementById("active").textContent = board.active_calls;
  document.getElementById("owed").textContent = board.callbacks_owed;
  showAlarm(board.selftest, age);
  fill("callers", board.callers, ["position", "caller", (c) => seconds(c.wait_s + age)]);
  fill("operators", board.operators, ["extension", "name", "state", "reason"]);
  fill("callbacks", board.callbacks,
       ["number", "reason", (c) => seconds(c.since_s + age), "state"]);
  fill("agencies", board.agencies,
       ["name", (a) => a.reachable + " / " + a.phones.length]);
}

function take(doc) {
  if (!doc) return;
  board = doc;
  received = Date.now();
  show();
  document.getElementById("updated").textContent = new Date().toLocaleTimeString(
    document.documentElement.lang === "en" ? "en-GB" : "id-ID");
  document.body.dataset.loaded = "yes";
}

SiagaPush.connect({
  snapshot: (views) => take(views.wallboard),
  view: (name, doc) => { if (name === "wallboard") take(doc); },
  offline: () => { document.getElementById("updated").textContent = "—"; },
});
// Waits count on between pushes: the page's own clock, no request.
setInterval(show, 1000);
