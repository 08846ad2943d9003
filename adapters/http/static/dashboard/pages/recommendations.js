// Recommendations of the MAPE-K loop, with their evidence, and Apply / Roll back
// buttons that call the API as the person the dashboard acts as. A refusal (403: the
// manage_policies permission is the director's and the CFO's) is shown as the API
// words it.

import { api, identity } from "../api.js";
import {
  badge, card, el, empty, errorBox, fmtHours, fmtPct, fmtTime, SIMULATE_HINT, words,
} from "../dom.js";

const STATUS_KIND = {
  ready_to_apply: "info", applied: "good", verified: "good", rolled_back: "muted", rejected: "muted",
};
// Only a timing saving is the twin's; the other planners estimate from the history.
const ESTIMATED_BY = {
  timing_optimization: "estimated (digital twin)",
  routing_optimization: "estimated from history",
  capacity: "estimated from history",
  escalation: "expected from history",
};
const DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
// What the last Apply / Roll back said, per recommendation: kept across the page's
// refreshes (the one the action starts, and the live one that follows) for a while.
const notes = new Map();
const NOTE_MS = 60000;

function value(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return Number.isInteger(v) ? v.toLocaleString("en-US") : String(Math.round(v * 1000) / 1000);
  if (Array.isArray(v)) {
    return v.length === 2 && v.every((x) => typeof x === "number") ? `${value(v[0])} – ${value(v[1])}` : v.map(value).join(", ");
  }
  if (typeof v === "object") return facts(v);
  return String(v);
}

function facts(obj) {
  return el("dl", { class: "facts-list" }, Object.entries(obj).flatMap(([k, v]) => [
    el("dt", {}, words(k)), el("dd", {}, value(v))]));
}

function describeChange(change) {
  if (!change || !change.kind) return null;
  if (change.kind === "dispatch_window" && change.window) {
    const w = change.window;
    const from = `${String(w.start_hour).padStart(2, "0")}:00`;
    const to = `${String((w.start_hour + w.hours) % 24).padStart(2, "0")}:00`;
    const days = (w.weekdays || []).map((d) => DAYS[d]).join(", ") || "every day";
    return `Dispatch window for ${change.task}: ${from}–${to} ${w.time_zone}, ${days}` +
      (w.max_wait_hours ? `; no item held more than ${fmtHours(w.max_wait_hours)}.` : ".");
  }
  return null;
}

function recCard(rec, workflowId, mayManage, onChanged) {
  const status = badge(words(rec.status), `${STATUS_KIND[rec.status] || ""} status`);
  status.dataset.status = rec.status;
  const note = el("div", { class: "rec-note", role: "status" });
  const said = notes.get(rec.id);
  if (said && said.until > Date.now()) note.append(el("p", { class: "ok" }, said.text));
  const actions = el("div", { class: "actions" });
  const act = (label, path, busy) => {
    const b = el("button", { type: "button", class: path === "apply" ? "primary" : "" }, label);
    b.addEventListener("click", async () => {
      for (const x of actions.querySelectorAll("button")) x.disabled = true;
      note.replaceChildren(busy);
      try {
        const updated = await api(`/workflows/${encodeURIComponent(workflowId)}/mape-k/recommendations/${encodeURIComponent(rec.id)}/${path}`,
          { method: "POST", body: {} });
        onChanged(updated, path === "apply"
          ? `Applied: policy version ${updated.policy_version ?? "?"} is in force for new work.`
          : "Rolled back: its change is undone; other applied changes stay.");
      } catch (err) {
        note.replaceChildren(errorBox(err));
        for (const x of actions.querySelectorAll("button")) x.disabled = false;
      }
    });
    return b;
  };
  // Advice (capacity, routing that nothing assigns) has no change: the API refuses to
  // apply it (409), so it offers no button, only what to do instead.
  const advice = !(rec.change && rec.change.kind);
  if (rec.status === "ready_to_apply" && !advice) actions.append(act("Apply", "apply", "Applying…"));
  if (rec.status === "ready_to_apply" && advice) {
    actions.append(el("span", { class: "hint advice" },
      "Advice: no policy can make this change, so there is nothing to apply."));
  }
  if (rec.status === "applied" || rec.status === "verified") actions.append(act("Roll back", "rollback", "Rolling back…"));
  if (actions.querySelector("button") && !mayManage) {
    actions.append(el("span", { class: "hint" },
      "Needs the manage_policies permission (a director or the CFO): pick one under “Acting as”."));
  }
  const change = describeChange(rec.change);
  const c = card(rec.description, null,
    el("div", { class: "rec-meta" }, status, " ", badge(words(rec.type), "muted"),
      ` · ${words(workflowId)}${rec.task ? ` · ${rec.task}` : ""} · proposed ${fmtTime(rec.created_at)}`),
    el("div", { class: "rec-numbers" },
      el("div", {}, el("span", { class: "big" }, rec.estimated_improvement), el("span", { class: "muted" }, ESTIMATED_BY[rec.type] || "estimated")),
      el("div", {}, el("span", { class: "big" }, fmtPct(rec.confidence, 0)), el("span", { class: "muted" }, "confidence"))),
    change ? el("p", { class: "change" }, change) : null,
    rec.verification ? el("details", { open: true }, el("summary", {}, "Measured after applying"), facts(rec.verification)) : null,
    el("details", {}, el("summary", {}, "Evidence"), facts(rec.evidence || {})),
    actions, note);
  c.classList.add("rec");
  c.dataset.recId = rec.id;
  return c;
}

