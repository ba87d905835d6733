// The operator's console: the desk, the call card's summary and the lists, all from the
// live push channel (push.js): the "desk" view is this operator's own (desk and card), the
// "console" view the lists every operator sees.
//
// Every value shown is put in with textContent, never as HTML: a caller ID is whatever the
// caller's phone said, a device name whatever an app sent.
//
// For the other scripts of the page (hand-off buttons, history, incident, location):
//  * document gets a CustomEvent("siaga:card", {detail}) each time my current call changes
//    (detail: the card, or null), and window.siagaCard holds the last detail;
//  * document gets a CustomEvent("siaga:view", {detail: {name, doc}}) for every view the
//    channel pushes, and window.siagaViews holds them all;
//  * window.siagaAction(name, body) POSTs JSON to /console/api/<name> with the page's CSRF
//    token: resolves to the JSON answer, rejects with the JSON error ({error, reason}).
"use strict";

(() => {
  const CONFIG = JSON.parse(document.getElementById("console-text").textContent);
  const TEXT = CONFIG.text;
  const LABELS = CONFIG.labels;
  const AGENCIES = CONFIG.agencies;
  const CSRF = document.querySelector("meta[name=siaga-csrf]").content;

  window.siagaCard = null;
  window.siagaViews = {};
  let cardKey = "null";  // the card last dispatched, as JSON
  let desk = null;

  function label(value) {
    if (value === null || value === undefined || value === "") return TEXT.none;
    return Object.hasOwn(LABELS, value) ? LABELS[value] : String(value);
  }

  function setText(id, value) {
    document.getElementById(id).textContent = value;
  }

  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const m = Math.floor(s / 60);
    return m + ":" + String(s % 60).padStart(2, "0");
  }

  function now() {
    return Date.now() / 1000;
  }

  function category(key) {
    if (!key) return TEXT.none;
    const name = Object.hasOwn(AGENCIES, key) ? " (" + AGENCIES[key] + ")" : "";
    return label(key) + name;
  }

  // -- actions -----------------------------------------------------------------------------

  async function siagaAction(name, body) {
    let answer;
    try {
      answer = await fetch("/console/api/" + encodeURIComponent(name), {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-Siaga-CSRF": CSRF},
        body: JSON.stringify(body || {}),
      });
    } catch (err) {
      throw {error: "network", reason: String(err)};
    }
    let doc;
    try {
      doc = await answer.json();
    } catch (err) {
      throw {error: "bad_answer", reason: "HTTP " + answer.status};
    }
    if (!answer.ok) throw doc;
    return doc;
  }
  window.siagaAction = siagaAction;

  function showError(id, err) {
    const p = document.getElementById(id);
    if (!err) { p.hidden = true; p.textContent = ""; return; }
    p.textContent = TEXT.failed + ": " + (err.reason || err.error || String(err));
    p.hidden = false;
  }

  for (const button of document.querySelectorAll("#desk-buttons button")) {
    button.addEventListener("click", async () => {
      const body = {action: button.dataset.action};
      if (button.dataset.reason) body.reason = button.dataset.reason;
      button.disabled = true;
      try {
        await siagaAction("desk", body);
        showError("desk-error", null);
      } catch (err) {
        showError("desk-error", err);
      } finally {
        button.disabled = !deskAllows(button);
      }
    });
  }

  // -- the desk and the card ---------------------------------------------------------------

  // Which desk buttons make sense in the desk's state (the server refuses nothing here: a
  // greyed button only spares the operator a click that would change nothing). Ringing or
  // on a call: a pause or log-out takes effect after the call. Offline (the phone is not
  // reachable): the queue's state is unknown to the page, so every button stays usable.
  function deskAllows(button) {
    if (!desk) return false;
    const action = button.dataset.action;
    switch (desk.state) {
      case "logged out": return action === "login";
      case "available": return action === "logout" || action === "pause";
      case "paused":
        return action === "logout" || action === "unpause" ||
          (action === "pause" && button.dataset.reason !== desk.reason);
      case "ringing":
      case "on call": return action !== "login";
      default: return true;
    }
  }

  function showDesk(doc) {
    desk = doc;
    const buttons = document.getElementById("desk-buttons");
    if (!doc) {
      buttons.hidden = true;
      setText("desk-state", TEXT.none);
      setText("desk-reason", "");
      return;
    }
    buttons.hidden = false;
    setText("desk-who", doc.extension + " · " + doc.name);
    const state = document.getElementById("desk-state");
    state.textContent = label(doc.state);
    state.className = "state " + String(doc.state).replace(/\s/g, "-");
    state.dataset.state = doc.state;
    setText("desk-reason", doc.reason ? label(doc.reason) : "");
    document.getElementById("desk").dataset.state = doc.state;
    document.getElementById("desk").dataset.reason = doc.reason || "";
    for (const button of buttons.querySelectorAll("button")) {
      button.disabled = !deskAllows(button);
    }
  }

  function waited(card) {
    const start = card.queued_at ?? card.started_at;
    if (start === null || start === undefined) return null;
    const end = card.answered_at ?? (card.state === "ringing" ? now() : null);
    return end === null ? null : end - start;
  }

  function showCard(card) {
    const section = document.getElementById("card");
    if (!card) {
      section.hidden = true;
      delete section.dataset.linkedid;
      delete section.dataset.state;
      return;
    }
    section.hidden = false;
    section.dataset.linkedid = card.linkedid;
    section.dataset.state = card.state;
    const state = document.getElementById("card-state");
    state.textContent = label(card.state);
    state.className = "state " + card.state;
    setText("card-caller", card.caller_number || TEXT.none);
    setText("card-name", card.caller_name || TEXT.none);
    setText("card-dialed", card.dialed || TEXT.none);
    const cat = document.getElementById("card-category");
    cat.textContent = category(card.category);
    cat.dataset.value = card.category || "";
    setText("card-language", label(card.language));
    setText("card-priority", card.priority === null ? TEXT.none : String(card.priority));
    const origin = card.origin || {};
    let text = label(origin.kind);
    if (origin.device) text += " · " + TEXT.device + " " + origin.device;
    if (origin.incident_id !== null && origin.incident_id !== undefined) {
      text += " · " + TEXT.incident + " #" + origin.incident_id;
    }
    const originEl = document.getElementById("card-origin");
    originEl.textContent = text;
    originEl.dataset.kind = origin.kind || "";
    const seconds = waited(card);
    setText("card-wait", seconds === null ? TEXT.none : clock(seconds));
  }

  function tickCard() {
    const card = window.siagaCard;
    if (!card) return;
    const seconds = waited(card);
    if (seconds !== null) setText("card-wait", clock(seconds));
  }

  function takeCard(card) {
    const key = JSON.stringify(card ?? null);
    if (key === cardKey) return;
    cardKey = key;
    window.siagaCard = card ?? null;
    showCard(window.siagaCard);
    document.dispatchEvent(new CustomEvent("siaga:card", {detail: window.siagaCard}));
  }

  // -- the lists ---------------------------------------------------------------------------

  function row(body, values) {
    const tr = document.createElement("tr");
    for (const value of values) {
      const td = document.createElement("td");
      if (value instanceof Node) td.appendChild(value);
      else td.textContent = String(value);
      tr.appendChild(td);
    }
    body.appendChild(tr);
    return tr;
  }

  let lists = null;

  // A time counting on from ``epoch`` (the tick updates it; the rows stay as they are).
  function since(epoch) {
    const span = document.createElement("span");
    span.dataset.since = String(epoch);
    span.textContent = clock(now() - epoch);
    return span;
  }

  function tickLists() {
    const t = now();
    for (const span of document.querySelectorAll("[data-since]")) {
      span.textContent = clock(t - Number(span.dataset.since));
    }
  }

  // A call the center placed waits in the queue too (an alert's call, a callback): it has no
  // caller of its own, so the row says what it is and the number it will ring.
  function waitingCaller(c) {
    if (c.incident !== null && c.incident !== undefined) {
      return label("alert") + " · " + TEXT.incident + " #" + c.incident +
        (c.caller ? " · " + c.caller : "");
    }
    if (c.outbound) return label("callback") + (c.caller ? " · " + c.caller : "");
    return c.caller || TEXT.none;
  }

  function showLists() {
    if (!lists) return;
    const queue = document.querySelector("#queue tbody");
    queue.replaceChildren();
    for (const c of lists.queue || []) {
      row(queue, [c.position, waitingCaller(c), category(c.category), since(c.since)]);
    }
    setText("queue-count", "(" + (lists.queue || []).length + ")");
    const owed = document.querySelector("#owed tbody");
    owed.replaceChildren();
    for (const c of lists.owed || []) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = TEXT.call_back_now;
      button.className = "call-back-now";
      button.dataset.id = String(c.id);
      button.disabled = !desk || c.state !== "pending";
      button.addEventListener("click", async () => {
        button.disabled = true;
        try {
          await siagaAction("callback_now", {id: c.id});
          showError("owed-error", null);
        } catch (err) {
          showError("owed-error", err);
          button.disabled = false;
        }
      });
      const tr = row(owed, [c.number, label(c.reason), category(c.category),
                            since(c.since), label(c.state), button]);
      tr.dataset.id = String(c.id);
    }
    const total = lists.owed_total ?? (lists.owed || []).length;
    setText("owed-count", "(" + (lists.owed || []).length +
            (total > (lists.owed || []).length ? " " + TEXT.owed_more + " " + total : "") + ")");
    const incidents = document.querySelector("#incidents tbody");
    incidents.replaceChildren();
    for (const i of lists.incidents || []) {
      // An alert's type, or the category an operator opened the incident with.
      const tr = row(incidents, ["#" + i.id, label(i.type || i.category), label(i.state),
                                 i.agency ? category(i.agency) : TEXT.none,
                                 i.device || TEXT.none,
                                 i.opened_at ? since(i.opened_at) : TEXT.none]);
      tr.dataset.id = String(i.id);
    }
  }

  // -- the channel -------------------------------------------------------------------------

  function take(name, doc) {
    window.siagaViews[name] = doc;
    if (name === "desk") {
      showDesk(doc ? doc.desk : null);
      takeCard(doc ? doc.card : null);
      showLists();  // the call-back buttons need to know whether I have a desk
    } else if (name === "console") {
      lists = doc;
      showLists();
    }
    document.dispatchEvent(new CustomEvent("siaga:view", {detail: {name, doc}}));
  }

  SiagaPush.connect({
    snapshot: (views) => {
      for (const name of Object.keys(views)) take(name, views[name]);
      document.body.dataset.loaded = "yes";
      delete document.body.dataset.offline;
    },
    view: (name, doc) => take(name, doc),
    offline: () => { document.body.dataset.offline = "yes"; },
  });
  // Waits count on between pushes, on the page's own clock.
  setInterval(() => { tickCard(); tickLists(); }, 1000);
})();
