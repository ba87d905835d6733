// The call card's location: coordinates, accuracy, fix age, source and a map (Leaflet,
// vendored) in #card-location. Follows the operator's current call: the "siaga:card" event
// console.js dispatches, and window.siagaCard when this script starts after it. Every value
// is set as text; the links are built by the server from numbers and checked again here.
// Without a tile server (or without the internet) the map still shows the marker and the
// accuracy circle on a blank background.
"use strict";

(function () {
  const CONFIG = JSON.parse(document.getElementById("map-config").textContent);
  const T = CONFIG.text;
  const RETRIES = 5; // a location sent with the call may be joined a moment after the card
  const RETRY_MS = 2000;
  let shown = null; // the linkedid on the panel
  let request = 0; // newer calls win over older answers
  let retryTimer = null;
  const view = { map: null, marker: null, circle: null, location: null };
  window.siagaCardMap = view; // for tests and other scripts: read only

  function panel() {
    return document.getElementById("card-location");
  }

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function escapeHtml(text) {
    // Leaflet's attribution control takes HTML: the configured text goes in escaped.
    return String(text).replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");
  }

  function age(seconds) {
    if (seconds === null || seconds === undefined) return T.unknown;
    if (seconds < 120) return T.seconds.replace("{n}", Math.round(seconds));
    if (seconds < 7200) return T.minutes.replace("{n}", Math.round(seconds / 60));
    return T.hours.replace("{n}", Math.round(seconds / 3600));
  }

  function dropMap() {
    if (view.map) view.map.remove();
    view.map = view.marker = view.circle = view.location = null;
  }

  function clear() {
    if (retryTimer) clearTimeout(retryTimer);
    retryTimer = null;
    dropMap();
    const p = panel();
    if (p) p.replaceChildren();
  }

  function fact(list, label, value) {
    list.append(el("dt", label), el("dd", value));
  }

  function render(doc) {
    const p = panel();
    if (!p) return;
    dropMap();
    const loc = doc.location;
    const title = el("h3", T.location);
    if (!loc) {
      p.replaceChildren(title, el("p", T.none, "muted"));
      return;
    }
    const facts = el("dl", null, "location-facts");
    // Layout through the DOM (siaga.css is shared; no inline style attribute is written).
    Object.assign(facts.style, { display: "grid", gridTemplateColumns: "max-content 1fr",
                                 columnGap: "1em", rowGap: "0.2em", margin: "0.5em 0" });
    const source = T.sources[loc.source] || loc.source;
    fact(facts, T.source, loc.label ? source + " · " + loc.label : source);
    fact(facts, T.coordinates, Number(loc.lat).toFixed(6) + ", " + Number(loc.lon).toFixed(6));
    fact(facts, T.accuracy,
         loc.accuracy_m === null ? T.unknown : "± " + Math.round(loc.accuracy_m) + " m");
    fact(facts, T.fix_age, age(loc.fix_age_seconds));
    const links = el("p", null, "location-links");
    if (/^https:\/\/www\.openstreetmap\.org\/\?mlat=-?[0-9.]+&mlon=-?[0-9.]+#map=[0-9/.-]+$/
        .test(loc.osm_url)) {
      const osm = el("a", T.open);
      osm.href = loc.osm_url;
      osm.rel = "noopener noreferrer";
      osm.target = "_blank";
      osm.style.color = "#8ab4f8";
      links.append(osm, document.createTextNode(" · "));
    }
    links.append(el("code", loc.geo_uri, "geo-uri"));
    const box = el("div", null, "location-map");
    box.id = "card-map";
    box.style.height = "260px";
    box.style.width = "100%";
    p.replaceChildren(title, facts, links, box);
    if (typeof L === "undefined") return; // the library failed to load: the text stays
    const at = [loc.lat, loc.lon];
    const map = L.map(box, { attributionControl: Boolean(CONFIG.tiles) });
    if (CONFIG.tiles) {
      L.tileLayer(CONFIG.tiles, {
        maxZoom: 19,
        attribution: escapeHtml(CONFIG.attribution || ""),
      }).addTo(map);
    }
    map.setView(at, 16); // a view before any layer: a circle is measured on the map
    view.map = map;
    view.location = loc;
    view.marker = L.marker(at, { title: source, keyboard: false }).addTo(map);
    if (loc.accuracy_m) {
      view.circle = L.circle(at, { radius: loc.accuracy_m, weight: 2 }).addTo(map);
    }
    const fit = () => {
      if (view.circle) map.fitBounds(view.circle.getBounds(), { maxZoom: 17, padding: [16, 16] });
      else map.setView(at, 16);
    };
    fit();
    // The card may be hidden while the map is made: size and fit it again once it shows.
    if (typeof ResizeObserver !== "undefined") {
      new ResizeObserver(() => {
        if (view.map !== map || !box.clientWidth) return;
        map.invalidateSize();
        fit();
      }).observe(box);
    }
    document.dispatchEvent(new CustomEvent("siaga:location", { detail: loc }));
  }

  async function load(linkedid, attempt) {
    const mine = ++request;
    let doc = null;
    try {
      const r = await fetch("/console/api/location?linkedid=" + encodeURIComponent(linkedid),
                            { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (mine !== request || shown !== linkedid) return;
      if (!r.ok) throw new Error("HTTP " + r.status);
      doc = await r.json();
    } catch (err) {
      if (mine !== request || shown !== linkedid) return;
      // A retry refused (the call has left my phone meanwhile): the panel keeps the last
      // answer (no location yet) rather than turning into an error.
      if (attempt > 0) return;
      const p = panel();
      if (p) p.replaceChildren(el("h3", T.location), el("p", T.failed, "error"));
      return;
    }
    if (mine !== request || shown !== linkedid) return;
    const same = view.location && doc.location && view.location.lat === doc.location.lat
      && view.location.lon === doc.location.lon && view.location.source === doc.location.source;
    if (!same) render(doc);
    const live = window.siagaCard && window.siagaCard.linkedid === linkedid
      && window.siagaCard.state !== "ended";
    if (!doc.location && live && attempt < RETRIES) {
      retryTimer = setTimeout(() => load(linkedid, attempt + 1), RETRY_MS);
    }
  }

  function follow(detail) {
    const linkedid = detail && typeof detail.linkedid === "string" ? detail.linkedid : null;
    if (linkedid === shown) return;
    clear();
    shown = linkedid;
    if (!linkedid) return;
    const p = panel();
    if (p) p.replaceChildren(el("h3", T.location), el("p", T.loading, "muted"));
    load(linkedid, 0);
  }

  document.addEventListener("siaga:card", (event) => follow(event.detail));
  if (window.siagaCard !== undefined) follow(window.siagaCard);
})();
