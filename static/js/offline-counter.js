// The offline counter (issue 20), on every counter page.
//
// Online: registers the service worker (/sw.js), keeps the tablet's copy of the board in
// IndexedDB (synced every minute: today's and tomorrow's hires and the charge rules) and
// sends the queued steps, in order, each with its own idempotency key.
// Offline: /counter/offline (which the service worker shows for any counter page) draws the
// board and the hire from that copy; the offline-safe steps (photo ID, condition, photos,
// signature) are queued; the charges are computed with the synced rules
// (offline-charges.js); hand-over and settlement wait for the connection.
// Everything is drawn with DOM calls and textContent: no inline script or style (CSP).
(function () {
  "use strict";
  var SYNC_URL = "/counter/offline/sync", STEPS_URL = "/counter/offline/steps", SHELL_URL = "/counter/offline";
  var SIGN_IN_URL = "/account/sign-in?next=%2Fcounter%2F";
  var BATCH_MAX = 10;
  var token = null, flushing = null, lastProblem = "", sentNow = 0, shellRefreshed = false;

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

  // ---- talking to the server
  function signedOut(response) {
    return response.status === 401 || (response.redirected && new URL(response.url).pathname.indexOf("/account/") === 0);
  }

  function sync() {
    return fetch(SYNC_URL, {credentials: "same-origin", headers: {Accept: "application/json"}}).then(function (response) {
      if (signedOut(response)) { token = null; return "signin"; }
      if (!response.ok) return "error";
      return response.json().then(function (data) {
        token = data.csrf_token;
        delete data.csrf_token;
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
    for (var i = 0; i < queue.length && batch.length < BATCH_MAX; i++) {
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
    return all("queue").then(function (queue) {
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
                                                    at: new Date().toISOString()}, answer,
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
        var batch = nextBatch(queue);
        return Promise.all(batch.map(toWire)).then(function (wire) {
          return fetch(STEPS_URL, {method: "POST", credentials: "same-origin",
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

  function renderStatus(meta, queue, answers) {
    var box = statusBox();
    if (!box) return;
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

  // ---- the offline pages (drawn into #offline-app)
  function renderBoard(app, meta) {
    app.appendChild(el("h1", {text: "Counter"}));
    if (!meta) { app.appendChild(el("p", {"class": "muted", text: "Nothing synced on this tablet yet."})); return; }
    [["Pickups", "pickup"], ["Returns", "return"]].forEach(function (group) {
      var hires = meta.hires.filter(function (h) { return h.kind === group[1]; });
      app.appendChild(el("h2", {text: group[0] + " "}, [el("span", {"class": "count", text: String(hires.length)})]));
      app.appendChild(el("ul", {"class": "board-list"}, hires.length ? hires.map(function (h) {
        return el("li", {"class": "board-item"}, [el("a", {"class": "board-link", href: "/counter/hires/" + h.reference}, [
          el("strong", {text: h.reference}), el("span", {text: h.customer}), el("span", {text: h.car + " · " + h.plate}),
          el("span", {"class": "when", text: group[1] === "pickup" ? h.start_local : h.end_local})])]);
      }) : [el("li", {"class": "muted", text: "None synced."})]));
    });
  }

  function field(id, label, control, error) {
    return el("div", {"class": "field" + (error ? " has-error" : "")}, [
      el("label", {"for": id, text: label}), control,
      error ? el("p", {"class": "error", id: id + "-error", text: error}) : null]);
  }

  function waitingNote(rec, step) {
    return rec.waiting[step] ? el("p", {"class": "offline-saved", text: "Saved on this tablet · waiting for connection."}) : null;
  }

  function idSection(hire, rec, errors) {
    var children = [el("h2", {text: "1. Licence and photo ID"}),
      el("p", {"class": hire.licence_ok ? "ok" : "error",
               text: hire.licence_ok ? "Licence verified." : hire.licence_message + " A licence re-check needs a connection."})];
    if (rec.id_checked) {
      children.push(el("p", {"class": "ok", text: "Photo ID checked."}), waitingNote(rec, "id_check"));
    } else {
      var box = el("input", {type: "checkbox", id: "off-id"});
      children.push(el("div", {"class": "field" + (errors.id ? " has-error" : "")}, [
        el("label", {"class": "check"}, [box, " Photo ID seen and matches the booking"]),
        errors.id ? el("p", {"class": "error", text: errors.id}) : null]));
      children.push(el("button", {type: "button", "class": "button", text: "Save ID check", onclick: function () {
        if (!box.checked) return draw({id: "Tick only when you have seen the photo ID."});
        queueStep(hire, "id_check", {}).then(function () { draw(); });
      }}));
    }
    return el("section", {"class": "step", id: "step-licence"}, children);
  }

  function conditionSection(hire, rec, meta, errors) {
    var pickup = hire.kind === "pickup";
    var odometer = el("input", {id: "off-odometer", type: "number", inputmode: "numeric", min: "0",
                                value: rec.odometer === null || rec.odometer === undefined ? "" : String(rec.odometer)});
    var fuel = el("select", {id: "off-fuel"}, [0, 1, 2, 3, 4, 5, 6, 7, 8].map(function (i) {
      return el("option", {value: String(i), text: fuelWords(i), selected: rec.fuel_eighths === i});
    }));
    var cleaning = el("input", {type: "checkbox", id: "off-cleaning", checked: !!rec.needs_cleaning});
    var panels = meta.panels.map(function (p) {
      var entry = (rec.checklist || {})[p] || {state: "ok", note: ""};
      var state = el("select", {id: "off-panel-" + p}, meta.panel_states.map(function (s) {
        return el("option", {value: s, text: capital(s), selected: entry.state === s});
      }));
      var note = el("input", {id: "off-note-" + p, type: "text", maxlength: "200", value: entry.note || ""});
      var here = rec.photosHere.filter(function (q) { return q.data.panel === p; }).map(function (q) {
        return el("img", {src: URL.createObjectURL(q.blob), alt: p + " (on this tablet)"});
      });
      return {panel: p, state: state, note: note, node: el("fieldset", {"class": "panel"}, [
        el("legend", {text: capital(p)}), field("off-panel-" + p, capital(p), state),
        field("off-note-" + p, capital(p) + " note", note, errors["note_" + p]),
        el("div", {"class": "thumbs"}, here)])};
    });
    var children = [el("h2", {text: pickup ? "2. Condition out" : "1. Condition in"})];
    if (!pickup && hire.out) children.push(el("p", {"class": "muted", text: "Out: " + hire.out.odometer + " miles, fuel " + hire.out.fuel_eighths + "/8."}));
    children.push(waitingNote(rec, "condition"),
      el("div", {"class": "grid-2"}, [field("off-odometer", "Odometer (miles)", odometer, errors.odometer),
                                      field("off-fuel", "Fuel", fuel)]),
      pickup ? null : el("div", {"class": "field"}, [el("label", {"class": "check"}, [cleaning, " Needs more than a standard clean"])]),
      el("div", {"class": "panels"}, panels.map(function (p) { return p.node; })),
      el("button", {type: "button", "class": "button", text: "Save condition", onclick: function () {
        var found = {}, miles = Number(odometer.value), least = pickup ? hire.car_odometer : (hire.out ? hire.out.odometer : 0);
        if (odometer.value === "" || !Number.isInteger(miles) || miles < 0) found.odometer = "Enter the odometer in whole miles.";
        else if (miles < least) found.odometer = (pickup ? "The car's last reading was " : "The car left with ") + least + " miles.";
        var checklist = {};
        panels.forEach(function (p) {
          checklist[p.panel] = {state: p.state.value, note: p.note.value.trim()};
          if (p.state.value !== "ok" && !p.note.value.trim()) found["note_" + p.panel] = "Describe what you see.";
        });
        if (Object.keys(found).length) return draw(found);
        queueStep(hire, "condition", {odometer: miles, fuel_eighths: Number(fuel.value), checklist: checklist,
                                      needs_cleaning: !pickup && cleaning.checked}).then(function () { draw(); });
      }}));
    var part = el("select", {id: "off-photo-panel"}, meta.panels.map(function (p) { return el("option", {value: p, text: capital(p)}); }));
    var file = el("input", {id: "off-photo", type: "file", accept: "image/*", capture: "environment"});
    children.push(el("div", {"class": "photo-form"}, [
      el("div", {"class": "grid-2"}, [field("off-photo-panel", "Part of the car", part), field("off-photo", "Photo", file, errors.photo)]),
      el("button", {type: "button", "class": "button secondary", text: "Add photo", onclick: function () {
        if (!file.files.length) return draw({photo: "Take or choose a photo."});
        compress(file.files[0], meta.photo).then(function (blob) {
          return queueStep(hire, "photo", {panel: part.value}, blob);
        }).then(function () { draw(); }, function () { draw({photo: "That file is not a photo this tablet can read."}); });
      }})]));
    return el("section", {"class": "step", id: "step-condition"}, children);
  }

  function compress(file, options) {
    return createImageBitmap(file).then(function (bitmap) {
      var scale = Math.min(1, options.max_side / Math.max(bitmap.width, bitmap.height));
      var canvas = el("canvas", {width: String(Math.round(bitmap.width * scale)), height: String(Math.round(bitmap.height * scale))});
      canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
      return new Promise(function (resolve, reject) {
        canvas.toBlob(function (blob) { return blob ? resolve(blob) : reject(new Error("no picture")); }, "image/jpeg", options.quality);
      });
    });
  }

  function signatureSection(hire, rec, errors) {
    var children = [el("h2", {text: "3. Customer signs"})];
    if (rec.signed) {
      children.push(el("p", {"class": "ok", text: "Signed."}), waitingNote(rec, "signature"));
      if (rec.signatureHere) children.push(el("img", {"class": "signature", src: rec.signatureHere, alt: "Customer's signature"}));
      return el("section", {"class": "step", id: "step-signature"}, children);
    }
    var canvas = el("canvas", {"class": "signature-pad", width: "600", height: "200", "aria-label": "Signature box: sign with a finger"});
    var ctx = canvas.getContext("2d"), drawing = false, drawn = false;
    ctx.lineWidth = 3; ctx.lineCap = "round"; ctx.strokeStyle = "#111";
    function point(e) {
      var r = canvas.getBoundingClientRect();
      return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
    }
    canvas.addEventListener("pointerdown", function (e) {
      drawing = true; canvas.setPointerCapture(e.pointerId); var p = point(e); ctx.beginPath(); ctx.moveTo(p[0], p[1]); e.preventDefault();
    });
    canvas.addEventListener("pointermove", function (e) {
      if (!drawing) return; var p = point(e); ctx.lineTo(p[0], p[1]); ctx.stroke(); drawn = true; e.preventDefault();
    });
    ["pointerup", "pointercancel", "pointerleave"].forEach(function (t) { canvas.addEventListener(t, function () { drawing = false; }); });
    children.push(el("p", {text: "I have read the hire terms and the condition record above."}), canvas,
      errors.signature ? el("p", {"class": "error", id: "signature-error", text: errors.signature}) : null,
      el("div", {"class": "actions"}, [
        el("button", {type: "button", "class": "button secondary", text: "Clear", onclick: function () {
          ctx.clearRect(0, 0, canvas.width, canvas.height); drawn = false; }}),
        el("button", {type: "button", "class": "button", text: "Save signature", onclick: function () {
          if (!drawn) return draw({signature: "Ask the customer to sign in the box."});
          queueStep(hire, "signature", {image: canvas.toDataURL("image/png")}).then(function () { draw(); });
        }})]));
    return el("section", {"class": "step", id: "step-signature"}, children);
  }

  function waitsSection(id, title, label, reason, hire) {
    return el("section", {"class": "step", id: id}, [el("h2", {text: title}),
      el("button", {type: "button", "class": "button", disabled: true, text: label, "aria-describedby": id + "-why"}),
      el("p", {"class": "offline-waiting", id: id + "-why", text: "Waiting for connection: " + reason}),
      navigator.onLine ? el("p", {}, [el("a", {href: "/counter/hires/" + hire.reference, "data-online": "", text: "Open " + hire.reference + " online"})]) : null]);
  }

  function chargesSection(hire, rec, meta) {
    var children = [el("h2", {text: "2. Charges"})];
    if (!rec.condition_recorded_at) {
      children.push(el("p", {"class": "muted", text: "Record the condition to see the charges."}));
    } else if (meta.rules.revision !== OfflineCharges.REVISION) {
      children.push(el("p", {"class": "muted", text: "This tablet's copy of the charge rules is out of date: the charges show once online."}));
    } else {
      var lines = OfflineCharges.computeCharges({
        start_at: hire.start_at, end_at: hire.end_at, returned_at: rec.condition_recorded_at,
        day_rate_pence: hire.day_rate_pence, miles_allowed_per_day: hire.miles_allowed_per_day,
        odometer_out: hire.out.odometer, odometer_in: rec.odometer, fuel_out_eighths: hire.out.fuel_eighths || 0,
        fuel_in_eighths: rec.fuel_eighths, needs_cleaning: !!rec.needs_cleaning, damages: rec.damages || [],
        waivers: rec.waivers || {}}, meta.rules.rates);
      var rows = lines.length ? lines.map(function (l) {
        return el("tr", {}, [el("td", {text: l.label + (l.waived_reason ? " (waived: " + l.waived_reason + ")" : "")}),
                             el("td", {"class": "num", text: OfflineCharges.money(l.waived_reason ? 0 : l.amount_pence)})]);
      }) : [el("tr", {}, [el("td", {colspan: "2", text: "Nothing to charge."})])];
      children.push(el("table", {"class": "charges"}, [
        el("thead", {}, [el("tr", {}, [el("th", {text: "Charge"}), el("th", {"class": "num", text: "Amount"})])]),
        el("tbody", {}, rows),
        el("tfoot", {}, [el("tr", {}, [el("th", {text: "Total"}), el("th", {"class": "num", text: OfflineCharges.money(OfflineCharges.totalOwed(lines))})])])]),
        el("p", {"class": "muted", text: "Computed on this tablet with the charge rules synced at " + meta.synced_at_local +
                                        " (version " + meta.rules.version + "); damage charges and waivers are added online."}));
    }
    return el("section", {"class": "step", id: "step-charges"}, children);
  }

  function renderHire(app, meta, queue, reference, errors) {
    var hire = meta && meta.hires.filter(function (h) { return h.reference === reference; })[0];
    app.appendChild(el("p", {}, [el("a", {href: "/counter/", text: "← Counter board"})]));
    if (!hire) {
      app.appendChild(el("h1", {text: reference}));
      app.appendChild(el("p", {"class": "error", text: "This hire was not synced to this tablet: open it once online."}));
      return;
    }
    var rec = localRecord(hire, queue), pickup = hire.kind === "pickup";
    var steps = pickup ? [["Licence and ID", rec.id_checked && hire.licence_ok], ["Condition out", !!rec.condition_recorded_at],
                          ["Customer signs", rec.signed], ["Hand over", false]]
                       : [["Condition in", !!rec.condition_recorded_at], ["Charges", false], ["Settle", false]];
    app.appendChild(el("header", {"class": "flow-head"}, [
      el("h1", {text: hire.reference + " · " + (pickup ? "Pickup" : "Return")}),
      el("p", {}, [el("strong", {text: hire.customer}), " · " + hire.car + " · ", el("span", {"class": "plate", text: hire.plate})]),
      el("p", {"class": "muted", text: hire.start_local + " → " + hire.end_local + " · " + hire.state}),
      el("ol", {"class": "steps", id: "steps", "aria-label": "Steps"}, steps.map(function (s) {
        return el("li", {"class": s[1] ? "done" : "todo", text: s[0] + (s[1] ? " ✓" : "")});
      }))]));
    if (pickup) {
      app.appendChild(idSection(hire, rec, errors));
      app.appendChild(conditionSection(hire, rec, meta, errors));
      app.appendChild(signatureSection(hire, rec, errors));
      app.appendChild(waitsSection("step-handover", "4. Hand over", "Hand over the keys",
                                   "handing over confirms the deposit hold on the customer's card.", hire));
    } else {
      app.appendChild(conditionSection(hire, rec, meta, errors));
      app.appendChild(chargesSection(hire, rec, meta));
      app.appendChild(waitsSection("step-settle", "3. Settle", "Settle", "settling moves the deposit and the charges.", hire));
    }
  }

  var app = null;
  function draw(errors) {
    if (!app) return Promise.resolve();
    return Promise.all([getMeta("sync"), all("queue")]).then(function (got) {
      // Drawn again (messages beside the fields, a sync that just came in): what staff
      // entered and have not saved yet stays as it was.
      var typed = {};
      app.querySelectorAll("input[id], select[id]").forEach(function (input) {
        if (input.type !== "file") typed[input.id] = input.type === "checkbox" ? input.checked : input.value;
      });
      app.textContent = "";
      var match = location.pathname.match(/^\/counter\/hires\/([^/]+)$/);
      if (match) renderHire(app, got[0], got[1], decodeURIComponent(match[1]).toUpperCase(), errors || {});
      else renderBoard(app, got[0]);
      Object.keys(typed).forEach(function (id) {
        var input = document.getElementById(id);
        if (!input) return;
        if (input.type === "checkbox") input.checked = typed[id]; else input.value = typed[id];
      });
    });
  }

  function render() {
    return Promise.all([getMeta("sync"), all("queue"), all("answers")]).then(function (got) {
      renderStatus(got[0], got[1], got[2]);
    });
  }

  function start() {
    app = document.getElementById("offline-app");
    if ("serviceWorker" in navigator) {
      navigator.serviceWorker.register("/sw.js", {scope: "/counter/"}).catch(function () {});
    }
    window.addEventListener("online", function () { whenOnline().then(function () { draw(); }); });
    window.addEventListener("offline", render);
    // An offline page kept open shows the same board the server would once the tablet is
    // back online: a link to the hire "online" leaves the shell.
    draw().then(render).then(function () {
      if (navigator.onLine) return whenOnline().then(function () { return draw(); });
    });
    getMeta("sync").then(function (meta) {
      var seconds = (meta && meta.sync_seconds) || 60;
      setInterval(function () { if (navigator.onLine && !flushing) whenOnline(); }, seconds * 1000);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
