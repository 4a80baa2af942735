// Remediator console: optional enhancements, the pages work without them.
// 1. Times: every <time data-epoch> is shown in the viewer's timezone.
// 2. Forms with data-confirm ask before they act.
"use strict";
(function () {
  var format = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
    timeZoneName: "short"
  });
  function localTimes(root) {
    root.querySelectorAll("time[data-epoch]").forEach(function (node) {
      var epoch = Number(node.getAttribute("data-epoch"));
      if (!isFinite(epoch)) { return; }
      node.title = node.textContent;  // the UTC text stays at hand
      node.textContent = format.format(new Date(epoch * 1000));
    });
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    root.querySelectorAll(".tz").forEach(function (node) { node.textContent = zone; });
  }
  function confirmations(root) {
    root.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    confirmations(document);
  });
})();
