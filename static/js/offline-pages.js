// The offline counter's pages (issue 20): the board and a hire drawn from the tablet's copy
// (offline-counter.js keeps it, and the queue) into #offline-app, the page the service
// worker shows for any counter page while offline. The offline-safe steps are queued; the
// charges are computed with the synced rules (offline-charges.js); the licence re-check,
// hand-over and settlement wait for the connection, saying why.
// Drawn with DOM calls and textContent only: no inline script or style (CSP).
(function () {
  "use strict";
  var C = self.OfflineCounter, el = C.el, capital = C.capital, fuelWords = C.fuelWords;
  var getMeta = C.getMeta, all = C.all, queueStep = C.queueStep, localRecord = C.localRecord;
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
    } else if (!hire.out || hire.out.odometer === null) {
      children.push(el("p", {"class": "muted", text: "The pickup's readings were not synced to this tablet: the charges show once online."}));
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

  function draw(errors) {
    var app = document.getElementById("offline-app");
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

  C.draw = draw;
})();
