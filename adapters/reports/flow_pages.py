"""The pages about time: cycle time and SLO compliance, bottlenecks, approver
performance, arrival patterns. Each is a function (history, config) -> Page over the
pure analyzers of mapek.insights and mapek.analyze."""

from __future__ import annotations

import datetime as dt
import itertools
from collections import defaultdict

from adapters.reports.collect import History
from adapters.reports.config import ReportConfig
from adapters.reports.page import (
    BAD,
    GOOD,
    Cell,
    Chart,
    Column,
    Page,
    Section,
    Table,
    bar,
    count,
    hours,
    line,
    number,
    percent,
    slug,
    text,
)
from mapek.analyze import ItemFrame, assignee_effect, bottlenecks, slo_compliance
from mapek.insights import (
    WEEKDAYS,
    CycleTimes,
    Phase,
    approvers,
    arrival_patterns,
    cycle_times,
    flow,
    task_times,
)
from mapek.stats import Estimate

END_TO_END = "deal, end to end"
MIXED = "#E69F00"  # a histogram bin the SLO target falls inside
DEALS, REVENUE = "deal-approval-gate", "revenue-recognition"
TOP = 15  # bars in a "most" chart


def _frame(h: History, cfg: ReportConfig, *, people_only: bool = False,
           leave_out: frozenset[str] | set[str] = frozenset()) -> ItemFrame:
    obs = h.observations
    if people_only:
        obs = [o for o in obs if o.by is not None and o.role is not None
               and cfg.role_of_person(o.by) is not None and o.by not in leave_out]

    def zone(person: str | None) -> str:
        p = cfg.directory.people.get(person) if person else None
        return p.time_zone if p is not None else "UTC"
    return ItemFrame.from_observations(obs, h.now, zone, h.attributes)


def _interval(e: Estimate | None, scale: float = 1.0, unit: str = "") -> Cell:
    if e is None:
        return Cell("\u2013", None)
    return Cell(f"{e.value * scale:.1f}{unit} ({e.low * scale:.1f}\u2013{e.high * scale:.1f})",
                e.value)


# ------------------------------------------------------------------ cycle time
def deal_stays(phases: list[Phase]) -> list[Phase]:
    """A deal from entering the approval gate to leaving revenue recognition completed;
    a deal that ended elsewhere is 'cancelled' here (ended without booking)."""
    by_case: dict[str, list[Phase]] = defaultdict(list)
    for p in phases:
        by_case[p.case_id].append(p)
    out = []
    for stays in by_case.values():
        gate = next((p for p in stays if p.workflow_id == DEALS), None)
        if gate is None:
            continue
        if any(p.left_at is None for p in stays):
            out.append(Phase(gate.case_id, END_TO_END, gate.entered_at))
            continue
        last = max(stays, key=lambda p: p.left_at or 0.0)
        done = last.workflow_id == REVENUE and last.outcome == "completed"
        out.append(Phase(gate.case_id, END_TO_END, gate.entered_at, last.left_at,
                         "completed" if done else "cancelled"))
    return out


def _histogram(ct: CycleTimes, chart_id: str) -> Chart:
    edges = ct.bin_edges_hours
    labels = [f"{a:.4g}\u2013{b:.4g} h" for a, b in itertools.pairwise(edges)]
    slo = ct.slo_hours
    colors = [GOOD if slo is None or b <= slo else MIXED if a < slo else BAD
              for a, b in itertools.pairwise(edges)]
    return bar(chart_id, f"{ct.workflow_id}: completed stays by hours in the workflow"
               + (f" (green: within the {slo:g} h target; amber: the bin holding it)"
                  if slo is not None else ""),
               labels, [{"label": "stays", "data": ct.counts, "backgroundColor": colors}],
               y_title="stays", height=220)


