// Pipeline overview: the funnel in numbers, cases by workflow and state, where active
// cases wait (open work by task), arrivals and completions over time, and the time
// cases spend in each workflow against its SLO.

import { api } from "../api.js";
import { chartBox, colorOf, hoursTick, sloLine, STATE_COLORS } from "../charts.js";
import {
  card, el, empty, fmtDay, fmtHours, fmtInt, fmtMoney, fmtPct, fmtPercent, kpi,
  select, SIMULATE_HINT, words,
} from "../dom.js";

const RANGES = {
  daily: { label: "Daily, all history", query: { bucket: "day" } },
  hourly: { label: "Hourly, last 7 days", query: { bucket: "hour", days: 7 } },
  weekly: { label: "Weekly, all history", query: { bucket: "week" } },
};

export default {
  title: "Overview",
  minInterval: 5000, // four queries over every phase: at most every few seconds
  async load({ query }) {
    const range = RANGES[query.get("range")] ? query.get("range") : "daily";
    const [stats, stages, flow, cycles] = await Promise.all([
      api("/stats"), api("/insights/stages"), api("/insights/flow", { query: RANGES[range].query }),
      api("/insights/cycle-times"),
    ]);
    return { stats, stages, flow, cycles, range };
  },
  view(root, { stats, stages, flow, cycles, range }, _params, ui) {
    const c = stats.conversion;
    const active = stats.workflows.reduce((s, w) => s + w.active, 0);
    const total = stats.workflows.reduce((s, w) => s + w.active + w.completed + w.cancelled + w.failed, 0);
    root.append(el("h1", {}, "Pipeline overview"));
    if (total === 0) {
      root.append(empty("No cases yet.", SIMULATE_HINT));
      return;
    }
    root.append(el("div", { class: "kpis" },
      kpi("Leads", fmtInt(c.leads), `${fmtInt(c.leads_qualified)} qualified`),
      kpi("Lead → deal", fmtPercent(c.lead_to_deal_percent), `${fmtInt(c.deals)} deals`),
      kpi("Deals approved", fmtInt(c.deals_approved)),
      kpi("Revenue booked", fmtInt(c.deals_booked), `${fmtPercent(c.deal_to_booked_percent)} of deals`),
      kpi("Booked ACV", fmtMoney(c.booked_acv)),
      kpi("Active cases", fmtInt(active), "across all workflows")));

    // Cases by workflow and state
    const states = ["active", "completed", "cancelled", "failed"];
    const byState = chartBox(220, "Cases by workflow and state");
    ui.chart(byState.canvas, {
      type: "bar",
      data: {
        labels: stats.workflows.map((w) => words(w.workflow_id)),
        datasets: states.map((s) => ({
          label: s, data: stats.workflows.map((w) => w[s]), backgroundColor: STATE_COLORS[s],
        })),
      },
      options: {
        indexAxis: "y",
        scales: { x: { stacked: true, title: { display: true, text: "cases" } }, y: { stacked: true } },
        plugins: { legend: { position: "bottom" } },
      },
    });

    // Where active cases wait: one group of rows per workflow, its active cases in the head
    const maxItems = Math.max(1, ...stages.stages.map((s) => s.items));
    const activeIn = Object.fromEntries(stats.workflows.map((w) => [w.workflow_id, w.active]));
    const body = el("tbody", {});
    let group = null;
    for (const s of stages.stages) {
      if (s.workflow_id !== group) {
        group = s.workflow_id;
        body.append(el("tr", { class: "group" }, el("th", { colspan: 3 }, words(group),
          el("span", { class: "muted" }, ` · ${fmtInt(activeIn[group] || 0)} active cases`))));
      }
      const fill = el("span", { class: "bar-fill" });
      fill.style.width = `${(100 * s.items / maxItems).toFixed(1)}%`; // CSSOM: CSP allows it
      body.append(el("tr", {}, el("td", {}, s.task),
        el("td", {}, s.kind === "human" ? "a person" : s.kind === "automatic" ? "a system" : s.kind),
        el("td", {}, el("span", { class: "inline-bar" }, fill, el("span", { class: "bar-text" }, fmtInt(s.items))))));
    }
    const stageTable = stages.stages.length
      ? el("div", { class: "table-wrap" }, el("table", { class: "stages" },
        el("thead", {}, el("tr", {}, el("th", {}, "Waiting at"), el("th", {}, "Done by"), el("th", {}, "Open items"))),
        body))
      : empty("No open work: every case is finished.");

    // The funnel: lead -> qualified -> deal -> approved -> booked
    const funnel = chartBox(200, "Pipeline funnel");
    const steps = [["Leads", c.leads], ["Qualified (to an SDR)", c.leads_qualified], ["Deals", c.deals],
      ["Deals approved", c.deals_approved], ["Revenue booked", c.deals_booked]];
    ui.chart(funnel.canvas, {
      type: "bar",
      data: { labels: steps.map(([l]) => l),
        datasets: [{ label: "cases", data: steps.map(([, n]) => n), backgroundColor: ["#4c78a8", "#5f8fbf", "#f58518", "#e49444", "#2a9d8f"] }] },
      options: {
        indexAxis: "y",
        scales: { x: { beginAtZero: true, title: { display: true, text: "cases" } } },
        plugins: { legend: { display: false },
          tooltip: { callbacks: { afterLabel: (ctx) => (ctx.dataIndex ? `${fmtPct(ctx.raw / (steps[ctx.dataIndex - 1][1] || 1))} of the step before` : "") } } },
      },
    });

    root.append(el("div", { class: "grid two" },
      el("div", { class: "stack" },
        card("Cases by workflow and state", "A deal counts in every workflow it passed through.", byState.box),
        card("Funnel", "From marketing lead to booked revenue.", funnel.box)),
      card("Where active cases wait", "Open work items by task, in the workflow each case is in now.", stageTable)));

    // Arrivals and completions over time
    const hourly = flow.bucket_seconds < 86400;
    const unit = flow.bucket_seconds >= 7 * 86400 ? "week" : hourly ? "hour" : "day";
    const labels = flow.workflows.length ? flow.workflows[0].starts.map((t) => fmtDay(t, hourly)) : [];
    const lines = (key) => flow.workflows.map((s, i) => ({
      label: words(s.workflow_id), data: s[key], borderColor: colorOf(s.workflow_id, i),
      backgroundColor: colorOf(s.workflow_id, i), pointRadius: 0, borderWidth: 2, cubicInterpolationMode: "monotone",
    }));
    const lineOptions = (what) => ({
      interaction: { mode: "index", intersect: false },
      scales: { y: { beginAtZero: true, title: { display: true, text: `${what} per ${unit}` } },
        x: { ticks: { maxTicksLimit: 10, autoSkip: true } } },
      plugins: { legend: { position: "bottom" } },
    });
    const arrivals = chartBox(260, "Arrivals over time");
    const completions = chartBox(260, "Completions over time");
    ui.chart(arrivals.canvas, { type: "line", data: { labels, datasets: lines("arrivals") }, options: lineOptions("cases entering") });
    ui.chart(completions.canvas, { type: "line", data: { labels, datasets: lines("completions") }, options: lineOptions("cases completing") });
    const rangePick = select(Object.entries(RANGES).map(([k, v]) => [k, v.label]), range,
      (v) => ui.go("overview", "", { range: v }), { "aria-label": "Time buckets" });
    root.append(el("div", { class: "section-head" }, el("h2", {}, "Arrivals and completions"), rangePick),
      el("div", { class: "grid two" },
        card("Arrivals", "Cases entering each workflow.", arrivals.box),
        card("Completions", "Cases completing each workflow.", completions.box)));

    // Cycle time per workflow, against the SLO
    root.append(el("div", { class: "section-head" }, el("h2", {}, "Time in workflow"),
      el("p", { class: "sub" }, "Completed stays, entered → left. The dashed line is the workflow's SLO target.")));
    const grid = el("div", { class: "grid three" });
    for (const [i, w] of cycles.workflows.entries()) {
      const box = chartBox(200, `Cycle time distribution of ${w.workflow_id}`);
      const edges = w.bin_edges_hours;
      ui.chart(box.canvas, {
        type: "bar",
        data: {
          labels: w.counts.map((_, j) => `${fmtHours(edges[j])}–${fmtHours(edges[j + 1])}`),
          datasets: [{ label: "cases", data: w.counts, backgroundColor: colorOf(w.workflow_id, i),
            barPercentage: 1.0, categoryPercentage: 0.95 }],
        },
        options: {
          plugins: { legend: { display: false }, sloLine: { value: w.slo_hours, edges } },
          scales: {
            x: { ticks: { maxTicksLimit: 6, callback: (_v, j) => hoursTick(edges[j]) },
              title: { display: true, text: "hours in workflow" } },
            y: { beginAtZero: true, title: { display: true, text: "cases" } },
          },
        },
        plugins: [sloLine],
      });
      const facts = [
        `p50 ${fmtHours(w.p50_hours)}`, `p90 ${fmtHours(w.p90_hours)}`, `p95 ${fmtHours(w.p95_hours)}`,
      ];
      const slo = w.slo_hours === null ? "no SLO set"
        : `${fmtPct(w.within_slo)} within ${fmtHours(w.slo_hours)}`;
      grid.append(card(words(w.workflow_id), `${fmtInt(w.closed)} completed · ${fmtInt(w.open)} open` +
        (w.open_over_slo ? ` (${fmtInt(w.open_over_slo)} past SLO)` : ""),
      box.box, el("p", { class: "facts" }, facts.join(" · "), " · ",
        el("strong", { class: w.within_slo !== null && 100 * w.within_slo < (cycles.slo_goals[w.workflow_id] ?? 0) ? "bad" : "" }, slo))));
    }
    root.append(cycles.workflows.length ? grid : empty("No completed stays yet.", SIMULATE_HINT));
  },
};
