// Bottlenecks: at each AND-join, which branch decided the wait and how much it added
// (the Analyze stage, with intervals and confidences), and the open work most likely
// to breach its SLO.

import { api } from "../api.js";
import { chartBox, colorOf, RED } from "../charts.js";
import {
  badge, card, caseLink, el, empty, fmtHours, fmtInt, fmtPct, num, SIMULATE_HINT, table, words,
} from "../dom.js";

const MIN_WAIT_HOURS = 0.25;
const interval = (e, f) => (e ? `${f(e.value)} (90 % interval ${f(e.low)}–${f(e.high)})` : "–");

export default {
  title: "Bottlenecks",
  loadingText: "Analysing each workflow's history (the first look takes a few seconds)…",
  minInterval: 30000, // an analysis per workflow: not on every append
  async load() {
    const { workflows } = await api("/workflows");
    const analyses = await Promise.all(workflows.map((w) =>
      api(`/workflows/${encodeURIComponent(w.workflow_id)}/mape-k/analysis`)));
    return { analyses };
  },
  view(root, { analyses }, _params, ui) {
    root.append(el("h1", {}, "Bottlenecks"));
    if (!analyses.some((a) => a.stamp.observations > 0)) {
      root.append(empty("No work observed yet.", SIMULATE_HINT));
      return;
    }
    // A join whose median wait is a few minutes is bookkeeping (automatic steps enabled
    // together), not a bottleneck a RevOps lead can act on: counted, not drawn.
    const all = analyses.flatMap((a) => a.bottlenecks);
    const joins = all.filter((j) => j.wait_hours && j.wait_hours.value >= MIN_WAIT_HOURS)
      .sort((a, b) => b.wait_hours.value - a.wait_hours.value);
    root.append(el("p", { class: "sub" }, "Where parallel work meets (an AND-join), the branch that closes last decides " +
      "when the case moves on. Longest waits first" +
      (all.length > joins.length ? `; ${all.length - joins.length} joins with a median wait under ${MIN_WAIT_HOURS * 60} min are left out.` : ".")));
    if (!joins.length) {
      root.append(empty("No parallel work has waited long at a join: nothing waits on a slowest branch."));
    }
    const grid = el("div", { class: "grid two" });
    for (const j of joins) {
      const box = chartBox(70 + 36 * j.by_task.length, `Join wait of ${j.tasks.join(", ")}`);
      ui.chart(box.canvas, {
        type: "bar",
        data: {
          labels: j.by_task.map((t) => t.task),
          datasets: [{
            label: "share of joins it decided (closed last)",
            data: j.by_task.map((t) => 100 * t.share.value),
            backgroundColor: j.by_task.map((t) => (t.task === j.bottleneck ? RED : colorOf(j.workflow))),
          }],
        },
        options: {
          indexAxis: "y",
          scales: { x: { min: 0, max: 100, title: { display: true, text: "% of joins this branch closed last" } } },
          plugins: { legend: { display: false } },
        },
      });
      const rows = j.by_task.map((t) => ({
        cells: [t.task, num(fmtInt(t.decided)), num(fmtPct(t.share.value)),
          num(t.share.confidence === null ? "–" : fmtPct(t.share.confidence, 0)),
          num(t.extra_wait_hours ? fmtHours(t.extra_wait_hours.value) : "–")],
      }));
      const head = j.bottleneck
        ? el("p", { class: "finding" }, badge("bottleneck", "bad"), " ", el("strong", {}, j.bottleneck),
          ` decides most of these joins; waiting for it adds ${fmtHours((j.by_task.find((t) => t.task === j.bottleneck) || {}).extra_wait_hours?.value)} after the other branches are done.`)
        : el("p", { class: "finding muted" }, "No branch stands out with confidence yet.");
      grid.append(card(`${words(j.workflow)}: ${j.tasks.join(" + ")}`,
        `${fmtInt(j.n)} joins · median wait ${interval(j.wait_hours, fmtHours)}`,
        head, box.box,
        table(["Branch", { label: "Decided", num: true }, { label: "Share", num: true },
          { label: "Confidence", num: true }, { label: "Adds (median)", num: true }], rows)));
    }
    root.append(grid);

    const late = analyses.flatMap((a) => a.slo).filter((t) => t.open_over_target > 0)
      .sort((a, b) => b.open_over_target - a.open_over_target);
    const timing = analyses.flatMap((a) => a.dispatch).filter((d) => d.claimed && d.hours_saved > 0)
      .sort((a, b) => b.hours_saved - a.hours_saved);
    root.append(el("div", { class: "stack" },
      card("Open work already past its target", "Per task: items still open beyond the SLO target.",
        late.length ? table(["Task", "Workflow", "Target", { label: "Open", num: true },
          { label: "Past target", num: true }, { label: "p90 when done", num: true }],
        late.map((t) => ({
          cells: [t.task, words(t.workflow), fmtHours(t.target_hours), num(fmtInt(t.open)),
            num(el("strong", { class: "bad" }, fmtInt(t.open_over_target))), num(fmtHours(t.p90_hours))],
        }))) : empty("No open work is past its target.")),
      card("When work is sent matters", "Tasks answered faster when dispatched at a certain local hour (claimed at ≥ 80 % confidence).",
        timing.length ? table(["Task", "Workflow", { label: "Best hour", num: true },
          { label: "Time vs other hours", num: true }, { label: "Saved vs other hours", num: true }, { label: "Items", num: true }],
        timing.map((d) => ({
          cells: [d.task, words(d.workflow), num(`${String(d.best_hour).padStart(2, "0")}:00`),
            num(d.effect ? fmtPct(d.effect.value, 0) : "–"),
            num(fmtHours(d.hours_saved)), num(fmtInt(d.n))],
        }))) : empty("No dispatch-hour effect is clear enough to claim."))));

    const risks = analyses.flatMap((a) => a.breach_risk).sort((a, b) => b.probability - a.probability);
    const top = risks.slice(0, 15);
    root.append(card("Open work most likely to breach its SLO",
      `${fmtInt(risks.filter((r) => r.probability >= 0.5).length)} open items at 50 % or more · from each task's survival curve`,
      top.length ? table(["Case", "Workflow", "Task", "Person", { label: "Open for", num: true },
        { label: "Target", num: true }, { label: "P(breach)", num: true }],
      top.map((r) => ({
        cells: [caseLink(r.case_id), words(r.workflow), r.task, r.person || "unassigned",
          num(fmtHours(r.elapsed_hours)), num(fmtHours(r.target_hours)),
          num(el("strong", { class: r.probability >= 0.5 ? "bad" : "" }, fmtPct(r.probability, 0)))],
      }))) : empty("No open work is still inside its target with a measurable risk.",
        "Items already past their target are counted above.")));
  },
};
