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
  // The secret picker: insert {{{NAME}}} at the cursor of the webhook JSON and declare NAME in
  // "secrets", in the page; without JavaScript the button asks the server to declare it.
  function secretPicker() {
    document.querySelectorAll("[data-insert-secret]").forEach(function (button) {
      button.addEventListener("click", function (event) {
        var select = document.getElementById(button.getAttribute("data-insert-secret"));
        var area = document.getElementById("spec");
        if (!select || !area) { return; }
        event.preventDefault();
        var name = select.value, tag = "{{{" + name + "}}}";
        var start = area.selectionStart, end = area.selectionEnd;
        area.value = area.value.slice(0, start) + tag + area.value.slice(end);
        try {
          var spec = JSON.parse(area.value);
          if (spec && typeof spec === "object" && !Array.isArray(spec)) {
            spec.secrets = Array.isArray(spec.secrets) ? spec.secrets : [];
            if (spec.secrets.indexOf(name) < 0) { spec.secrets.push(name); }
            area.value = JSON.stringify(spec, null, 2);
          }
        } catch (ignored) { /* the cursor was outside a string: the server reports the JSON */ }
        area.focus();
      });
    });
  }
  // Live run logs: the server's run stream (Server-Sent Events) pings for each new run and
  // htmx fetches the run table again ("logic-run"); a slow poll stays behind it.
  function liveRuns() {
    var runs = document.querySelector("[data-stream]");
    if (!runs || !window.EventSource) { return; }
    var stream = new EventSource(runs.getAttribute("data-stream"));
    stream.addEventListener("run", function () { document.body.dispatchEvent(new Event("logic-run")); });
    window.addEventListener("pagehide", function () { stream.close(); });
  }
  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document); autoSwitch(); secretPicker(); liveRuns();
  });
  document.addEventListener("htmx:afterSwap", function (event) { localTimes(event.target); });
})();
