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
      if (state.version === version) { return; }
      version = state.version;
      fill(document.getElementById("board-called"), state.called, function (n) { return li(n); });
      fill(document.getElementById("board-waiting"), state.waiting, function (t) { return li(t.number, t.priority ? "priority" : ""); });
      document.getElementById("board-count").textContent = state.waiting_count;
    }).catch(function () {
      document.getElementById("board-offline").hidden = false;
    }).then(function () { setTimeout(tick, every); });
  }
  setInterval(function () {
    document.getElementById("board-clock").textContent = new Date().toLocaleTimeString("vi-VN", {hour: "2-digit", minute: "2-digit"});
  }, 1000);
  setTimeout(tick, every);
})();
