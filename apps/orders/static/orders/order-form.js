// The order form: the fields a download order does without (recipient's name and
// address, copies) are hidden while "image download" is chosen. Part of the
// imager service (GPL-3.0-or-later); served by the project, no dependency.
(function () {
  "use strict";
  var form = document.getElementById("order-form");
  if (!form) {
    return;
  }
  var cardOnly = form.querySelectorAll("[data-card-only]");
  function update() {
    var kind = form.querySelector("input[name=kind]:checked");
    var download = kind !== null && kind.value === "download";
    cardOnly.forEach(function (part) {
      part.hidden = download;
    });
    if (download) {
      form.querySelector("input[name=quantity]").value = "1";
    }
  }
  form.addEventListener("change", function (event) {
    if (event.target.name === "kind") {
      update();
    }
  });
  update();
})();
