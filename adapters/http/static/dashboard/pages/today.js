// A person's day: their open work by deadline, what is at risk, what is breached
// (GET /today). The person is in the URL (#/today/<person>); by default the one the
// dashboard acts as (its token's person, or the one named in open mode). Another's day
// is for those who may see their work (their manager, or whoever holds or acts as
// their role): the server refuses the others.

import { api, identity } from "../api.js";
import {
  badge, card, caseLink, el, empty, fmtInt, fmtRelative, fmtTime, kpi, select, table, words,
} from "../dom.js";

const STATUS = {
  breached: ["breached", "bad"], at_risk: ["at risk", "warn"], on_track: ["on track", "good"],
};

export default {
  title: "Today",
  async load({ arg }) {
    const { people, you } = await api("/people");
    const fallback = people.find((p) => p.person === you) ||
      people.find((p) => p.person === identity.actingAs) ||
      people.find((p) => p.role !== "integration") || people[0];
    const user = arg || (fallback ? fallback.person : "");
    const today = user ? await api("/today", { query: { user } }) : null;
    return { people, user, today };
  },
  view(root, { people, user, today }, _params, ui) {
    const pick = select(people.map((p) => [p.person, `${p.name || p.person} · ${p.role}`]), user,
      (v) => ui.go("today", v), { "aria-label": "Person", id: "today-person" });
    root.append(el("div", { class: "section-head" }, el("h1", {}, "Today"), pick));
    if (!today) {
      root.append(empty("No people in roles.yaml.", "Name your team in specs/roles.yaml (`people:`)."));
      return;
    }
    const who = people.find((p) => p.person === today.user);
    root.append(el("p", { class: "sub" }, `${who ? who.name || who.person : today.user}` +
      `${who ? ` · ${words(who.role)}${who.team ? ` · ${who.team}` : ""}` : ""} · as of ${fmtTime(today.now)}`));
    root.append(el("div", { class: "kpis" },
      kpi("Open items", fmtInt(today.items.length)),
      kpi("At risk", fmtInt(today.at_risk.length), "past the SLO target"),
      kpi("Breached", fmtInt(today.breaches.length), "past the alert threshold")));
    if (!today.items.length) {
      root.append(empty("Nothing waiting for this person.",
        "Work appears here when a case offers a task to their role or they claim one."));
      return;
    }
    const now = new Date(today.now).getTime();
    const rows = today.items.map((it) => {
      const [label, kind] = STATUS[it.status] || [it.status, ""];
      return {
        attrs: { "data-case": it.case_id },
        cells: [badge(label, kind), el("strong", {}, it.task), words(it.workflow_id), caseLink(it.case_id),
          it.deadline ? `${fmtTime(it.deadline)} (${fmtRelative(it.deadline, now)})` : "no deadline",
          fmtTime(it.enabled_at), it.assignee ? `claimed by ${it.assignee}` : "offered to the role"],
      };
    });
    root.append(card("Their work, earliest deadline first", "Deadline: the SLO target or the task's own timer, whichever comes first.",
      table(["", "Task", "Workflow", "Case", "Deadline", "Offered", "State"], rows, { class: "today" })));
  },
};
