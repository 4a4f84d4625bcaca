// Errors are announced (issue 17): when a submitted form comes back with messages, the focus
// moves to them, so a screen reader reads them and a keyboard user starts from there. The
// form-wide message (role=alert) when there is one, else the first field in error (its label
// and the message it is described by are read). On a page load (a form posted without htmx)
// and after an htmx request that is not a GET (searches that update as you type keep the focus
// where the customer is typing).
(function () {
  function focusFirstError(root) {
    var summary = root.querySelector(".form-error");
    var target = summary || root.querySelector("[aria-invalid='true']");
    if (!target) return;
    if (target === summary && !summary.hasAttribute("tabindex")) summary.setAttribute("tabindex", "-1");
    target.focus();
  }
  document.addEventListener("DOMContentLoaded", function () {
    var main = document.getElementById("main");
    if (main) focusFirstError(main);
  });
  document.addEventListener("htmx:afterSettle", function (e) {
    var config = e.detail && e.detail.requestConfig;
    if (!config || config.verb === "get") return;
    var root = e.detail.target && e.detail.target.isConnected ? e.detail.target : document.getElementById("main");
    if (root) focusFirstError(root);
  });
})();
