// The desk's card check box: while the portal has not answered, ask again every few seconds and
// replace the box when the status changes (the retry job fills the result in).
(function () {
  "use strict";
  var every = 3000, left = 400;  // about 20 minutes; the list of pending checks takes over after that
  function tick() {
    var box = document.getElementById("card-check");
    if (!box || box.dataset.status !== "pending" || left-- <= 0) { return; }
    fetch(box.dataset.url, {headers: {"Accept": "text/html"}, cache: "no-store", credentials: "same-origin"})
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
      .then(function (html) {
        var holder = document.createElement("div");
        holder.innerHTML = html;
        var fresh = holder.querySelector("#card-check");
        if (fresh && fresh.dataset.status !== box.dataset.status) { box.replaceWith(fresh); }
      })
      .catch(function () { /* the next tick tries again */ })
      .then(function () { setTimeout(tick, every); });
  }
  setTimeout(tick, every);
})();
