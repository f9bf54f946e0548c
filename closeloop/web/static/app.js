// The dashboard's own script: draws every Vega-Lite chart on the page (and in content htmx
// swaps in) with the vendored vega-embed, and sends the CSRF token with fetch-style requests.
(function () {
  "use strict";

  function drawCharts(root) {
    if (typeof window.vegaEmbed !== "function") {
      return;
    }
    root.querySelectorAll("[data-vega-spec]").forEach(function (element) {
      if (element.dataset.drawn === "yes") {
        return;
      }
      var source = document.getElementById(element.dataset.vegaSpec);
      if (!source) {
        return;
      }
      element.dataset.drawn = "yes";
      var spec = JSON.parse(source.textContent);
      window
        .vegaEmbed(element, spec, { actions: false, renderer: "svg" })
        .then(function () {
          element.dataset.rendered = "yes";
        })
        .catch(function (error) {
          element.dataset.rendered = "failed";
          element.textContent = "The chart could not be drawn: " + error.message;
        });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawCharts(document);
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    drawCharts(event.target || document);
  });

  // The session's CSRF token, for scripts that post without a form or htmx.
  window.closeloopCsrfToken = function () {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  };
})();
