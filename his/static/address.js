// Registration form: choosing a province fills the ward/commune list from /api/v1/geo (same session).
(function () {
  "use strict";
  var province = document.getElementById("province_code"), ward = document.getElementById("ward_code");
  if (!province || !ward) { return; }
  function load() {
    var keep = ward.dataset.selected;
    while (ward.options.length > 1) { ward.remove(1); }
    if (!province.value) { return; }
    fetch(province.dataset.wardsUrl.replace("CODE", encodeURIComponent(province.value)), {headers: {"Accept": "application/json"}})
      .then(function (r) { return r.ok ? r.json() : []; })
      .then(function (body) {
        (Array.isArray(body) ? body : []).forEach(function (w) {
          var option = new Option(w.name, w.code, false, w.code === keep);
          ward.add(option);
        });
      });
  }
  province.addEventListener("change", function () { ward.dataset.selected = ""; load(); });
  load();
})();
