// reconciler dashboard: follows a running run's log (the only script; the pages work without it).
// It polls /runs/ID/log?offset=N, appends the new text as text (never as HTML) and reloads the
// page once the run is final, to show its per-server results.
(function () {
  "use strict";
  var TONES = { queued: "info", running: "info", succeeded: "ok", failed: "bad",
    "timed-out": "bad", abandoned: "bad", cancelled: "muted", skipped: "muted" };
  function follow(pre) {
    var run = pre.getAttribute("data-run");
    var offset = parseInt(pre.getAttribute("data-offset"), 10) || 0;
    var polls = 0;
    function poll() {
      polls += 1;
      if (polls > 7200) { return; }  // two hours of polling at most
      fetch("/runs/" + encodeURIComponent(run) + "/log?offset=" + offset, {
        credentials: "same-origin", headers: { "Accept": "application/json" }
      }).then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.json();
      }).then(function (part) {
        if (part.text) {
          var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
          pre.appendChild(document.createTextNode(part.text));
          if (atEnd) { pre.scrollTop = pre.scrollHeight; }
        }
        var badge = document.querySelector("#run-status .badge");
        if (badge && part.status && badge.textContent !== part.status) {
          badge.textContent = part.status;
          badge.className = "badge " + (TONES[part.status] || "muted");
        }
        offset = part.next_offset;
        pre.setAttribute("data-offset", String(offset));
        if (part.final) {
          window.location.reload();
        } else {
          window.setTimeout(poll, 1000);
        }
      }).catch(function () { window.setTimeout(poll, 3000); });
    }
    window.setTimeout(poll, 1000);
  }
  document.addEventListener("DOMContentLoaded", function () {
    var pre = document.getElementById("log");
    if (pre && pre.getAttribute("data-final") === "no") { follow(pre); }
  });
})();
