// Waiting-room board: ask for the state every few seconds and redraw only when it changed.
(function () {
  "use strict";
  var body = document.body, url = body.dataset.stateUrl, every = parseInt(body.dataset.pollMs, 10) || 2000;
  var version = body.dataset.version;
  function fill(list, items, render) {
    while (list.firstChild) { list.removeChild(list.firstChild); }
    items.forEach(function (item) { list.appendChild(render(item)); });
  }
  function li(text, cls) { var el = document.createElement("li"); el.textContent = text; if (cls) { el.className = cls; } return el; }
  function tick() {
    fetch(url, {headers: {"Accept": "application/json"}, cache: "no-store"}).then(function (r) {
      if (!r.ok) { throw new Error(r.status); }
      return r.json();
    }).then(function (state) {
      document.getElementById("board-offline").hidden = true;
      if (state.clock) { setClock(state.clock.now_ms, state.clock.utc_offset_minutes); }
      if (state.version === version) { return; }
      version = state.version;
      fill(document.getElementById("board-called"), state.called, function (n) { return li(n); });
      fill(document.getElementById("board-waiting"), state.waiting, function (t) { return li(t.number, t.priority ? "priority" : ""); });
      document.getElementById("board-count").textContent = state.waiting_count;
    }).catch(function () {
      document.getElementById("board-offline").hidden = false;
    }).then(function () { setTimeout(tick, every); });
  }
  // The clock shows the hospital's time (the server's, in VNHIS_TIMEZONE), not the screen's own zone:
  // each state answer brings the server's time and the zone's UTC offset, and the clock ticks on from them.
  var skew = 0, offset = 0;
  function setClock(nowMs, offsetMinutes) {
    if (isFinite(nowMs)) { skew = nowMs - Date.now(); }
    if (isFinite(offsetMinutes)) { offset = offsetMinutes; }
  }
  function two(n) { return (n < 10 ? "0" : "") + n; }
  function drawClock() {
    var local = new Date(Date.now() + skew + offset * 60000);  // read as UTC: the hospital's wall clock
    document.getElementById("board-clock").textContent = two(local.getUTCHours()) + ":" + two(local.getUTCMinutes());
  }
  setClock(parseInt(body.dataset.nowMs, 10), parseInt(body.dataset.utcOffsetMinutes, 10));
  setInterval(drawClock, 1000);
  setTimeout(tick, every);
})();
