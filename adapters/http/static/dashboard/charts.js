// Chart.js (vendored UMD build, loaded by index.html as window.Chart) with the
// dashboard's defaults: no animation (a live refresh redraws at once, and a chart is
// complete the moment it is made), one colour per workflow on every page.

import { el, fmtHours } from "./dom.js";

const Chart = window.Chart;
const live = new Set();

export const WORKFLOW_COLORS = {
  "lead-qualification": "#4c78a8",
  "deal-approval-gate": "#f58518",
  "contract-processing": "#54a24b",
  "pricing-exception": "#b279a2",
  "revenue-recognition": "#2a9d8f",
};
const SPARE = ["#9d755d", "#bab0ac", "#e45756", "#eeca3b", "#72b7b2"];
export const STATE_COLORS = {
  active: "#4c78a8", completed: "#54a24b", cancelled: "#bab0ac", failed: "#e45756",
};
export const RED = "#d62728";
export const AMBER = "#e6a700";
export const GREEN = "#3b8b3b";

export function colorOf(workflowId, i = 0) {
  return WORKFLOW_COLORS[workflowId] || SPARE[i % SPARE.length];
}

if (Chart) {
  Chart.defaults.animation = false;
  Chart.defaults.responsive = true;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.font.size = 12;
  Chart.defaults.color = "#3b4455";
  Chart.defaults.plugins.legend.labels.boxWidth = 12;
}

// A canvas in a box of fixed height (Chart.js sizes itself to its parent); the chart
// is drawn once the box is in the page.
export function chartBox(height = 260, label = "chart") {
  const canvas = el("canvas", { role: "img", "aria-label": label });
  const box = el("div", { class: "chart" }, canvas);
  box.style.height = `${height}px`; // CSSOM: the page's CSP refuses style attributes
  return { box, canvas };
}

export function draw(canvas, config) {
  if (!Chart) throw new Error("Chart.js did not load (/static/vendor/chartjs/chart.umd.min.js)");
  const c = new Chart(canvas, config);
  live.add(c);
  return c;
}

export function destroyAll() {
  for (const c of live) c.destroy();
  live.clear();
}

// A vertical dashed line at `value` hours on a histogram whose category axis has one
// bar per bin of `edges`; past the last bin it stands at the right edge with an arrow.
export const sloLine = {
  id: "sloLine",
  afterDatasetsDraw(chart, _args, opts) {
    const { value, edges } = opts || {};
    if (value === null || value === undefined || !edges || edges.length < 2) return;
    const x = chart.scales.x;
    const area = chart.chartArea;
    const n = edges.length - 1;
    const centre = (i) => x.getPixelForValue(i);
    const half = n > 1 ? (centre(1) - centre(0)) / 2 : (area.right - area.left) / 2;
    let px;
    let beyond = false;
    if (value >= edges[n]) {
      px = centre(n - 1) + half;
      beyond = value > edges[n];
    } else {
      let i = 0;
      while (i < n - 1 && value >= edges[i + 1]) i += 1;
      px = centre(i) - half + ((value - edges[i]) / (edges[i + 1] - edges[i])) * 2 * half;
    }
    const ctx = chart.ctx;
    ctx.save();
    ctx.strokeStyle = RED;
    ctx.lineWidth = 2;
    ctx.setLineDash([6, 4]);
    ctx.beginPath();
    ctx.moveTo(px, area.top);
    ctx.lineTo(px, area.bottom);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = RED;
    ctx.font = `600 12px ${Chart.defaults.font.family}`;
    const text = `SLO ${fmtHours(value)}${beyond ? " →" : ""}`;
    const w = ctx.measureText(text).width;
    const tx = px + 6 + w > area.right ? px - 6 - w : px + 6;
    ctx.fillText(text, tx, area.top + 12);
    ctx.restore();
  },
};

export const hoursTick = (v) => fmtHours(v);
