// The call card's actions (#card-actions): put the citizen through to an agency, consult
// first, hand over / cancel / three-way, leave the three-way call, hold, resume, hang up;
// and each hand-off's progress (ringing, answered, no answer → fallback) as it happens.
//
// The current call comes from the card ("siaga:card" events, window.siagaCard at start);
// the buttons POST to /console/api/call with the page's CSRF token; the progress is the push
// view "handoffs" and what fits the call the view "call_actions", both from console.js's
// stream (the "siaga:view" event), the page's only one. The server decides what may be
// done: a refusal's reason is shown as it came. Every value is set as text, never as HTML.
"use strict";

(() => {
  const root = document.getElementById("card-actions");
  if (!root) return;
  const lang = document.documentElement.lang || "id";
  let words = null;        // GET /console/api/call: agencies and labels
  let card = window.siagaCard || null;
  let handoffs = {};       // the push view: {linkedid: [{agency, mode, state, target, at}]}
  let stands = {};         // the push view "call_actions": {linkedid: {state, allowed}}
  let message = "";        // the last refusal, shown until the next action or call

  function csrf() {
    const meta = document.querySelector("meta[name=siaga-csrf]");
    return meta ? meta.content : "";
  }

  function label(key) {
    return (words && Object.hasOwn(words.labels, key)) ? words.labels[key] : key;
  }

  function agencyLabel(key) {
    const agency = words && words.agencies.find((a) => a.key === key);
    return agency ? agency.label : key;
  }

  function el(tag, text, attrs) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    return node;
  }

  async function act(action, agency) {
    if (!card || !card.linkedid) return;
    const body = {linkedid: card.linkedid, action};
    if (agency) body.agency = agency;
    message = "";
    root.dataset.busy = action;
    try {
      const answer = await fetch("/console/api/call", {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-Siaga-CSRF": csrf()},
        body: JSON.stringify(body)});
      if (!answer.ok) {
        let reason = String(answer.status);
        try { reason = (await answer.json()).reason || reason; } catch (err) { /* not JSON */ }
        message = label("refused") + ": " + reason;
      }
    } catch (err) {
      message = label("refused") + ": " + String(err);
    } finally {
      delete root.dataset.busy;
      render();
    }
  }

  // What the server says fits the call as it stands now (the server checks again).
  function fits(action, agency) {
    const stand = card && stands[card.linkedid];
    if (!stand || !stand.allowed.includes(action)) return false;
    // A three-way with an agency starts from the talk; without one, from a consultation.
    if (action === "threeway") return agency ? stand.state === "talking"
                                             : stand.state === "consulting";
    return true;
  }

  function button(action, text, agency, extra) {
    const b = el("button", text, Object.assign({type: "button", "data-action": action}, extra));
    if (agency) b.dataset.agency = agency;
    b.disabled = !fits(action, agency);
    b.addEventListener("click", () => act(action, agency));
    return b;
  }

  function progress(linkedid) {
    const list = el("ul", null, {id: "handoffs"});
    for (const h of handoffs[linkedid] || []) {
      const item = el("li", null, {"data-agency": h.agency, "data-state": h.state,
                                   "data-mode": h.mode});
      item.className = "handoff " + h.state;
      // Each step as it happened: a group that did not answer stays visible on the way to
      // its fallback's answer (or failure).
      const steps = (h.steps && h.steps.length ? h.steps : [h]).map((step) => {
        const when = new Date(step.at * 1000).toLocaleTimeString(lang, {hour12: false});
        const target = step.target === "fallback" && step.state !== "fallback"
          ? " (" + label("target_fallback") + ")" : "";
        return when + " " + label(step.state) + target;
      });
      item.textContent = agencyLabel(h.agency) + " · " + label("mode_" + h.mode) + " · " +
        steps.join(" → ");
      list.appendChild(item);
    }
    return list;
  }

  function render() {
    root.replaceChildren();
    if (!words || !card || !card.linkedid) return;
    if (card.state === "ended") {
      // The call has left this desk: no buttons, but how its hand-offs went stays in view.
      if ((handoffs[card.linkedid] || []).length) {
        root.appendChild(el("h4", label("progress")));
        root.appendChild(progress(card.linkedid));
      }
      return;
    }
    root.appendChild(el("h3", label("title")));

    // One row per agency: put through (blind), consult first, three-way.
    const table = el("table", null, {id: "agency-buttons"});
    for (const agency of words.agencies) {
      const row = el("tr", null, {"data-agency": agency.key});
      const name = el("td");
      name.appendChild(button("blind", agency.label, agency.key,
                              {title: agency.name + " — " + label("blind"), class: "agency"}));
      row.appendChild(name);
      for (const action of ["consult", "threeway"]) {
        const td = el("td");
        td.appendChild(button(action, label(action), agency.key,
                              {title: agency.name, class: "secondary"}));
        row.appendChild(td);
      }
      table.appendChild(row);
    }
    root.appendChild(table);

    // What applies to the call as it stands (the server refuses what does not fit).
    const stand = stands[card.linkedid];
    root.dataset.state = stand ? stand.state : "";
    const bar = el("p", null, {id: "call-buttons"});
    for (const action of ["handover", "cancel", "threeway", "leave", "hold", "unhold",
                          "hangup"]) {
      bar.appendChild(button(action, label(action), null,
                             {class: action === "hangup" ? "danger" : ""}));
    }
    root.appendChild(bar);

    if (message) root.appendChild(el("p", message, {class: "error", role: "alert"}));
    root.appendChild(el("h4", label("progress")));
    root.appendChild(progress(card.linkedid));
  }

  document.addEventListener("siaga:card", (event) => {
    if (!event.detail || !card || event.detail.linkedid !== card.linkedid) message = "";
    card = event.detail;
    render();
  });

  fetch("/console/api/call?lang=" + encodeURIComponent(lang), {credentials: "same-origin"})
    .then((answer) => answer.json())
    .then((doc) => { words = doc; render(); root.dataset.loaded = "1"; });

  // The page's one push stream is console.js's: its views arrive here as "siaga:view"
  // events (window.siagaViews holds those already pushed before this script ran).
  function take(name, doc) {
    if (name === "handoffs") handoffs = doc || {};
    else if (name === "call_actions") stands = doc || {};
    else return false;
    return true;
  }
  const pushed = window.siagaViews || {};
  take("handoffs", pushed.handoffs);
  take("call_actions", pushed.call_actions);
  document.addEventListener("siaga:view", (event) => {
    if (take(event.detail.name, event.detail.doc)) render();
  });
})();
