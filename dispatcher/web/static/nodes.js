// The banner of a node down, on the console and the supervisor's page. Over several
// Asterisk nodes the shared push view "console" carries "nodes" ([{name, up, since_s}]);
// while one is down the banner names it (as text, never HTML). A single center sends no
// "nodes" and the banner stays hidden. The console's script re-dispatches each view as a
// "siaga:view" event; the supervisor's page calls SiagaNodes.show itself.
"use strict";

const SiagaNodes = (() => {
  function show(doc) {
    const banner = document.getElementById("nodes-banner");
    if (!banner) return;
    const nodes = (doc && Array.isArray(doc.nodes)) ? doc.nodes : [];
    const down = nodes.filter((n) => n && n.up === false).map((n) => String(n.name));
    banner.dataset.down = down.join(",");
    if (!down.length) {
      banner.textContent = "";
      banner.hidden = true;
      return;
    }
    banner.textContent = (banner.dataset.text || "{names}").replace("{names}", down.join(", "));
    banner.hidden = false;
  }

  document.addEventListener("siaga:view", (event) => {
    if (event.detail && event.detail.name === "console") show(event.detail.doc);
  });
  return {show};
})();
