// SLO compliance per workflow (time a case spends in it) and per task (offered ->
// completed), against slos.yaml, over a chosen time range.

import { api } from "../api.js";
import { AMBER, chartBox, GREEN, RED } from "../charts.js";
import {
  badge, card, el, empty, fmtHours, fmtInt, fmtPercent, num, select, SIMULATE_HINT, table, words,
} from "../dom.js";

const RANGES = [["24h", "Last 24 hours"], ["7d", "Last 7 days"], ["30d", "Last 30 days"], ["365d", "Last year"]];

function verdict(percent, target) {
  if (percent === null || percent === undefined) return badge("no data", "muted");
  if (percent >= target) return badge("meets", "good");
  return percent >= target - 10 ? badge("below", "warn") : badge("far below", "bad");
}

export default {
  title: "SLOs",
  minInterval: 5000,
  async load({ query }) {
    const range = RANGES.some(([k]) => k === query.get("range")) ? query.get("range") : "30d";
    const [{ workflows }, { slo_goals: goals }] = await Promise.all([api("/workflows"), api("/insights/cycle-times")]);
    const metrics = await Promise.all(workflows.map((w) =>
      api(`/workflows/${encodeURIComponent(w.workflow_id)}/metrics`, { query: { time_range: range } })));
    return { range, metrics, goals };
  },
  view(root, { range, metrics, goals }, _params, ui) {
    root.append(el("div", { class: "section-head" }, el("h1", {}, "SLO compliance"),
      select(RANGES, range, (v) => ui.go("slo", "", { range: v }), { "aria-label": "Time range" })));
    if (!metrics.some((m) => m.metrics.cases_created > 0)) {
      root.append(empty("No cases entered any workflow in this range.", SIMULATE_HINT));
      return;
    }
    const wfRows = metrics.map((m) => {
      const x = m.metrics;
      return {
        cells: [words(m.workflow_id), x.slo_target_hours === null ? "–" : fmtHours(x.slo_target_hours),
          num(fmtInt(x.cases_created)), num(fmtInt(x.cases_completed)), num(fmtInt(x.cases_active)),
          num(fmtHours(x.avg_duration_hours)), num(fmtHours(x.p95_duration_hours)),
          num(fmtPercent(x.slo_compliance_percent)), num(fmtPercent(goals[m.workflow_id], 0)),
          x.slo_target_hours === null ? "" : verdict(x.slo_compliance_percent, goals[m.workflow_id] ?? 0)],
      };
    });
    root.append(card("Per workflow", "Time from entering a workflow to leaving it, for cases that entered in the range.",
      table(["Workflow", "SLO target", { label: "Entered", num: true }, { label: "Completed", num: true },
        { label: "Active", num: true }, { label: "Mean", num: true }, { label: "p95", num: true },
        { label: "Within SLO", num: true }, { label: "Goal", num: true }, ""], wfRows)));

    const tasks = metrics.flatMap((m) => m.tasks.map((t) => ({ ...t, workflow_id: m.workflow_id })));
    if (!tasks.length) {
      root.append(empty("No task has an SLO (specs/slos.yaml, `tasks:`)."));
      return;
    }
    const tone = (p, goal) => (p === null ? "#bab0ac" : p >= goal ? GREEN : p >= goal - 10 ? AMBER : RED);
    const complianceChart = (labels, values, goals, label) => {
      const box = chartBox(Math.max(180, 34 * labels.length + 50), label);
      ui.chart(box.canvas, {
        type: "bar",
        data: {
          labels,
          datasets: [
            { label: "within target", data: values, backgroundColor: values.map((v, i) => tone(v, goals[i])) },
            { label: "goal", data: goals, backgroundColor: "rgba(59,68,85,0.16)" },
          ],
        },
        options: {
          indexAxis: "y",
          scales: { x: { min: 0, max: 100, ticks: { callback: (v) => `${v} %` } } },
          plugins: {
            legend: { display: false },
            tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${fmtPercent(c.raw)}` } },
          },
        },
      });
      return box.box;
    };
    const key = el("p", { class: "facts" }, "Coloured bar: share within the target (green: meets the goal; amber: " +
      "within 10 points; red: further below). Grey bar: the goal from slos.yaml.");
    const withSlo = metrics.filter((m) => m.metrics.slo_target_hours !== null);
    root.append(el("div", { class: "grid two" },
      card("Per workflow", "Completed stays within the workflow's target.",
        complianceChart(withSlo.map((m) => `${words(m.workflow_id)} (${fmtHours(m.metrics.slo_target_hours)})`),
          withSlo.map((m) => m.metrics.slo_compliance_percent),
          withSlo.map((m) => goals[m.workflow_id] ?? null), "Workflow SLO compliance"), key),
      card("Per task", "Work items completed within the task's target (offered → completed).",
        complianceChart(tasks.map((t) => `${t.task} (${fmtHours(t.target_hours)})`),
          tasks.map((t) => t.compliance_percent), tasks.map((t) => t.compliance_target_percent),
          "Task SLO compliance"), key.cloneNode(true))));
    const rows = tasks.map((t) => ({
      cells: [el("strong", {}, t.task), words(t.workflow_id), fmtHours(t.target_hours), num(fmtInt(t.completed)),
        num(fmtPercent(t.compliance_percent)), num(fmtPercent(t.compliance_target_percent, 0)),
        verdict(t.compliance_percent, t.compliance_target_percent), num(fmtHours(t.p95_hours)),
        num(fmtInt(t.open)), num(fmtInt(t.open_past_target)), num(fmtInt(t.breaches))],
    }));
    root.append(card("Per task, in numbers", "Breaches: alerts raised past the alert threshold, in the range.",
      table(["Task", "Workflow", "Target", { label: "Completed", num: true }, { label: "Within target", num: true },
        { label: "Goal", num: true }, "", { label: "p95", num: true }, { label: "Open", num: true },
        { label: "Open past target", num: true }, { label: "Breaches", num: true }], rows)));
  },
};
