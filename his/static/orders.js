// Order screens: drug-code suggestions from the catalogue API while typing, and "Use" buttons that
// put a searched drug into the first empty prescription row. The form works without this script.
(function () {
  "use strict";
  var list = document.getElementById("drug-codes");
  var timer = null;

  function suggest(text) {
    if (!list || text.length < 2) { return; }
    fetch("/api/v1/catalog/drugs?per_page=15&q=" + encodeURIComponent(text), {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : {items: []}; })
      .then(function (body) {
        list.textContent = "";
        body.items.forEach(function (d) {
          var option = document.createElement("option");
          option.value = d.code;
          option.label = d.active_ingredient + " " + (d.strength || "") + " · " + d.unit;
          list.appendChild(option);
        });
      })
      .catch(function () { /* suggestions are a convenience: typing the code still works */ });
  }

  document.querySelectorAll("input.drug-code").forEach(function (input) {
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { suggest(input.value.trim()); }, 200);
    });
  });

  document.querySelectorAll("button.use-drug").forEach(function (button) {
    button.addEventListener("click", function () {
      var empty = Array.prototype.find.call(document.querySelectorAll("input.drug-code"),
                                            function (i) { return !i.value.trim(); });
      if (empty) {
        empty.value = button.dataset.code;
        var dose = document.getElementById(empty.id.replace("-code", "-dose"));
        if (dose) { dose.focus(); }
      }
    });
  });
})();
