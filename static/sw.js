// The counter's service worker (issue 20), served from /sw.js for the scope /counter/.
//
// While the tablet is online every counter page comes from the server as usual. When a page
// cannot be fetched, the offline counter (/counter/offline, kept in the cache) answers in
// its place and draws the board or the hire from what was last synced (IndexedDB, see
// static/js/offline-counter.js). Scripts and styles come from the cache of this release.
//
// The cache is named after the release (the server puts it in place of __RELEASE__): a new
// release installs a new worker, which takes over at once and drops the old caches. Queued
// steps are in IndexedDB, not in these caches, so an update never loses one.
"use strict";
var RELEASE = "__RELEASE__";
var PREFIX = "acme-counter-";
var CACHE = PREFIX + RELEASE;
var SHELL = "/counter/offline";
var ASSETS = [
  "/static/css/app.css", "/static/css/counter.css", "/static/css/offline-counter.css",
  "/static/js/htmx-2.0.11.min.js", "/static/js/offline-counter.js", "/static/js/offline-pages.js",
  "/static/js/offline-charges.js",
  "/static/js/signature.js", "/static/js/dialogs.js", "/static/manifest.webmanifest", "/static/icon.svg",
];
var NETWORK_ONLY = ["/counter/offline/sync", "/counter/offline/steps"];
// A page the car park's signal has not brought in this long is shown from the tablet's copy.
var NAVIGATION_TIMEOUT_MS = 8000;

function networkFirst(request) {
  return new Promise(function (resolve, reject) {
    var timer = setTimeout(function () { reject(new Error("timed out")); }, NAVIGATION_TIMEOUT_MS);
    fetch(request).then(function (r) { clearTimeout(timer); resolve(r); },
                        function (e) { clearTimeout(timer); reject(e); });
  });
}

function keepShell(cache, response) {
  // Only the page itself: not the sign-in page a lapsed session is sent to.
  if (response.ok && !response.redirected) return cache.put(SHELL, response.clone());
  return Promise.resolve();
}

self.addEventListener("install", function (event) {
  event.waitUntil(caches.open(CACHE).then(function (cache) {
    // One by one: a file missing from a release costs that file offline, not the worker.
    return Promise.all(ASSETS.map(function (url) { return cache.add(url).catch(function () {}); })).then(function () {
      return fetch(SHELL, {credentials: "same-origin"}).then(function (r) { return keepShell(cache, r); },
                                                             function () { /* fetched later */ });
    });
  }).then(function () { return self.skipWaiting(); }));
});

self.addEventListener("activate", function (event) {
  event.waitUntil(caches.open(CACHE).then(function (cache) {
    return cache.match(SHELL).then(function (have) {
      // A shell the old release kept stays usable offline until this release fetches its own.
      return have ? null : caches.match(SHELL, {ignoreVary: true}).then(function (old) {
        return old ? cache.put(SHELL, old) : null;
      });
    });
  }).then(function () {
    return caches.keys();
  }).then(function (names) {
    return Promise.all(names.filter(function (n) { return n.indexOf(PREFIX) === 0 && n !== CACHE; })
      .map(function (n) { return caches.delete(n); }));
  }).then(function () { return self.clients.claim(); }));
});

function shellFromCache() {
  return caches.open(CACHE).then(function (cache) {
    return cache.match(SHELL, {ignoreVary: true});
  }).then(function (found) {
    return found || new Response("<!doctype html><title>Offline</title><p>No connection, and this tablet has " +
      "not kept the offline counter yet: open the counter once while online.</p>",
      {status: 503, headers: {"Content-Type": "text/html; charset=utf-8"}});
  });
}

self.addEventListener("fetch", function (event) {
  var request = event.request;
  var url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  if (NETWORK_ONLY.indexOf(url.pathname) !== -1) return;
  if (url.pathname === SHELL) {  // fetched again after every sync: the cached copy stays fresh
    event.respondWith(fetch(request).then(function (response) {
      return caches.open(CACHE).then(function (cache) { return keepShell(cache, response); })
        .then(function () { return response; });
    }, shellFromCache));
    return;
  }
  if (request.mode === "navigate" && url.pathname.indexOf("/counter/") === 0) {
    event.respondWith(networkFirst(request).catch(shellFromCache));
    return;
  }
  if (ASSETS.indexOf(url.pathname) !== -1) {
    event.respondWith(caches.open(CACHE).then(function (cache) {
      return cache.match(request, {ignoreSearch: true, ignoreVary: true}).then(function (hit) {
        return hit || fetch(request);
      });
    }));
  }
});
