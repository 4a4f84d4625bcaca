// The offline counter (issue 20), on every counter page.
//
// Online: registers the service worker (/sw.js), keeps the tablet's copy of the board in
// IndexedDB (synced every minute: today's and tomorrow's hires and the charge rules) and
// sends the queued steps, in order, each with its own idempotency key.
// Offline: /counter/offline (which the service worker shows for any counter page) draws the
// board and the hire from that copy (offline-pages.js); the offline-safe steps (photo ID,
// condition, photos, signature) are queued here and shown as waiting on every counter page.
// Signing out clears the tablet's copy and queue (asking first if steps are not sent yet).
// Everything is drawn with DOM calls and textContent: no inline script or style (CSP).
(function () {
  "use strict";
  var SYNC_URL = "/counter/offline/sync", STEPS_URL = "/counter/offline/steps", SHELL_URL = "/counter/offline";
  var SIGN_IN_URL = "/account/sign-in?next=%2Fcounter%2F";
  var batchMax = 10;  // until the first sync says (OFFLINE_BATCH_MAX_STEPS)
  var token = null, flushing = null, lastProblem = "", sentNow = 0, shellRefreshed = false;
  // Who is signed in on this tablet (the last sync says): queued steps and answers carry
  // their owner, and only the owner's are shown, counted and sent. Another person signing
  // in on the tablet never sees or sends them.
  var me = null;
  function mine(entries) {
    return (entries || []).filter(function (e) { return me === null || e.owner === undefined || e.owner === me; });
  }

  // ---- IndexedDB: "meta" (the last sync), "queue" (steps in order), "answers" (for staff)
  var dbPromise = null;
  function openDb() {
    if (!dbPromise) {
      dbPromise = new Promise(function (resolve, reject) {
        var req = indexedDB.open("acme-counter", 1);
        req.onupgradeneeded = function () {
          var db = req.result;
          db.createObjectStore("meta");
          db.createObjectStore("queue", {keyPath: "seq", autoIncrement: true});
          db.createObjectStore("answers", {keyPath: "key"});
        };
        req.onsuccess = function () { resolve(req.result); };
        req.onerror = function () { reject(req.error); };
      });
    }
    return dbPromise;
  }
  function tx(store, mode, action) {
    return openDb().then(function (db) {
      return new Promise(function (resolve, reject) {
        var t = db.transaction(store, mode), req = action(t.objectStore(store));
        t.oncomplete = function () { resolve(req ? req.result : undefined); };
        t.onerror = t.onabort = function () { reject(t.error); };
      });
    });
  }
  function getMeta(key) { return tx("meta", "readonly", function (s) { return s.get(key); }); }
  function putMeta(key, value) { return tx("meta", "readwrite", function (s) { return s.put(value, key); }); }
  function all(store) { return tx(store, "readonly", function (s) { return s.getAll(); }); }
  function put(store, value) { return tx(store, "readwrite", function (s) { return s.put(value); }); }
  function remove(store, key) { return tx(store, "readwrite", function (s) { return s["delete"](key); }); }

  function newKey() {
    if (self.crypto && crypto.randomUUID) return crypto.randomUUID();
    var bytes = new Uint8Array(16); crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return (b + 256).toString(16).slice(1); }).join("");
  }

  // ---- DOM helpers
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      var value = attrs[name];
      if (value === false || value === null || value === undefined) return;
      if (name === "text") node.textContent = value;
      else if (name === "class") node.className = value;
      else if (name.slice(0, 2) === "on") node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : value);
    });
    (children || []).forEach(function (child) {
      if (child) node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }
  function capital(word) { return word.charAt(0).toUpperCase() + word.slice(1); }
  function fuelWords(eighths) { return eighths === 0 ? "Empty" : eighths === 8 ? "Full" : eighths + "/8"; }
  function clock(iso) {
    return new Date(iso).toLocaleTimeString("en-GB", {hour: "2-digit", minute: "2-digit", timeZone: "Europe/London"});
  }

  // ---- talking to the server: every request gives up after a while (a car park's signal
  // can hang a request for minutes); the queue is tried again later, under the same keys.
  var timeoutSeconds = 20;
  function send(url, options) {
    var abort = new AbortController(), timer = setTimeout(function () { abort.abort(); }, timeoutSeconds * 1000);
    return fetch(url, Object.assign({credentials: "same-origin", signal: abort.signal}, options))
      .then(function (response) { clearTimeout(timer); return response; },
            function (error) { clearTimeout(timer); throw error; });
  }
  function signedOut(response) {
    return response.status === 401 || (response.redirected && new URL(response.url).pathname.indexOf("/account/") === 0);
  }

  function sync() {
    return send(SYNC_URL, {headers: {Accept: "application/json"}}).then(function (response) {
      if (signedOut(response)) { token = null; return "signin"; }
      if (!response.ok) return "error";
      return response.json().then(function (data) {
        if (signingOut) return "signin";  // the tablet is being cleared: keep nothing
        token = data.csrf_token;
        delete data.csrf_token;
        me = data.staff_id;
        timeoutSeconds = data.request_timeout_seconds || timeoutSeconds;
        batchMax = data.batch_max_steps || batchMax;
        return putMeta("sync", data).then(function () {
          if (!shellRefreshed) {  // the service worker keeps this release's offline page fresh
            shellRefreshed = true;
            fetch(SHELL_URL, {credentials: "same-origin"}).catch(function () {});
          }
          return "ok";
        });
      });
    }, function () { return "offline"; });
  }

  function toWire(entry) {
    var wire = {key: entry.key, hire: entry.hire, kind: entry.kind, step: entry.step,
                base_version: entry.base_version, done_at: entry.done_at, data: Object.assign({}, entry.data)};
    if (!entry.blob) return Promise.resolve(wire);
    return new Promise(function (resolve, reject) {
      var reader = new FileReader();
      reader.onload = function () { wire.data.image = reader.result; resolve(wire); };
      reader.onerror = function () { reject(reader.error); };
      reader.readAsDataURL(entry.blob);
    });
  }

  function nextBatch(queue) {
    var batch = [];
    for (var i = 0; i < queue.length && batch.length < batchMax; i++) {
      var heavy = queue[i].blob || queue[i].step === "signature";
      if (heavy && batch.length) break;  // a picture travels alone
      batch.push(queue[i]);
      if (heavy) break;
    }
    return batch;
  }

  // The server answered: applied steps leave the queue, and the steps queued after them on
  // the same record move on to the version the server now has; conflicts and refusals are
  // kept for staff to see.
  function settle(batch, results) {
    return all("queue").then(mine).then(function (queue) {
      var writes = [];
      var busy = false;
      results.forEach(function (answer) {
        var entry = batch.filter(function (e) { return e.key === answer.key; })[0];
        if (!entry || busy) return;
        if (answer.outcome === "retry") { busy = true; return; }  // it and the rest stay queued
        writes.push(remove("queue", entry.seq));
        queue = queue.filter(function (q) { return q.seq !== entry.seq; });
        if (answer.outcome === "applied") {
          sentNow += 1;
          if (answer.version !== undefined) {
            queue.forEach(function (q) {
              if (q.hire === entry.hire && q.kind === entry.kind && (q.base_version || 1) === answer.base_version) {
                q.base_version = answer.version;
                writes.push(put("queue", q));
              }
            });
          }
        } else {
          var mine = {step: entry.step, kind: entry.kind, done_at: entry.done_at, data: entry.data};
          writes.push(put("answers", Object.assign({step: entry.step, kind: entry.kind, hire: entry.hire,
                                                    owner: entry.owner, at: new Date().toISOString()}, answer,
                                                   {tablet: answer.tablet || mine})));
        }
      });
      return Promise.all(writes).then(function () { return busy; });
    });
  }

  function sendQueue(retried) {
    return all("queue").then(function (queue) {
      if (!queue.length) return "done";
      var ready = token ? Promise.resolve("ok") : sync();
      return ready.then(function (state) {
        if (state !== "ok") return state;
        queue = mine(queue);  // who is signed in is known now
        if (!queue.length) return "done";
        var batch = nextBatch(queue);
        return Promise.all(batch.map(toWire)).then(function (wire) {
          return send(STEPS_URL, {method: "POST",
                                  headers: {"Content-Type": "application/json", Accept: "application/json",
                                            "X-CSRFToken": token},
                                  body: JSON.stringify({steps: wire})});
        }).then(function (response) {
          if (signedOut(response)) { token = null; return "signin"; }
          if (response.status === 400 && !retried) { token = null; return sendQueue(true); }  // token expired
          if (!response.ok) return "error";
          return response.json().then(function (body) {
            return settle(batch, body.results || []);
          }).then(function (busy) { render(); return busy ? "busy" : sendQueue(false); });
        }, function () { return "offline"; });
      });
    });
  }

  var busyTries = 0;
  function flush() {
    if (flushing) return flushing;
    sentNow = 0;
    setSending(true);
    flushing = sendQueue(false).then(function (state) {
      lastProblem = state === "done" ? "" : state;
      // The server was busy with the same record (another request of this tablet still
      // running): a few more tries shortly, then the minutely sync.
      busyTries = state === "busy" ? busyTries + 1 : 0;
      if (state === "busy" && busyTries <= 5) setTimeout(flush, 1000 * busyTries);
      if (state === "done" && sentNow) return sync().then(function () { return state; });
      return state;
    }, function () { lastProblem = "error"; }).then(function () {
      flushing = null;
      setSending(false);
      render();
    });
    return flushing;
  }

  function whenOnline() {
    if (!navigator.onLine) { render(); return Promise.resolve(); }
    return sync().then(function (state) {
      if (state === "signin") { lastProblem = "signin"; render(); return null; }
      return flush();
    }).then(render);
  }

  // ---- queueing a step done on the tablet
  function queueStep(hire, step, data, blob) {
    var entry = {key: newKey(), hire: hire.reference, kind: hire.kind, step: step,
                 base_version: hire.inspection ? hire.inspection.version : null,
                 done_at: new Date().toISOString(), data: data};
    if (me !== null) entry.owner = me;
    if (blob) entry.blob = blob;
    return put("queue", entry).then(function () {
      render();
      if (navigator.onLine) flush();
    });
  }

  // What this tablet knows of a pickup or return: the server's record as synced, with the
  // steps still waiting in the queue laid over it.
  function localRecord(hire, queue) {
    var rec = JSON.parse(JSON.stringify(hire.inspection || {}));
    rec.waiting = {}; rec.photosHere = [];
    queue.forEach(function (q) {
      if (q.hire !== hire.reference || q.kind !== hire.kind) return;
      if (q.step === "id_check") { rec.id_checked = true; rec.waiting.id_check = true; }
      if (q.step === "condition") {
        rec.odometer = q.data.odometer; rec.fuel_eighths = q.data.fuel_eighths; rec.checklist = q.data.checklist;
        rec.needs_cleaning = q.data.needs_cleaning; rec.condition_recorded_at = q.done_at; rec.waiting.condition = true;
      }
      if (q.step === "photo") rec.photosHere.push(q);
      if (q.step === "signature") { rec.signed = true; rec.waiting.signature = true; rec.signatureHere = q.data.image; }
    });
    return rec;
  }

  // ---- the status line on every counter page
  var sending = false;
  function setSending(on) { sending = on; }

  function statusBox() {
    var box = document.getElementById("offline-status");
    if (!box) {
      var main = document.getElementById("main");
      if (!main) return null;
      box = el("div", {id: "offline-status", "class": "offline-status", role: "status", "aria-live": "polite"});
      main.insertBefore(box, main.firstChild);
    }
    return box;
  }

  function describeServer(answer) {
    var server = answer.server || {}, rec = server.inspection || {};
    var parts = ["hire " + String(server.state || "").replace(/_/g, " ")];
    if (rec.completed_by) parts.push("finished by " + rec.completed_by + " at " + rec.completed_at_local);
    if (rec.odometer !== null && rec.odometer !== undefined) parts.push(rec.odometer + " miles, fuel " + fuelWords(rec.fuel_eighths));
    if (rec.total_pence !== null && rec.total_pence !== undefined) parts.push("charges " + OfflineCharges.money(rec.total_pence));
    return parts.join(" · ");
  }

  function describeTablet(answer) {
    var tablet = answer.tablet || {}, data = tablet.data || {};
    var words = {id_check: "photo ID checked", condition: "condition", photo: "photo", signature: "signature"};
    var parts = [(words[tablet.step] || tablet.step) + " at " + clock(tablet.done_at)];
    if (data.odometer !== undefined) parts.push(data.odometer + " miles, fuel " + fuelWords(data.fuel_eighths));
    if (data.panel) parts.push(data.panel);
    return parts.join(" · ");
  }

  function renderStatus(meta, everyone, answers) {
    var box = statusBox();
    if (!box) return;
    var queue = mine(everyone), others = everyone.length - queue.length;
    answers = mine(answers);
    box.textContent = "";
    var lines = [];
    if (!navigator.onLine) {
      lines.push(el("p", {"class": "offline-banner", text: meta ? "Offline · last updated " + meta.synced_at_local
                                                              : "Offline · nothing synced on this tablet yet"}));
    }
    if (queue.length) {
      var n = queue.length + (queue.length === 1 ? " step" : " steps");
      if (lastProblem === "signin") {
        lines.push(el("p", {"class": "offline-signin"}, ["Your session has ended: ",
          el("a", {href: SIGN_IN_URL, text: "sign in to send the " + n + " saved on this tablet"}), "."]));
      } else {
        lines.push(el("p", {"class": "offline-waiting", text: sending && navigator.onLine ? "Sending " + n + "…"
          : n + " saved on this tablet, waiting for connection."}));
      }
    } else if (navigator.onLine && meta && !answers.length && sentNow) {
      lines.push(el("p", {"class": "ok", text: "Every step saved on this tablet has been sent."}));
    }
    if (others) {
      lines.push(el("p", {"class": "muted", text: others + (others === 1 ? " step" : " steps") + " saved on this " +
        "tablet by someone else wait for them to sign in here again."}));
    }
    if (answers.length) {
      var list = el("div", {"class": "offline-answers"}, [el("h2", {text: "Needs your attention"})]);
      answers.forEach(function (answer) {
        var title = answer.hire + " · " + answer.kind + ": " + (answer.outcome === "conflict"
          ? "changed meanwhile, not applied" : "not applied");
        var rows = [el("dt", {text: "On this tablet"}), el("dd", {text: describeTablet(answer)})];
        if (answer.server) rows.push(el("dt", {text: "On the server"}), el("dd", {text: describeServer(answer)}));
        list.appendChild(el("article", {"class": "offline-answer " + answer.outcome}, [
          el("h3", {text: title}), el("p", {text: answer.message}), el("dl", {}, rows),
          el("button", {type: "button", "class": "button secondary small", text: "Dismiss",
                        "aria-label": "Dismiss: " + title,
                        onclick: function () { remove("answers", answer.key).then(render); }})]));
      });
      lines.push(list);
    }
    lines.forEach(function (line) { box.appendChild(line); });
    box.hidden = !lines.length;
  }

  function render() {
    return Promise.all([getMeta("sync"), all("queue"), all("answers")]).then(function (got) {
      renderStatus(got[0], got[1], got[2]);
    });
  }

  // ---- signing out: the next person on this tablet must not see or send this one's work.
  // The tablet's copy of the board, the queue and the answers are deleted (and the offline
  // page the service worker keeps); steps not sent yet are never dropped without asking:
  // staff are told how many, and may stay signed in while they are sent.
  var SIGN_OUT = /^\/account\/sign-out(-everywhere)?$/;
  function clearTablet() {
    var stores = ["meta", "answers"].map(function (name) {
      return tx(name, "readwrite", function (s) { return s.clear(); });
    }).concat([all("queue").then(mine).then(function (queue) {  // someone else's wait for them
      return Promise.all(queue.map(function (entry) { return remove("queue", entry.seq); }));
    })]);
    var shells = self.caches ? caches.keys().then(function (names) {
      return Promise.all(names.filter(function (n) { return n.indexOf("acme-counter-") === 0; }).map(function (n) {
        return caches.open(n).then(function (cache) { return cache["delete"](SHELL_URL, {ignoreVary: true}); });
      }));
    }) : Promise.resolve();
    return Promise.all(stores.concat([shells]));
  }
  var signingOut = false;
  function signOutNow(form) {
    signingOut = true;
    return clearTablet().then(function () { form.submit(); },  // submit() fires no submit event
                              function () { form.submit(); });
  }
  function askBeforeSignOut(form, count) {
    var old = document.getElementById("unsent-dialog");
    if (old) old.remove();
    var n = count + (count === 1 ? " step" : " steps");
    var dialog = el("dialog", {id: "unsent-dialog", "class": "confirm", "aria-labelledby": "unsent-title"}, [
      el("h2", {id: "unsent-title", text: n + " not sent yet"}),
      el("p", {text: n + " saved on this tablet " + (count === 1 ? "has" : "have") + " not been sent to the server. " +
                     "Signing out deletes " + (count === 1 ? "it" : "them") + " from this tablet."}),
      el("div", {"class": "actions"}, [
        el("button", {type: "button", "class": "button", text: "Stay signed in and send " + (count === 1 ? "it" : "them"),
                      onclick: function () { dialog.close(); whenOnline(); }}),
        el("button", {type: "button", "class": "button secondary", text: "Sign out and delete " + n,
                      onclick: function () { dialog.close(); signOutNow(form); }})])]);
    document.body.appendChild(dialog);
    dialog.showModal();
  }
  function guardSignOut() {
    document.addEventListener("submit", function (event) {
      var form = event.target;
      if (!form || !form.action || !SIGN_OUT.test(new URL(form.action, location.href).pathname)) return;
      event.preventDefault();
      all("queue").then(mine).then(function (queue) {
        if (queue.length) askBeforeSignOut(form, queue.length);
        else signOutNow(form);
      }, function () { form.submit(); });
    }, true);
  }

  // The offline pages (offline-pages.js) draw the board or the hire into #offline-app.
  function draw(errors) { return OfflineCounter.draw ? OfflineCounter.draw(errors) : Promise.resolve(); }

  function allMine(store) { return all(store).then(mine); }
  self.OfflineCounter = {el: el, capital: capital, fuelWords: fuelWords, getMeta: getMeta, all: allMine,
                         queueStep: queueStep, localRecord: localRecord, draw: null};

  function start() {
    guardSignOut();
    if ("serviceWorker" in navigator) {
      navigator.serviceWorker.register("/sw.js", {scope: "/counter/"}).catch(function () {});
    }
    window.addEventListener("online", function () { whenOnline().then(function () { draw(); }); });
    window.addEventListener("offline", render);
    var tag = document.querySelector("meta[name='acme-counter-staff']");
    if (tag && /^\d+$/.test(tag.content)) me = parseInt(tag.content, 10);
    getMeta("sync").then(function (meta) {
      if (meta && me === null && meta.staff_id !== undefined) me = meta.staff_id;  // the copy's owner
      // Someone else's copy of the board (they never signed out here): not shown to this person.
      if (meta && meta.staff_id !== undefined && meta.staff_id !== me) {
        return tx("meta", "readwrite", function (s) { return s.clear(); }).then(function () { return null; });
      }
      return meta;
    }).then(function (meta) {
      draw().then(render).then(function () {
        if (navigator.onLine) return whenOnline().then(function () { return draw(); });
      });
      var seconds = (meta && meta.sync_seconds) || 60;
      setInterval(function () { if (navigator.onLine && !flushing) whenOnline(); }, seconds * 1000);
    });
  }

  // After the deferred scripts, offline-pages.js included.
  if (document.readyState === "complete") start();
  else document.addEventListener("DOMContentLoaded", start);
})();
