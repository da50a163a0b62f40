// Refreshes the live part of the fleet page without a reload: every few
// seconds fetch "?part=live" (revalidated by ETag, so an unchanged fleet
// costs a 304) and swap it in only when it changed.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live) { return; }
  var every = parseInt(live.getAttribute("data-refresh"), 10) || 5000;
  var last = null;
  function stale(on) {
    var s = document.getElementById("stale");
    if (s) { s.hidden = !on; }
  }
  function tick() {
    fetch("?part=live", {credentials: "same-origin", cache: "no-cache"}).then(function (r) {
      if (r.status === 401) { window.location.reload(); return null; }
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.text();
    }).then(function (html) {
      if (html === null) { return; }
      if (html !== last) {
        last = html;
        live.innerHTML = html;
      }
      stale(false);
    }).catch(function () { stale(true); }).then(function () {
      setTimeout(tick, every);
    });
  }
  setTimeout(tick, every);
})();
