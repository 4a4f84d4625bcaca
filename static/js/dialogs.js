// In-page confirmations (templates/returns/partials/_confirm.html): a button with
// data-open-dialog="<id>" opens that <dialog> as a modal; a button with data-close-dialog
// closes the dialog it is in. Delegated from the document, so it keeps working on content
// htmx swaps in.
(function () {
  document.addEventListener("click", function (e) {
    var opener = e.target.closest("[data-open-dialog]");
    if (opener) {
      var dialog = document.getElementById(opener.getAttribute("data-open-dialog"));
      if (dialog && !dialog.open) dialog.showModal();
      return;
    }
    var closer = e.target.closest("[data-close-dialog]");
    if (closer && closer.closest("dialog")) closer.closest("dialog").close();
  });
})();
