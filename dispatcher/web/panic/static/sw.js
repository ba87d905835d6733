// The panic app's service worker: keeps the app's own files so the page opens without a
// network. It never touches the API: an alert kept offline is the page's to send (with
// the same alert id), and an API answer must never come from a cache.
"use strict";

const CACHE = "siaga-panic-v1";
const SHELL = ["./", "app.js", "app.css", "manifest.webmanifest", "icon.svg"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL))
    .then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((names) => Promise.all(names.filter((n) => n !== CACHE).map((n) => caches.delete(n))))
    .then(() => self.clients.claim()));
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  const scope = new URL(self.registration.scope);
  if (request.method !== "GET" || url.origin !== scope.origin
      || !url.pathname.startsWith(scope.pathname)) {
    return;  // the API and everything else go to the network as they are
  }
  // The cached copy at once (works offline); a fresh one replaces it for the next visit.
  event.respondWith(caches.open(CACHE).then((cache) =>
    cache.match(request, {ignoreSearch: true}).then((cached) => {
      const fresh = fetch(request).then((response) => {
        if (response.ok) {
          cache.put(request, response.clone());
        }
        return response;
      });
      if (cached) {
        fresh.catch(() => undefined);
        return cached;
      }
      return fresh;
    })));
});
