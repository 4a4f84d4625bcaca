// The return charges, computed on the tablet while it is offline: a line-for-line copy of
// app/counter/charges.py (compute_charges), fed the amounts the server synced with their
// version. REVISION must equal charges.RULES_REVISION; tests/test_counter_offline.py runs
// this file with node and compares it with the server for several returns.
(function (root) {
  "use strict";
  var REVISION = 2;  // 2: the late-return line says how late and how the fee adds up
  var HOUR = 3600 * 1000, DAY = 24 * HOUR;

  function lateFee(endMs, returnedMs, dayRate, rates) {
    var late = returnedMs - endMs;
    if (late <= rates.late_grace_minutes * 60 * 1000) return 0;
    var wholeDays = Math.floor(late / DAY), rest = late - wholeDays * DAY;
    var startedHours = Math.ceil(rest / HOUR);
    return wholeDays * dayRate + Math.min(startedHours * rates.late_fee_per_hour_pence, dayRate);
  }

  function money(pence) {  // app/filters.py money(): "£1,234.50"
    var sign = pence < 0 ? "-" : "", p = Math.abs(pence), pounds = Math.floor(p / 100), rest = p % 100;
    return sign + "£" + String(pounds).replace(/\B(?=(\d{3})+(?!\d))/g, ",") + "." + (rest < 10 ? "0" : "") + rest;
  }

  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }

  function lateness(lateMs) {  // charges.lateness: "2 h 58 min", "1 day 3 h"
    var minutes = Math.floor(lateMs / 60000), days = Math.floor(minutes / 1440);
    minutes -= days * 1440;
    var hours = Math.floor(minutes / 60);
    minutes -= hours * 60;
    var parts = (days ? [plural(days, "day")] : []).concat(hours ? [hours + " h"] : [])
      .concat(minutes || !(days || hours) ? [minutes + " min"] : []);
    return parts.join(" ");
  }

  function lateLabel(endMs, returnedMs, dayRate, rates) {  // charges.late_label
    var late = returnedMs - endMs, wholeDays = Math.floor(late / DAY);
    var startedHours = Math.ceil((late - wholeDays * DAY) / HOUR);
    var parts = wholeDays ? [plural(wholeDays, "day") + " × " + money(dayRate)] : [];
    if (startedHours) {
      var hours = plural(startedHours, "started hour") + " × " + money(rates.late_fee_per_hour_pence);
      if (startedHours * rates.late_fee_per_hour_pence > dayRate) hours += ", capped at the day rate " + money(dayRate);
      parts.push(hours);
    }
    return "Late return: " + lateness(late) + " late (" + parts.join(" + ") + ")";
  }

  function hireDays(startMs, endMs) {
    return Math.max(1, Math.ceil((endMs - startMs) / DAY));
  }

  function unusedDays(startMs, endMs, returnedMs) {
    if (returnedMs >= endMs) return 0;
    return Math.floor((endMs - Math.max(returnedMs, startMs)) / DAY);
  }

  // facts: {start_at, end_at, returned_at (ISO strings), day_rate_pence, miles_allowed_per_day,
  // odometer_out, odometer_in, fuel_out_eighths, fuel_in_eighths, needs_cleaning,
  // damages: [{panel, amount_pence, reason}], waivers: {code: reason}}
  function computeCharges(facts, rates) {
    var start = Date.parse(facts.start_at), end = Date.parse(facts.end_at), back = Date.parse(facts.returned_at);
    var waivers = facts.waivers || {}, lines = [];
    function add(code, label, amount) {
      if (amount) lines.push({code: code, label: label, amount_pence: amount, waived_reason: waivers[code] || ""});
    }
    var lateFeePence = lateFee(end, back, facts.day_rate_pence, rates);
    if (lateFeePence) add("late", lateLabel(end, back, facts.day_rate_pence, rates), lateFeePence);
    var short = Math.max(0, facts.fuel_out_eighths - facts.fuel_in_eighths);
    if (short) {
      add("fuel", "Fuel: " + short + "/8 of a tank short", short * rates.fuel_price_per_eighth_pence);
      add("refuelling", "Refuelling service", rates.refuelling_fee_pence);
    }
    var allowed = facts.miles_allowed_per_day * hireDays(start, end);
    var excess = Math.max(0, facts.odometer_in - facts.odometer_out - allowed);
    add("mileage", excess + " miles over the " + allowed + "-mile allowance",
        excess * rates.excess_mileage_pence_per_mile);
    if (facts.needs_cleaning) add("cleaning", "Cleaning", rates.cleaning_fee_pence);
    (facts.damages || []).forEach(function (d, i) {
      add("damage" + (i + 1), "Damage (" + d.panel + "): " + d.reason, d.amount_pence);
    });
    var unused = unusedDays(start, end, back);
    if (unused) {
      var refund = Math.floor(unused * facts.day_rate_pence * rates.unused_day_refund_percent / 100);
      add("unused", "Early return: " + unused + " unused day(s)", -refund);
    }
    return lines;
  }

  function totalOwed(lines) {
    return lines.reduce(function (sum, l) { return sum + (l.waived_reason ? 0 : l.amount_pence); }, 0);
  }

  function money(pence) {
    var sign = pence < 0 ? "-" : "", abs = Math.abs(pence);
    var pounds = Math.floor(abs / 100), p = abs % 100;
    return sign + "£" + pounds.toLocaleString("en-GB") + "." + (p < 10 ? "0" : "") + p;
  }

  var api = {REVISION: REVISION, computeCharges: computeCharges, totalOwed: totalOwed, money: money};
  if (typeof module !== "undefined" && module.exports) module.exports = api;
  else root.OfflineCharges = api;
})(typeof self !== "undefined" ? self : this);