def cycle_page(h: History, cfg: ReportConfig) -> Page:
    per_wf = cycle_times(h.phases, cfg.workflow_target, h.now)
    deal_target = (cfg.slos.total_deal_cycle.target_hours
                   if cfg.slos is not None and cfg.slos.total_deal_cycle is not None else None)
    end_to_end = cycle_times(deal_stays(h.phases), lambda _wf: deal_target, h.now)
    rows = per_wf + end_to_end
    columns = [Column("workflow", "workflow", False), Column("closed", "completed"),
               Column("open", "open"), Column("ended", "ended otherwise"),
               Column("p50", "p50"), Column("p90", "p90"), Column("p95", "p95"),
               Column("mean", "mean"), Column("target", "SLO target"),
               Column("within", "within target"), Column("goal", "compliance goal"),
               Column("over", "open past target")]

    def goal(wf: str) -> float | None:
        if wf == END_TO_END:
            t = cfg.slos.total_deal_cycle if cfg.slos is not None else None
            return t.compliance_target if t is not None else None
        return cfg.compliance_target(wf)

    table = Table("workflows", "Time in each workflow (entered \u2192 left, completed stays)",
                  columns, [(ct.workflow_id, [
                      text(ct.workflow_id), count(ct.closed), count(ct.open),
                      count(ct.cancelled + ct.failed), hours(ct.p50_hours),
                      hours(ct.p90_hours), hours(ct.p95_hours), hours(ct.mean_hours),
                      hours(ct.slo_hours), percent(ct.within_slo),
                      percent(goal(ct.workflow_id), 0), count(ct.open_over_slo)])
                      for ct in rows])
    compliance = bar("compliance-by-workflow", "Share of completed stays within the SLO "
                     "target, per workflow (dark: the compliance goal)",
                     [ct.workflow_id for ct in rows],
                     [{"label": "within target %", "data": [
                         None if ct.within_slo is None else round(100 * ct.within_slo, 1)
                         for ct in rows]},
                      {"label": "goal %", "data": [
                          None if goal(ct.workflow_id) is None
                          else round(100 * (goal(ct.workflow_id) or 0), 1) for ct in rows],
                       "backgroundColor": "#444444"}], y_title="%")
    histograms = [_histogram(ct, f"hist-{slug(ct.workflow_id)}") for ct in rows if ct.closed]

    tasks = slo_compliance(_frame(h, cfg), cfg.task_target, h.now)
    tasks.sort(key=lambda t: (t.workflow, t.task))
    task_table = Table("tasks", "Work items against their SLO (enabled \u2192 completed)", [
        Column("workflow", "workflow", False), Column("task", "task", False),
        Column("target", "target"), Column("closed", "completed"), Column("open", "open"),
        Column("p50", "p50"), Column("p90", "p90"), Column("p95", "p95"),
        Column("compliance", "within target (95 % interval)"),
        Column("goal", "goal"), Column("over", "open past target")],
        [(f"{t.workflow}/{t.task}", [
            text(t.workflow), text(t.task), hours(t.target_hours), count(t.closed),
            count(t.open), hours(t.p50_hours), hours(t.p90_hours), hours(t.p95_hours),
            _interval(t.compliance, 100, " %"), percent(cfg.compliance_target(t.workflow,
                                                                           t.task), 0),
            count(t.open_over_target)]) for t in tasks])
    task_chart = bar("compliance-by-task", "Share of completed work items within target, "
                     "per task", [t.task for t in tasks],
                     [{"label": "within target %", "data": [
                         None if t.compliance is None else round(100 * t.compliance.value, 1)
                         for t in tasks]}], y_title="%")
    deal = end_to_end[0] if end_to_end else None
    return Page([
        Section("Time in each workflow", "A stay is a case's time in one workflow, from "
                "entering it to leaving it completed; a deal end to end runs from the "
                "approval gate to revenue recognition. Cases still in a workflow are "
                "counted as open, never as short stays.", [compliance], [table]),
        Section("Distribution of completed stays", None, histograms),
        Section("Work items against their SLO", "Per task with a target in slos.yaml "
                "(analysis of mapek.analyze.slo_compliance; the interval is Wilson's).",
                [task_chart], [task_table]),
    ], [("deals completed end to end", count(deal.closed if deal else None)),
        ("median deal cycle", hours(deal.p50_hours if deal else None)),
        ("within the deal-cycle target", percent(deal.within_slo if deal else None))])