export default {
  title: "Recommendations",
  loadingText: "Asking the MAPE-K loop (an analysis cycle can take a few seconds)…",
  events: ["recommendations"], // a cycle per refresh is too much on every append
  async load() {
    const [{ workflows }, { people, you }, policies] = await Promise.all([
      api("/workflows"), api("/people"), api("/policies")]);
    const lists = await Promise.all(workflows.map((w) =>
      api(`/workflows/${encodeURIComponent(w.workflow_id)}/mape-k/recommendations`)));
    const me = people.find((p) => p.person === you);
    const mayManage = you === "operator" || Boolean(me && me.permissions.includes("manage_policies"));
    return { lists, policies, you, mayManage };
  },
  view(root, { lists, policies, you, mayManage }, _params, ui) {
    root.append(el("h1", {}, "Recommendations"),
      el("p", { class: "sub" }, `Policy version ${policies.current_version} is in force` +
        (policies.current_version ? ` (${policies.current.reason}).` : " (the default: no change applied).") +
        ` You act as ${you === "operator" ? "the local operator" : you}` +
        (identity.token ? " (token)." : ".")));
    // The loop answers within seconds with what it knew when a cycle over a large new
    // history takes longer (`current` false); the cycle goes on.
    const stale = lists.find((l) => l.current === false);
    if (stale) {
      root.append(el("p", { class: "hint analysing" },
        "New history is being analysed: these are the recommendations of the last analysis" +
        (stale.analysed_at ? ` (${fmtTime(stale.analysed_at)})` : "") + ". Reload in a minute for the new ones."));
    }
    const all = lists.flatMap((l) => l.recommendations.map((r) => [l.workflow_id, r]));
    if (!all.length) {
      root.append(empty("No recommendations yet. The loop proposes a change once a task's history shows one with confidence.",
        SIMULATE_HINT));
      return;
    }
    const order = { ready_to_apply: 0, applied: 1, verified: 2, rolled_back: 3, rejected: 4 };
    all.sort((a, b) => (order[a[1].status] ?? 9) - (order[b[1].status] ?? 9));
    const list = el("div", { class: "recs" });
    for (const [wf, rec] of all) {
      const mount = (r) => recCard(r, wf, mayManage, (updated, message) => {
        notes.set(updated.id, { text: message, until: Date.now() + NOTE_MS });
        const next = mount(updated);
        current.replaceWith(next);
        current = next;
        ui.refresh(); // the policy version above, and any other card it affected
      });
      let current = mount(rec);
      list.append(current);
    }
    root.append(list);
  },
};
