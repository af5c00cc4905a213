// Study page: a click on a series thumbnail opens its viewer; the slider or the mouse wheel scrolls
// through the instances; the window preset re-renders the image.
(function () {
  "use strict";
  function show(seriesId) {
    document.querySelectorAll(".pacs-viewer").forEach(function (v) { v.hidden = v.dataset.series !== seriesId; });
  }
  document.querySelectorAll(".pacs-thumb").forEach(function (thumb) {
    thumb.addEventListener("click", function () { show(thumb.dataset.series); });
  });
  document.querySelectorAll(".pacs-viewer").forEach(function (viewer) {
    var img = viewer.querySelector(".pacs-frame");
    var urls = JSON.parse(img.dataset.urls);
    var slider = viewer.querySelector(".pacs-slider");
    var preset = viewer.querySelector(".pacs-preset");
    var position = viewer.querySelector(".pacs-position");
    function draw() {
      var url = urls[Number(slider.value)];
      img.src = preset.value ? url + "&preset=" + encodeURIComponent(preset.value) : url;
      position.textContent = (Number(slider.value) + 1) + " / " + urls.length;
    }
    slider.addEventListener("input", draw);
    preset.addEventListener("change", draw);
    img.addEventListener("wheel", function (event) {
      event.preventDefault();
      var next = Number(slider.value) + (event.deltaY > 0 ? 1 : -1);
      slider.value = String(Math.max(0, Math.min(urls.length - 1, next)));
      draw();
    });
  });
  var first = document.querySelector(".pacs-viewer");
  if (first) { first.hidden = false; }
})();
