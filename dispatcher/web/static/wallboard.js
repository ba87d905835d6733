// The wallboard polls /wallboard.json. Every value is put into the page as text, never as
// HTML: a caller ID is whatever the caller's phone said it is.
"use strict";

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = String(text);
  row.appendChild(td);
  return td;
}

function fill(tableId, rows, columns) {
  const body = document.querySelector("#" + tableId + " tbody");
  body.replaceChildren();
  for (const item of rows) {
    const tr = document.createElement("tr");
    for (const col of columns) {
      const td = cell(tr, typeof col === "function" ? col(item) : item[col]);
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
function showAlarm(selftest) {
  const banner = document.getElementById("selftest-alarm");
  if (!selftest || !selftest.alarm) { banner.hidden = true; banner.textContent = ""; return; }
  const since = selftest.since_s === null ? "" : " (" + seconds(selftest.since_s) + ")";
  banner.textContent = banner.dataset.text + since + " — " + selftest.stage +
    (selftest.error ? ": " + selftest.error : "");
  banner.hidden = false;
}

async function refresh() {
  try {
    const response = await fetch("/wallboard.json", {credentials: "same-origin"});
    if (response.status === 401) { window.location = "/login?next=/wallboard"; return; }
    const board = await response.json();
    document.getElementById("waiting").textContent = board.waiting;
    document.getElementById("longest").textContent = seconds(board.longest_wait_s);
    document.getElementById("available").textContent = board.available;
    document.getElementById("active").textContent = board.active_calls;
    document.getElementById("owed").textContent = board.callbacks_owed;
    showAlarm(board.selftest);
    fill("callers", board.callers, ["position", "caller", (c) => seconds(c.wait_s)]);
    fill("operators", board.operators, ["extension", "name", "state", "reason"]);
    fill("callbacks", board.callbacks,
         ["number", "reason", (c) => seconds(c.since_s), "state"]);
    fill("agencies", board.agencies,
         ["name", (a) => a.reachable + " / " + a.phones.length]);
    document.getElementById("updated").textContent = new Date().toLocaleTimeString();
    document.body.dataset.loaded = "yes";
  } catch (err) {
    document.getElementById("updated").textContent = "—";
  }
}

refresh();
setInterval(refresh, 2000);
