// caseloop report: draws every <canvas data-chart="ID"> from the Chart.js
// configuration in <script type="application/json" id="ID">. Nothing is fetched:
// the page works opened from disk (file://). Chart.js is assets/chartjs/.
(function () {
  "use strict";

  function draw() {
    if (typeof Chart === "undefined") {
      document.documentElement.classList.add("no-charts");
      return;
    }
    Chart.defaults.animation = false;          // a report is read, not watched
    Chart.defaults.maintainAspectRatio = false; // the container sets the height
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var source = document.getElementById(canvas.dataset.chart);
      if (!source) {
        return;
      }
      canvas.chart = new Chart(canvas, JSON.parse(source.textContent));
      canvas.dataset.drawn = "true";
    });
    document.documentElement.dataset.charts = "drawn";
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
