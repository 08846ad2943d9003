// Approver performance: each person's response time (dispatched -> completed) as
// p50 / p90 / p95, their completed and open work, per workflow or overall.

import { api } from "../api.js";
import { chartBox } from "../charts.js";
import {
  card, el, empty, fmtHours, fmtInt, num, select, SIMULATE_HINT, table, words,
} from "../dom.js";

const TICKS = new Set([0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]);

export default {
  title: "Approvers",
  minInterval: 10000,
  async load({ query }) {
    const workflow = query.get("workflow") || "";
    const [report, { workflows }, { people }] = await Promise.all([
      api("/insights/approvers", { query: { workflow } }), api("/workflows"), api("/people")]);
    return { report, workflows, people, workflow };
  },
  view(root, { report, workflows, people, workflow }, _params, ui) {
    const names = Object.fromEntries(people.map((p) => [p.person, p.name || p.person]));
    const pick = select([["", "All workflows"], ...workflows.map((w) => [w.workflow_id, words(w.workflow_id)])],
      workflow, (v) => ui.go("approvers", "", v ? { workflow: v } : {}), { "aria-label": "Workflow" });
    root.append(el("div", { class: "section-head" }, el("h1", {}, "Approver performance"), pick));
    // Connected systems (the send_signals permission) report what customers did: their
    // "response time" is the customer's, not an approver's.
    const systems = new Set(people.filter((p) => p.permissions.includes("send_signals")).map((p) => p.person));
    const rows = report.approvers.filter((a) => (a.completed > 0 || a.open > 0) && !systems.has(a.person));
    if (!rows.length) {
      root.append(empty("Nobody has completed any work here yet.", SIMULATE_HINT));
      return;
    }
    const box = chartBox(Math.max(220, 40 * rows.length + 70), "Response time percentiles per person");
    const label = (a) => `${names[a.person] || a.person} (${a.role || "?"})`;
    ui.chart(box.canvas, {
      type: "bar",
      data: {
        labels: rows.map(label),
        datasets: [
          { label: "p50", data: rows.map((a) => a.p50_hours), backgroundColor: "#4c78a8" },
          { label: "p90", data: rows.map((a) => a.p90_hours), backgroundColor: "#f58518" },
          { label: "p95", data: rows.map((a) => a.p95_hours), backgroundColor: "#e45756" },
        ],
      },
      options: {
        indexAxis: "y",
        scales: { x: { type: "logarithmic", title: { display: true, text: "hours from dispatch to completion (log scale)" },
          ticks: { maxRotation: 0, callback: (v) => (TICKS.has(Number(v)) ? `${Number(v)} h` : "") } } },
        plugins: {
          legend: { position: "bottom" },
          tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${fmtHours(c.raw)}` } },
        },
      },
    });
    const tableRows = rows.map((a) => ({
      cells: [names[a.person] || a.person, a.role || "–", num(fmtInt(a.completed)), num(fmtInt(a.open)),
        num(fmtHours(a.p50_hours)), num(fmtHours(a.p90_hours)), num(fmtHours(a.p95_hours)),
        num(fmtHours(a.oldest_open_hours)),
        Object.entries(a.tasks).slice(0, 3).map(([t, n]) => `${t} ${fmtInt(n)}`).join(", ")],
    }));
    root.append(
      card("Response time per person", "Dispatched → completed: the time work was in front of them. " +
        "E-signature and billing callbacks are left out (their time is the customer's).", box.box),
      card("In numbers", "Open: started by them and not finished.",
        table(["Person", "Role", { label: "Done", num: true }, { label: "Open", num: true },
          { label: "p50", num: true }, { label: "p90", num: true }, { label: "p95", num: true },
          { label: "Oldest open", num: true }, "Most done"], tableRows)));
  },
};
