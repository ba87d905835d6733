// The page's end of the live push channel (/events, Server-Sent Events).
//
// The server sends a "snapshot" (every view whole, with its epoch and sequence number), then
// "delta"s, each numbered one more than the last. A delta is applied only when it follows
// the last number seen in the same epoch; an older one is ignored (never shown twice), a gap
// or another epoch (the server restarted) throws the state away and reconnects, which
// brings a new snapshot. The browser's EventSource reconnects by itself after a dropped
// connection; when it gives up (an HTTP error, e.g. the session ended) we check once whether
// the session is still good, then go to the login page or open a new stream.
"use strict";

const SiagaPush = (() => {
  function connect(handlers) {
    let source = null;
    let epoch = null;
    let seq = -1;
    let views = {};
    let delay = 1000;
    let timer = null;

    function mark() {
      document.body.dataset.epoch = epoch || "";
      document.body.dataset.seq = String(seq);
    }

    function open() {
      timer = null;
      source = new EventSource("/events");
      source.addEventListener("snapshot", (message) => {
        const snap = JSON.parse(message.data);
        epoch = snap.epoch;
        seq = snap.seq;
        views = snap.views;
        delay = 1000;
        mark();
        handlers.snapshot(views);
      });
      source.addEventListener("delta", (message) => {
        const delta = JSON.parse(message.data);
        if (delta.epoch === epoch && delta.seq <= seq) return;  // already applied
        if (delta.epoch !== epoch || delta.seq !== seq + 1) {
          reopen();  // a gap: start over from a snapshot
          return;
        }
        const doc = Object.assign({}, views[delta.view] || {}, delta.set);
        for (const key of delta.unset) delete doc[key];
        views[delta.view] = doc;
        seq = delta.seq;
        mark();
        handlers.view(delta.view, doc);
      });
      source.addEventListener("error", () => {
        if (handlers.offline) handlers.offline();
        if (source.readyState === EventSource.CLOSED) later();
      });
    }

    function reopen() {
      source.close();
      open();
    }

    function later() {
      source.close();
      if (timer !== null) return;
      timer = setTimeout(check, delay);
      delay = Math.min(delay * 2, 5000);
    }

    // Once per failure, not a poll: a redirect means the session is gone.
    async function check() {
      try {
        const answer = await fetch(window.location.pathname,
                                   {redirect: "manual", credentials: "same-origin"});
        if (answer.type === "opaqueredirect") {
          window.location = "/login?next=" + encodeURIComponent(window.location.pathname);
          return;
        }
      } catch (err) {
        // The server is away: try the stream again (and again, up to every 5 s).
      }
      open();
    }

    open();
  }
  return {connect};
})();
