// The call card's history (#card-history) and case work (#card-incident): the caller's
// earlier calls, callbacks owed and incidents with the repeat/prank flag; the call's
// incident, its append-only notes, its disposition, and closing it.
//
// It follows the operator's current call from the card's "siaga:card" event (and
// window.siagaCard, the last one, when this script starts after it). Every value is set as
// text (textContent), never as HTML: a caller ID or a note is whatever someone typed.
"use strict";

(function () {
  const TEXT = JSON.parse(document.getElementById("incident-text").textContent);
  const history = document.getElementById("card-history");
  const incident = document.getElementById("card-incident");
  if (!history || !incident) return;

  let current = null;  // the linkedid shown
  let lastState = null;

  function word(value) {
    if (value === null || value === undefined) return "";
    const v = String(value);
    return Object.hasOwn(TEXT.values, v) ? TEXT.values[v] : v.replace(/_/g, " ");
  }

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function when(iso) {
    const d = new Date(iso);
    // In the page's language (a Bahasa page reads 7/12/2026 14.05.00, not 12/7/2026 2:05 PM).
    const locale = document.documentElement.lang === "en" ? "en-GB" : "id-ID";
    return isNaN(d) ? String(iso) : d.toLocaleString(locale);
  }

  function csrf() {
    const meta = document.querySelector("meta[name=siaga-csrf]");
    return meta ? meta.content : "";
  }

  async function getJson(name, linkedid) {
    const response = await fetch("/console/api/" + name + "?linkedid=" +
                                 encodeURIComponent(linkedid), {credentials: "same-origin"});
    const body = await response.json();
    if (!response.ok) throw new Error(body.reason || body.error || response.status);
    return body;
  }

  async function post(name, body) {
    const response = await fetch("/console/api/" + name, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-Siaga-CSRF": csrf()},
      body: JSON.stringify(body),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.reason || answer.error || response.status);
    return answer;
  }

  // -- history --------------------------------------------------------------------------

  function renderHistory(doc) {
    const box = el("div");
    box.appendChild(el("h3", TEXT.history));
    const flag = doc.flag || {};
    if (flag.flagged) {
      const banner = el("div", null, "caller-flag");
      banner.dataset.flag = flag.reasons.join(" ");
      for (const reason of flag.reasons) {
        banner.appendChild(el("strong", reason === "repeat" ? TEXT.flag_repeat : TEXT.flag_prank,
                              "flag-" + reason));
        banner.appendChild(document.createTextNode(" "));
      }
      banner.appendChild(el("span", TEXT.calls_in_window
        .replace("{count}", flag.calls_in_window).replace("{hours}", flag.window_hours)));
      banner.appendChild(el("p", TEXT.flag_note, "flag-note"));
      box.appendChild(banner);
    }
    if (!doc.known) {
      box.appendChild(el("p", TEXT.withheld, "empty"));
      return box;
    }
    box.appendChild(el("p", TEXT.days.replace("{days}", doc.days), "muted"));
    if (!doc.calls.length && !doc.callbacks_owed.length && !doc.incidents.length) {
      box.appendChild(el("p", TEXT.no_history, "empty"));
      return box;
    }
    if (doc.calls.length) {
      box.appendChild(el("h4", TEXT.earlier_calls + " (" + doc.calls_total + ")"));
      const list = el("ul", null, "history-calls");
      for (const call of doc.calls) {
        const parts = [when(call.started_at), word(call.outcome)];
        if (call.category) parts.push(word(call.category));
        if (call.answered_by) parts.push(call.answered_by);
        if (call.disposition) parts.push(word(call.disposition));
        const item = el("li", parts.join(" · "));
        if (call.disposition === "prank") item.className = "prank";
        list.appendChild(item);
      }
      box.appendChild(list);
    }
    if (doc.callbacks_owed.length) {
      box.appendChild(el("h4", TEXT.callbacks_owed));
      const list = el("ul", null, "history-callbacks");
      for (const cb of doc.callbacks_owed) {
        list.appendChild(el("li", when(cb.created_at) + " · " + word(cb.state) + " · " +
                                  word(cb.reason)));
      }
      box.appendChild(list);
    }
    if (doc.incidents.length) {
      box.appendChild(el("h4", TEXT.incidents));
      const list = el("ul", null, "history-incidents");
      for (const inc of doc.incidents) {
        list.appendChild(el("li", "#" + inc.id + " · " + when(inc.created_at) + " · " +
                                  word(inc.category || inc.type) + " · " + word(inc.state)));
      }
      box.appendChild(list);
    }
    return box;
  }

  // -- the call's case ------------------------------------------------------------------

  function field(labelText, control) {
    const label = el("label", labelText);
    label.appendChild(control);
    return label;
  }

  function select(values, chosen) {
    const s = document.createElement("select");
    for (const v of values) {
      const o = el("option", word(v));
      o.value = v;
      if (v === chosen) o.selected = true;
      s.appendChild(o);
    }
    return s;
  }

  function button(text, name, act) {
    const b = el("button", text);
    b.type = "button";
    b.name = name;
    b.addEventListener("click", act);
    return b;
  }

  function renderCase(doc, linkedid, status) {
    const box = el("div");
    box.appendChild(el("h3", TEXT.incident));
    const say = el("p", status || "", "case-status");
    say.setAttribute("role", "status");

    async function act(name, body) {
      try {
        await post(name, Object.assign({linkedid}, body));
        await loadCase(linkedid, TEXT.saved);
      } catch (e) {
        say.textContent = TEXT.failed.replace("{reason}", e.message);
      }
    }

    const inc = doc.incident;
    if (inc === null) {
      box.appendChild(el("p", TEXT.no_incident, "empty"));
      const form = el("div", null, "incident-open");
      const category = select(doc.categories || ["other"], null);
      category.name = "category";
      const address = document.createElement("input");
      address.name = "address";
      const note = document.createElement("textarea");
      note.name = "first-note";
      form.append(field(TEXT.category, category), field(TEXT.address, address),
                  field(TEXT.note, note),
                  button(TEXT.open, "open", () => act("incident-open", {
                    category: category.value, address: address.value, note: note.value})));
      box.appendChild(form);
    } else {
      const head = el("p", null, "incident-head");
      head.dataset.incident = inc.id;
      head.dataset.state = inc.state;
      head.textContent = "#" + inc.id + " · " + word(inc.category || inc.type) + " · " +
        TEXT.state + ": " + word(inc.state);
      box.appendChild(head);
      if (inc.address) box.appendChild(el("p", TEXT.address + ": " + inc.address, "address"));
      if (inc.note) box.appendChild(el("p", inc.note, "alert-note"));
      if (inc.outcome) box.appendChild(el("p", TEXT.outcome + ": " + inc.outcome, "outcome"));
      if (inc.can_close) {
        const outcome = document.createElement("input");
        outcome.name = "outcome";
        box.append(field(TEXT.outcome, outcome),
                   button(TEXT.close, "close", () => act("incident-close",
                                                         {outcome: outcome.value})));
      }
    }

    box.appendChild(el("h4", TEXT.notes));
    const notes = el("ol", null, "notes");
    for (const n of doc.notes) {
      const item = el("li", null, "note");
      item.dataset.note = n.id;
      item.appendChild(el("span", when(n.at) + " · " + n.by + ": ", "note-meta"));
      item.appendChild(el("span", n.text, "note-text"));
      notes.appendChild(item);
    }
    box.appendChild(notes);
    const text = document.createElement("textarea");
    text.name = "note";
    box.append(field(TEXT.note, text),
               button(TEXT.add_note, "add-note", () => act("incident-note", {text: text.value})));

    const marked = doc.disposition ? doc.disposition.disposition : null;
    const current = el("p", TEXT.disposition + ": " + (marked ? word(marked) : "—"),
                       "disposition");
    if (marked) current.dataset.disposition = marked;
    box.appendChild(current);
    const choice = select(doc.dispositions, marked);
    choice.name = "disposition";
    box.append(choice, button(TEXT.mark, "mark", () => act("incident-disposition",
                                                           {disposition: choice.value})));
    box.appendChild(say);
    return box;
  }

  async function loadHistory(linkedid) {
    try {
      const doc = await getJson("history", linkedid);
      if (linkedid === current) history.replaceChildren(renderHistory(doc));
    } catch (e) {
      if (linkedid === current) {
        history.replaceChildren(el("p", TEXT.failed.replace("{reason}", e.message), "error"));
      }
    }
  }

  async function loadCase(linkedid, status) {
    try {
      const doc = await getJson("incident", linkedid);
      if (linkedid === current) incident.replaceChildren(renderCase(doc, linkedid, status));
    } catch (e) {
      if (linkedid === current) {
        incident.replaceChildren(el("p", TEXT.failed.replace("{reason}", e.message), "error"));
      }
    }
  }

  function follow(detail) {
    if (!detail || !detail.linkedid) {
      current = null;
      lastState = null;
      history.replaceChildren();
      incident.replaceChildren();
      return;
    }
    if (detail.linkedid === current && detail.state === lastState) return;
    const fresh = detail.linkedid !== current;
    current = detail.linkedid;
    lastState = detail.state;
    if (fresh) {
      history.replaceChildren();
      incident.replaceChildren();
      loadHistory(current);
    }
    // The case may have changed with the call (an alert's incident linked once answered).
    const el2 = incident.querySelector("textarea[name=note]");
    if (fresh || !el2 || !el2.value) loadCase(current);
  }

  document.addEventListener("siaga:card", (event) => follow(event.detail));
  if (window.siagaCard !== undefined) follow(window.siagaCard);
  window.siagaIncident = {reload: () => { if (current) { loadHistory(current); loadCase(current); } }};
})();
