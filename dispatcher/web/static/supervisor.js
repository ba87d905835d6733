// The supervisor's page: every desk live from the push channel (view "desks"), listen /
// whisper / barge from the supervisor's own phone, and the recordings of recent calls.
// Every value is put into the page as text (textContent), never as HTML: a caller's number
// is whatever the caller's phone said it is.
"use strict";

(() => {
  const LABELS = JSON.parse(document.getElementById("labels").textContent);
  const TEXT = JSON.parse(document.getElementById("sv-text").textContent);
  const MODES = ["listen", "whisper", "barge"];
  const csrf = () => document.querySelector("meta[name=siaga-csrf]").content;

  let desks = [];
  let received = 0;  // when the desks were last pushed (durations count on from there)
  let calls = "";
  let shown = "";  // the desks last drawn, durations aside  // the calls on the desks, to reload the recent list when one ends

  function seconds(s) {
    const m = Math.floor(s / 60);
    return m + ":" + String(s % 60).padStart(2, "0");
  }

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = String(text);
    row.appendChild(td);
    return td;
  }

  function status(text, failed) {
    const p = document.getElementById("spy-status");
    p.textContent = text;
    p.className = failed ? "error" : "";
  }

  async function spy(extension, mode) {
    status("…", false);
    try {
      const answer = await fetch("/console/api/spy", {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-Siaga-CSRF": csrf()},
        body: JSON.stringify({extension, mode}),
      });
      const doc = await answer.json();
      if (!answer.ok) {
        status(TEXT.refused + ": " + (doc.reason || doc.error || answer.status), true);
        return;
      }
      status(TEXT.ringing_you.replace("{mode}", TEXT[mode].toLowerCase()).replace("{desk}", extension),
             false);
    } catch (err) {
      status(TEXT.refused + ": " + String(err), true);
    }
  }

  function showDesks() {
    const age = Math.max(0, Math.floor((Date.now() - received) / 1000));
    const body = document.querySelector("#desks tbody");
    body.replaceChildren();
    for (const desk of desks) {
      const tr = document.createElement("tr");
      tr.dataset.extension = desk.extension;
      cell(tr, desk.extension);
      cell(tr, desk.name);
      const state = Object.hasOwn(LABELS, desk.state) ? LABELS[desk.state] : desk.state;
      const reason = desk.reason ?
        " (" + (Object.hasOwn(LABELS, desk.reason) ? LABELS[desk.reason] : desk.reason) + ")" : "";
      cell(tr, state + reason).className = "state " + String(desk.state).replace(/\s/g, "-");
      const call = desk.call;
      cell(tr, call ? (call.caller || "?") : TEXT.idle).className = "caller";
      cell(tr, call && call.seconds !== null ? seconds(call.seconds + age) : "")
        .className = "duration";
      const actions = cell(tr, "");
      if (call) {
        for (const mode of MODES) {
          const button = document.createElement("button");
          button.type = "button";
          button.className = "spy " + mode;
          button.dataset.mode = mode;
          button.textContent = TEXT[mode];
          button.addEventListener("click", () => spy(desk.extension, mode));
          actions.appendChild(button);
        }
      }
      body.appendChild(tr);
    }
  }

  function take(doc) {
    if (!doc) return;
    desks = doc.desks || [];
    received = Date.now();
    // Only the durations moved (the periodic push): keep the rows and their buttons.
    const shape = JSON.stringify(desks, (key, value) => (key === "seconds" ? undefined : value));
    if (shape === shown) tick(); else showDesks();
    shown = shape;
    document.body.dataset.loaded = "yes";
    const now = desks.map((d) => (d.call ? d.call.linkedid : "")).join(",");
    if (now !== calls) {
      calls = now;
      loadRecent();
    }
  }

  function play(id) {
    const player = document.getElementById("player");
    player.src = "/console/api/recording?call=" + encodeURIComponent(String(id));
    player.dataset.call = String(id);
    player.play().catch(() => {});
  }

  async function loadRecent() {
    let doc;
    try {
      const answer = await fetch("/console/api/recordings", {credentials: "same-origin"});
      if (!answer.ok) return;
      doc = await answer.json();
    } catch (err) {
      return;
    }
    const body = document.querySelector("#recent-calls tbody");
    body.replaceChildren();
    for (const call of doc.calls) {
      const tr = document.createElement("tr");
      tr.dataset.call = String(call.id);
      const locale = document.documentElement.lang === "en" ? "en-GB" : "id-ID";
      cell(tr, call.started_at ? new Date(call.started_at * 1000).toLocaleString(locale) : "");
      cell(tr, call.caller || "?");
      cell(tr, Object.hasOwn(TEXT.outcomes, call.outcome) ? TEXT.outcomes[call.outcome] :
        call.outcome);
      cell(tr, call.duration_s === null ? "" : seconds(Math.round(call.duration_s)));
      const td = cell(tr, call.recording ? "" : TEXT.none);
      if (call.recording) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "play";
        button.textContent = TEXT.play;
        button.addEventListener("click", () => play(call.id));
        td.appendChild(button);
      }
      body.appendChild(tr);
    }
    document.body.dataset.recent = String(doc.calls.length);
  }

  // Durations count on between pushes: the page's own clock, no request; only the
  // duration cells change (the buttons stay the same elements).
  function tick() {
    const age = Math.max(0, Math.floor((Date.now() - received) / 1000));
    const rows = document.querySelectorAll("#desks tbody tr");
    desks.forEach((desk, i) => {
      const cellOf = rows[i] && rows[i].querySelector(".duration");
      if (cellOf && desk.call && desk.call.seconds !== null) {
        cellOf.textContent = seconds(desk.call.seconds + age);
      }
    });
  }

  SiagaPush.connect({
    snapshot: (views) => { take(views.desks); SiagaNodes.show(views.console); },
    view: (name, doc) => {
      if (name === "desks") take(doc);
      else if (name === "console") SiagaNodes.show(doc);
    },
  });
  setInterval(tick, 1000);
})();
