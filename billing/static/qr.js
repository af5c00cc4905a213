// The QR page asks every 2 seconds whether the bank's notification has arrived, and shows "paid"
// in place (no reload). Polling rather than SSE: one short request per cashier screen is cheap and
// works through every proxy.
(function () {
  var card = document.getElementById("qr-card");
  if (!card) { return; }
  var url = card.getAttribute("data-status-url");
  function check() {
    fetch(url, {headers: {"Accept": "application/json"}, credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (data && data.status === "paid") {
          var status = document.getElementById("qr-status");
          status.textContent = card.getAttribute("data-paid-text");
          status.setAttribute("data-status", "paid");
          var image = document.getElementById("qr-image");
          if (image) { image.hidden = true; }
          document.getElementById("qr-paid").hidden = false;
        } else {
          setTimeout(check, 2000);
        }
      })
      .catch(function () { setTimeout(check, 4000); });
  }
  if (document.getElementById("qr-status").getAttribute("data-status") !== "paid") { setTimeout(check, 2000); }
})();