# ------------------------------------------------------------------ bottlenecks
def bottlenecks_page(h: History, cfg: ReportConfig) -> Page:
    # Joins of people's work: automatic steps that fire in the same instant as the
    # item they enable look "enabled together" to the analysis, but are a sequence.
    human = {(o.workflow_id, o.task) for o in h.observations if o.role is not None}
    joins = [j for j in bottlenecks(_frame(h, cfg))
             if sum((j.workflow, t) in human for t in j.tasks) >= 2]
    join_rows = []
    for j in joins:
        for t in j.by_task:
            join_rows.append((f"{j.workflow}/{'+'.join(j.tasks)}/{t.task}", [
                text(j.workflow), text(" + ".join(j.tasks)), count(j.n), text(t.task),
                count(t.decided), _interval(t.share, 100, " %"),
                _interval(t.extra_wait_hours, 1, " h"),
                text("yes" if j.bottleneck == t.task else "")]))
    join_table = Table("joins", "Branches enabled together, and which closed last", [
        Column("workflow", "workflow", False), Column("branches", "branches", False),
        Column("n", "joins"), Column("task", "branch", False),
        Column("decided", "closed last"), Column("share", "share (95 % interval)"),
        Column("extra", "its extra wait, median"), Column("bottleneck", "bottleneck", False)],
        join_rows)
    names = sorted({t.task for j in joins for t in j.by_task})
    join_chart = bar("join-shares", "How often each branch closed last, per set of "
                     "branches", [f"{j.workflow}: {' + '.join(j.tasks)}" for j in joins],
                     [{"label": name, "data": [
                         next((round(100 * t.share.value, 1) for t in j.by_task
                               if t.task == name), 0) for j in joins]} for name in names],
                     stacked=True, horizontal=True, y_title="% of joins",
                     height=max(220, 40 * len(joins) + 80))
    times = task_times(h.observations, h.now)
    top = times[:TOP]
    time_chart = bar("task-hours", "Where the pipeline's time goes: total hours of "
                     "completed work items, enabled \u2192 completed",
                     [f"{t.task} ({t.workflow_id})" for t in top],
                     [{"label": "hours", "data": [round(t.total_hours, 1) for t in top]}],
                     horizontal=True, y_title="hours", height=40 * len(top) + 80)
    waiting = sorted((t for t in times if t.open), key=lambda t: (-t.open, t.task))[:TOP]
    wait_chart = bar("task-open", "Work waiting now: open items per task",
                     [f"{t.task} ({t.workflow_id})" for t in waiting],
                     [{"label": "open items", "data": [t.open for t in waiting],
                       "backgroundColor": BAD}], horizontal=True, y_title="open items",
                     height=40 * len(waiting) + 80)
    time_table = Table("task-times", "Every task's work items", [
        Column("workflow", "workflow", False), Column("task", "task", False),
        Column("role", "role", False), Column("completed", "completed"),
        Column("total", "total hours"), Column("p50", "p50"), Column("p90", "p90"),
        Column("open", "open now"), Column("oldest", "oldest open")],
        [(f"{t.workflow_id}/{t.task}", [
            text(t.workflow_id), text(t.task), text(t.role or "automatic"),
            count(t.completed), number(t.total_hours, 1), hours(t.p50_hours),
            hours(t.p90_hours), count(t.open), hours(t.oldest_open_hours)]) for t in times])
    claimed = [j for j in joins if j.bottleneck]
    return Page([
        Section("Which branch decides a join's wait", "Work items of one case enabled at "
                "the same instant are parallel branches; the one that closes last decides "
                "when the join fires (joins of at least two people's tasks; automatic "
                "steps are left out). A bottleneck is named only with enough joins and a "
                "confidence of at least 95 % against branches that are all alike.",
                [join_chart], [join_table]),
        Section("Where the time goes", None, [time_chart, wait_chart], [time_table]),
    ], [("joins analysed", count(sum(j.n for j in joins))),
        ("bottlenecks named", count(len(claimed))),
        ("open work items", count(sum(t.open for t in times)))])


# ------------------------------------------------------------------ approvers
def approvers_page(h: History, cfg: ReportConfig) -> Page:
    known = cfg.role_of_person if cfg.directory.people else None
    # A connected system reporting a signature or a payment (a role that may send
    # signals) records what a customer did: its "response" is the customer's.
    systems = {user for user, p in cfg.directory.people.items()
               if "send_signals" in cfg.directory.roles[p.role].permissions}
    people = [p for p in approvers(h.observations, h.now, role_of_person=known)
              if p.person not in systems]
    chart = bar("approver-response", "Response time per person, dispatched \u2192 "
                "completed (p50 and p90)", [p.person for p in people],
                [{"label": "p50 hours", "data": [round(p.p50_hours or 0, 2) for p in people]},
                 {"label": "p90 hours", "data": [round(p.p90_hours or 0, 2) for p in people]}],
                y_title="hours")
    volume = bar("approver-volume", "Completed work items per person",
                 [p.person for p in people],
                 [{"label": "completed", "data": [p.completed for p in people]},
                  {"label": "open", "data": [p.open for p in people]}], stacked=True,
                 y_title="items")
    table = Table("approvers", "Every person's work", [
        Column("person", "person", False), Column("role", "role", False),
        Column("completed", "completed"), Column("open", "open"), Column("p50", "p50"),
        Column("p90", "p90"), Column("p95", "p95"), Column("oldest", "oldest open"),
        Column("tasks", "tasks (completed)", False)],
        [(p.person, [text(p.person), text(p.role), count(p.completed), count(p.open),
                     hours(p.p50_hours), hours(p.p90_hours), hours(p.p95_hours),
                     hours(p.oldest_open_hours),
                     text(", ".join(f"{t} {n:,}" for t, n in p.tasks.items()))])
         for p in people])
    frame = _frame(h, cfg, people_only=bool(cfg.directory.people), leave_out=systems)
    effects = [e for wf, task in frame.activities
               if (e := assignee_effect(frame, wf, task)) is not None]
    effect_rows = []
    for e in effects:
        for p in e.people:
            effect_rows.append((f"{e.workflow}/{e.task}/{p.person}", [
                text(e.task), text(p.person), count(p.n), hours(p.median_hours),
                number(p.mean_load, 1), _interval(p.effect, 1, "\u00d7"),
                hours(p.extra_hours), text("yes" if p.claimed else "")]))
    effect_table = Table("assignee-effects", "Each person against the task's average "
                         "assignee, same dispatch hour and load", [
        Column("task", "task", False), Column("person", "person", False),
        Column("n", "items"), Column("median", "median response"),
        Column("load", "mean load at pick-up"),
        Column("effect", "response ratio (95 % interval)"),
        Column("extra", "extra hours per item"), Column("claimed", "claimed", False)],
        effect_rows)
    return Page([
        Section("Response times", "Response is the time a work item was in front of "
                "someone: from dispatch (enabled, or released by a dispatch policy) to "
                "completion. Open items are those a person started and has not finished.",
                [chart, volume], [table]),
        Section("Who is faster or slower than the task's average", "From "
                "mapek.analyze.assignee_effect: a ratio below 1 is faster than the average "
                "assignee of the task at the same local hour and load; 'claimed' means "
                "the difference is at least 95 % sure.", [], [effect_table]),
    ], [("people", count(len(people))),
        ("work items completed", count(sum(p.completed for p in people))),
        ("open with someone", count(sum(p.open for p in people)))])


