// Signature pad for the counter tablet: draw with a finger or stylus (pointer events),
// and on submit put the drawing into the hidden field as a PNG data URL.
(function () {
  function setUp(root) {
    root.querySelectorAll("form.signature-form").forEach(function (form) {
      if (form.dataset.ready) return;
      form.dataset.ready = "1";
      var canvas = form.querySelector("canvas.signature-pad");
      var field = form.querySelector("input[name=signature]");
      var ctx = canvas.getContext("2d");
      var drawing = false, drawn = false;
      ctx.lineWidth = 3; ctx.lineCap = "round"; ctx.strokeStyle = "#111";
      function point(e) {
        var r = canvas.getBoundingClientRect();
        return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
      }
      canvas.addEventListener("pointerdown", function (e) {
        drawing = true; canvas.setPointerCapture(e.pointerId);
        var p = point(e); ctx.beginPath(); ctx.moveTo(p[0], p[1]); e.preventDefault();
      });
      canvas.addEventListener("pointermove", function (e) {
        if (!drawing) return;
        var p = point(e); ctx.lineTo(p[0], p[1]); ctx.stroke(); drawn = true; e.preventDefault();
      });
      ["pointerup", "pointercancel", "pointerleave"].forEach(function (t) {
        canvas.addEventListener(t, function () { drawing = false; });
      });
      form.querySelector("[data-clear-signature]").addEventListener("click", function () {
        ctx.clearRect(0, 0, canvas.width, canvas.height); drawn = false; field.value = "";
      });
      // Fill the field before htmx (or the browser) collects the form's values.
      form.addEventListener("submit", function () {
        field.value = drawn ? canvas.toDataURL("image/png") : "";
      }, true);
      form.addEventListener("htmx:configRequest", function (e) {
        e.detail.parameters.set ? e.detail.parameters.set("signature", field.value)
                                : (e.detail.parameters.signature = field.value);
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { setUp(document); });
  document.addEventListener("htmx:load", function (e) { setUp(e.target); });
})();
