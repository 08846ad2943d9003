// Cases: the newest cases with filters, and one case with its open work, its data and
// its whole history as a timeline (every event of GET /cases/{id}/history, in order).

import { api } from "../api.js";
import {
  badge, card, caseLink, el, empty, fmtHours, fmtTime, select, SIMULATE_HINT, table, words,
} from "../dom.js";

const STATE_KIND = { active: "info", completed: "good", cancelled: "muted", failed: "bad" };
const QUIET = new Set(["TaskEnabled", "TimerSet", "TaskRouted"]); // bookkeeping, shown lighter
const EVENT_NAMES = { SlaBreached: "SLA breached", SlaResolved: "SLA breach resolved", TaskRouted: "Routed" };

function openBox(ui, value = "") {
  const input = el("input", { type: "search", placeholder: "case id, e.g. sim-…-deal-00042", "aria-label": "Case id", value });
  const form = el("form", { class: "open-case" }, input, el("button", { type: "submit" }, "Open case"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (input.value.trim()) ui.go("case", input.value.trim());
  });
  return form;
}

export const caseList = {
  title: "Cases",
  async load({ query }) {
    const workflow = query.get("workflow") || "";
    const state = query.get("state") || "";
    const cursor = query.get("cursor") || "";
    const [list, { workflows }] = await Promise.all([
      api("/cases", { query: { workflow, state, cursor, limit: 50 } }), api("/workflows")]);
    return { list, workflows, workflow, state, cursor };
  },
  view(root, { list, workflows, workflow, state, cursor }, _params, ui) {
    const filters = (w, s, c) => ui.go("cases", "",
      Object.fromEntries(Object.entries({ workflow: w, state: s, cursor: c }).filter(([, v]) => v)));
    root.append(el("div", { class: "section-head" }, el("h1", {}, "Cases"),
      el("div", { class: "filters" },
        select([["", "Every workflow"], ...workflows.map((w) => [w.workflow_id, words(w.workflow_id)])], workflow,
          (v) => filters(v, state, ""), { "aria-label": "Workflow" }),
        select([["", "Any state"], ["active", "Active"], ["completed", "Completed"], ["cancelled", "Cancelled"], ["failed", "Failed"]],
          state, (v) => filters(workflow, v, ""), { "aria-label": "State" }),
        openBox(ui))));
    if (!list.cases.length) {
      root.append(empty("No cases match.", workflow || state ? "Clear the filters." : SIMULATE_HINT));
      return;
    }
    const pager = el("div", { class: "actions" },
      cursor ? el("button", { type: "button", onclick: () => filters(workflow, state, "") }, "← Newest") : null,
      list.next_cursor ? el("button", { type: "button", onclick: () => filters(workflow, state, list.next_cursor) }, "Older →") : null);
    root.append(card(cursor ? "Older cases" : "Newest first", "Cases that passed through the workflow, 50 at a time.",
      table(["Case", "Workflow now", "State", "Created", "Last change", "Closed"], list.cases.map((c) => ({
        cells: [caseLink(c.case_id), words(c.workflow_id), badge(c.state, STATE_KIND[c.state]),
          fmtTime(c.created_at), fmtTime(c.updated_at), fmtTime(c.closed_at)],
      }))), pager));
  },
};

function dataValue(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return v.toLocaleString("en-US");
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

function describe(e) {
  const bits = [];
  if (e.type === "CaseCompleted" && e.workflow_id) bits.push(`handed on to ${words(e.workflow_id)}`);
  if (e.by) bits.push(`by ${e.by}`);
  if (e.result) bits.push(`result ${e.result}`);
  if (e.due) bits.push(`due ${fmtTime(e.due)}`);
  if (e.reason) bits.push(e.reason);
  return bits.join(" · ");
}

function timeline(events) {
  const list = el("ol", { class: "timeline" });
  let prev = null;
  for (const e of events) {
    const at = new Date(e.at).getTime();
    if (e.type === "CaseCreated" || e.type === "WorkflowEntered") {
      list.append(el("li", { class: "tl-phase" }, e.type === "CaseCreated" ? "Case created in " : "Entered ",
        el("strong", {}, words(e.workflow_id || "")), ` · ${fmtTime(e.at)}`));
    }
    const gap = prev === null ? "" : at - prev >= 60000 ? `+${fmtHours((at - prev) / 3.6e6)}` : "";
    prev = at;
    const li = el("li", { class: `tl-event${QUIET.has(e.type) ? " quiet" : ""}${e.type === "SlaBreached" ? " alarm" : ""}`,
      "data-seq": e.seq, "data-type": e.type },
    el("time", { datetime: e.at }, fmtTime(e.at)),
    el("span", { class: "gap" }, gap),
    el("span", { class: "tl-type" }, e.type === "CaseCompleted" && e.workflow_id ? "Workflow completed"
      : EVENT_NAMES[e.type] || words(e.type)),
    e.task ? el("strong", { class: "tl-task" }, e.task) : null,
    el("span", { class: "tl-more" }, describe(e)));
    list.append(li);
  }
  return list;
}

export const casePage = {
  title: "Case",
  async load({ arg }) {
    if (!arg) return { missing: true };
    const id = encodeURIComponent(arg);
    const [view, history] = await Promise.all([api(`/cases/${id}`), api(`/cases/${id}/history`)]);
    return { view, history };
  },
  view(root, { missing, view, history }, _params, ui) {
    if (missing) {
      root.append(el("h1", {}, "Case"), openBox(ui));
      return;
    }
    const last = history.events.length ? history.events[history.events.length - 1] : null;
    const took = view.closed_at ? (new Date(view.closed_at) - new Date(view.created_at)) / 3.6e6 : null;
    root.append(el("div", { class: "section-head" },
      el("h1", { class: "mono" }, view.case_id), openBox(ui)),
    el("p", { class: "sub" }, badge(view.state, STATE_KIND[view.state]), ` ${words(view.workflow_id)} v${view.workflow_version}`,
      ` · created ${fmtTime(view.created_at)}`,
      view.closed_at ? ` · closed ${fmtTime(view.closed_at)} after ${fmtHours(took)}` : "",
      last ? ` · last event ${fmtTime(last.at)}` : ""));
    const items = view.work_items.length
      ? table(["Task", "State", "With", "Offered", "Due"], view.work_items.map((w) => ({
        cells: [el("strong", {}, w.task), w.state,
          w.assignee || (w.kind === "human" ? `role ${w.role || "?"}` : "a system"),
          fmtTime(w.enabled_at), w.due ? fmtTime(w.due) : "–"],
      })))
      : empty(view.state === "active" ? "No open work item: the case waits on a timer or a signal." : "Nothing open: the case is closed.");
    const data = Object.entries(view.data || {});
    root.append(el("div", { class: "grid case-grid" },
      el("div", {},
        card("Open work", null, items),
        card("Case data", null, data.length
          ? el("dl", { class: "facts-list" }, data.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, dataValue(v))]))
          : empty("No data."))),
      card("History", `${history.events.length} events, oldest first`, timeline(history.events))));
  },
};