# ------------------------------------------------------------------ arrivals
def arrivals_page(h: History, cfg: ReportConfig) -> Page:
    tz = cfg.time_zone
    patterns = arrival_patterns(h.phases, tz)
    daily = flow(h.phases)
    days = [dt.datetime.fromtimestamp(s, dt.UTC).strftime("%Y-%m-%d")
            for s in (daily[0].starts if daily else [])]
    per_day = line("arrivals-daily", "Cases arriving in each workflow per day (UTC days)",
                   days, [{"label": s.workflow_id, "data": s.arrivals} for s in daily],
                   y_title="arrivals")
    by_hour = bar("arrivals-hour", f"Arrivals by hour of the day ({tz})",
                  [f"{i:02d}" for i in range(24)],
                  [{"label": p.workflow_id, "data": p.by_hour} for p in patterns],
                  stacked=True, y_title="arrivals")
    by_day = bar("arrivals-weekday", f"Arrivals by day of the week ({tz})", list(WEEKDAYS),
                 [{"label": p.workflow_id, "data": p.by_weekday} for p in patterns],
                 stacked=True, y_title="arrivals")
    summary = Table("patterns", "Arrivals per workflow", [
        Column("workflow", "workflow", False), Column("arrivals", "arrivals"),
        Column("days", "days"), Column("per_day", "per day"),
        Column("peak", "busiest hour"), Column("office", "in office hours")],
        [(p.workflow_id, [text(p.workflow_id), count(p.arrivals), count(p.days),
                          number(p.per_day, 1),
                          Cell("\u2013" if p.peak_hour is None else f"{p.peak_hour:02d}:00",
                               p.peak_hour), percent(p.office_share)])
         for p in patterns])
    day_table = Table("daily", "Arrivals and completions per day (UTC)",
                      [Column("day", "day", False)]
                      + [Column(f"{s.workflow_id}:{k}", f"{s.workflow_id} {k}")
                         for s in daily for k in ("in", "done")],
                      [(d, [text(d)] + [count(v) for s in daily
                                        for v in (s.arrivals[i], s.completions[i])])
                       for i, d in enumerate(days)])
    heat = []
    for p in patterns:
        top = max(p.by_hour_of_week) or 1
        heat.append(Table(f"week-{slug(p.workflow_id)}",
                          f"{p.workflow_id}: arrivals by hour of the week ({tz})",
                          [Column("day", "", False)]
                          + [Column(f"{i:02d}", f"{i:02d}") for i in range(24)],
                          [(WEEKDAYS[d], [text(WEEKDAYS[d])] + [
                              Cell(f"{n}", n, n / top)
                              for n in p.by_hour_of_week[d * 24:(d + 1) * 24]])
                           for d in range(7)]))
    busiest = max(patterns, key=lambda p: p.arrivals, default=None)
    return Page([
        Section("Arrivals over the period", "An arrival is a case entering a workflow: "
                "new leads and deals, and deals handed on from the workflow before.",
                [per_day], [summary, day_table]),
        Section(f"Hour of the day and day of the week ({tz})", "Office hours: Monday to "
                "Friday, 09:00\u201317:00 on this clock.", [by_hour, by_day]),
        Section("Hour of the week", "Darker: more arrivals in that hour.", [], heat),
    ], [("arrivals", count(sum(p.arrivals for p in patterns))),
        ("busiest workflow", text(busiest.workflow_id if busiest else None)),
        ("time zone", text(tz))])
