// logic-runtime console: progressive enhancement only; every flow works without it.
// Times: shown in the browser's zone, with the UTC time on hover.
(function () {
  "use strict";
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when)) { return; }
      el.title = el.getAttribute("datetime");
      el.textContent = when.toLocaleString();
    });
  }
  // The owner switcher submits itself when changed (the button stays for keyboards without JS).
  function autoSwitch() {
    var select = document.getElementById("owner-switch");
    if (select) { select.addEventListener("change", function () { select.form.submit(); }); }
  }
  document.addEventListener("DOMContentLoaded", function () { localTimes(document); autoSwitch(); });
  document.addEventListener("htmx:afterSwap", function (event) { localTimes(event.target); });
})();
