"""Plan: findings become proposals -- a recommendation in words a sales manager reads,
with its evidence and (when a policy can act on it) a machine-readable change.

Theory of operation
-------------------
`plan_effects` runs in the loop's worker thread over one `ItemFrame` of the history
(closed and still-open work items) and asks three planners:

- routing (mapek.routing): a person confidently and sizeably slower than the rest at
  a task -> route the task's work away from them at the assignment that decides who
  does it; advice when nothing assigns the task;
- escalation (mapek.escalation): a task that breaches its SLO more than allowed, with
  breaches visible early -> alert a role that can act, earlier;
- capacity (mapek.capacity): a role whose work waits longer the more of it is
  waiting -> one more person (advice).

Each planner claims nothing below its minimum sample and reports a confidence that is
a calibrated probability (1 - p of an exact or permutation test); the proposals carry
sample size, effect size with its interval, and the method. Timing findings are made
by the loop itself (their estimate needs the twin) and worded here (`timing_proposal`).
The loop turns proposals into recommendations (new, updated, or left alone when one
is applied, rolled back or rejected) by (type, workflow, subject).
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec
import numpy as np
from threadpoolctl import threadpool_limits

from .analyze import ItemFrame
from .capacity import CapacityConfig, CapacityFinding, find_capacity
from .escalation import EscalationConfig, EscalationFinding, SloTerms, find_escalation
from .knowledge import RecommendationType
from .monitor import Observation, RoleOf, TimeZoneOf
from .policy import Change, Escalation, clock_label, zone_label
from .routing import RoutingConfig, RoutingFinding, find_routing, person_name
from .timing import TimingFinding

SloOf = Callable[[str, str], "SloTerms | None"]  # (workflow, task) -> its SLO
EscalateTo = Callable[[str], "str | None"]  # role -> the role that hears early alerts
AssignedAt = Callable[[str, str], "str | None"]  # (workflow, task) -> "workflow/Assign"
_MACHINE = ("action:", "signal:")  # `by` of work the runtime did (and "timer")


class PlanConfig(msgspec.Struct, frozen=True):
    routing: RoutingConfig = RoutingConfig()
    escalation: EscalationConfig = EscalationConfig()
    capacity: CapacityConfig = CapacityConfig()


_DEFAULT = PlanConfig()


class Proposal(msgspec.Struct):
    type: RecommendationType
    workflow_id: str
    task: str | None
    subject: str  # what it is about within its type and workflow: a task, "role:sdr"
    change: Change | None
    description: str
    confidence: float
    estimated_improvement: str
    estimated_improvement_hours: float | None
    evidence: dict[str, Any]
    model: Any = None  # the finding, kept in the knowledge log


def subject(task: str | None, role: str | None) -> str:
    """What a proposal is about within its type and workflow: its task, or -- advice on
    a role (capacity) -- "role:<role>". One open recommendation per subject."""
    return task if task is not None else f"role:{role}"


def plan_effects(observations: Iterable[Observation], now: float, *,
                 zone_of: TimeZoneOf | None = None, slo_of: SloOf | None = None,
                 escalate_to: EscalateTo | None = None,
                 assigned_at: AssignedAt | None = None, role_of: RoleOf | None = None,
                 cfg: PlanConfig = _DEFAULT) -> list[Proposal]:
    """`role_of` names the role of tasks whose observations do not (imported history)."""
    obs = list(observations)
    if not obs:
        return []
    roles = _roles(obs, role_of)
    with threadpool_limits(limits=1, user_api="blas"):  # background work: one thread
        frame = _people_only(ItemFrame.from_observations(obs, now, zone_of))
        out: list[Proposal] = []
        for wf, task in frame.activities:
            role = roles.get((wf, task))
            if role is None:
                continue  # automatic work, or history that names no role
            at = assigned_at(wf, task) if assigned_at is not None else None
            r = find_routing(frame, wf, task, at, role, cfg.routing)
            if r is not None:
                out.append(routing_proposal(r))
            terms = slo_of(wf, task) if slo_of is not None else None
            to_role = escalate_to(role) if escalate_to is not None else None
            if terms is not None and to_role is not None and to_role != role:
                e = find_escalation(frame, wf, task, terms, to_role, role, cfg.escalation)
                if e is not None:
                    out.append(escalation_proposal(e))
        coded = {a: roles[act] for a, act in enumerate(frame.activities) if act in roles}
        for role in sorted(set(coded.values())):
            c = find_capacity(frame, role, coded, cfg.capacity)
            if c is not None:
                out += capacity_proposals(c)
    return out


def _people_only(frame: ItemFrame) -> ItemFrame:
    """Work the runtime did itself -- a timer's expiry, an action, a signal from another
    system -- was done by nobody: it is no one's speed and no one's workload."""
    machine = np.array([p == "timer" or p.startswith(_MACHINE) for p in frame.people], bool)
    if not machine.any():
        return frame
    who = frame.person
    return dataclasses.replace(frame, person=np.where(
        (who >= 0) & machine[np.maximum(who, 0)], -1, who).astype(who.dtype))


def _roles(obs: Sequence[Observation], role_of: RoleOf | None,
           ) -> dict[tuple[str, str], str]:
    """The role each task is offered to: the most common one its observations name,
    else the registered spec's."""
    counts: dict[tuple[str, str], Counter[str]] = {}
    for o in obs:
        c = counts.setdefault((o.workflow_id, o.task), Counter())
        if o.role is not None:
            c[o.role] += 1
    out = {}
    for (wf, task), c in counts.items():
        role = c.most_common(1)[0][0] if c else (role_of(wf, task) if role_of else None)
        if role is not None:
            out[(wf, task)] = role
    return out


# ------------------------------------------------------------------- routing
def routing_proposal(f: RoutingFinding) -> Proposal:
    names = _and([person_name(a.person) for a in f.avoided])
    share = sum(a.share for a in f.avoided)
    ratio = (f"{f.avoided[0].ratio.value:.1f}x" if len(f.avoided) == 1 else
             "between " + " and ".join(f"{a.ratio.value:.1f}x" for a in f.avoided[:2]))
    lo, hi = f.saving_interval
    measured = (f"On {words(f.task)}, {names} take{'s' if len(f.avoided) == 1 else ''} "
                f"{ratio} as long as the team at the same hour and workload "
                f"({share:.0%} of the work)")
    change = None
    if f.assigned_at is not None:
        at = f.assigned_at.split("/", 1)[1]
        desc = (f"At {words(at)}, stop giving new work to {names}. {measured}; giving "
                f"it to the others saves about {f.saving_hours:.1f}h per item "
                f"({lo:.1f}-{hi:.1f}h).")
        change = Change("routing", f.workflow_id, f.task, avoid=tuple(
            sorted(a.person for a in f.avoided)), assigned_at=f.assigned_at)
    else:
        desc = (f"{measured}: about {f.saving_hours:.1f}h per item to gain "
                f"({lo:.1f}-{hi:.1f}h). Nothing assigns this task automatically, so no "
                "policy can route it: rebalance the work or coach.")
    evidence = {
        "method": "per-person response ratio against the task's average assignee at the "
                  "same dispatch hour and load (least squares on log hours), wild-"
                  "bootstrap 95% interval, Freedman-Lane permutation confidence with the "
                  "choice of the most different person repeated; saving per item = the "
                  "avoided people's excess hours over the people kept for work "
                  "dispatched at the same local hour and day type (least squares on "
                  "hours, wild-bootstrap 95% interval) x their share of the work, less "
                  "the extra load's cost to the people kept",
        "sample_size": f.n, "people": f.people, "role": f.role,
        "avoided": [{"person": a.person, "items": a.n, "share": round(a.share, 3),
                     "response_ratio": round(a.ratio.value, 3),
                     "ratio_interval_95": [round(a.ratio.low, 3), round(a.ratio.high, 3)],
                     "confidence": round(a.ratio.confidence or 0.0, 4),
                     "mean_hours": round(a.mean_hours, 3)} for a in f.avoided],
        "mean_hours": round(f.mean_hours, 3), "kept_mean_hours": round(f.kept_mean_hours, 3),
        "load_factor": round(f.load_factor, 4),
        "load_penalty_hours": round(f.load_penalty_hours, 3),
        "saving_hours": round(f.saving_hours, 3),
        "saving_interval_95": [round(lo, 3), round(hi, 3)],
        "threshold_hours": round(f.threshold_hours, 3),
        "common_share": round(f.common_share, 3),
        "assigned_at": f.assigned_at,
        "confidence": round(f.confidence, 4),
        "confidence_means": "1 - p of two permutation tests (same hour and load; same "
                            "hour and day type), the smallest among the avoided: under "
                            "no difference between people, P(confidence >= c) <= 1 - c",
    }
    return Proposal("routing_optimization", f.workflow_id, f.task, f.task, change, desc,
                    round(f.confidence, 3), f"{f.saving_hours:.1f} hours saved per item",
                    round(f.saving_hours, 2), evidence, f)


# ---------------------------------------------------------------- escalation
def escalation_proposal(f: EscalationFinding) -> Proposal:
    t = f.terms
    allowed = 1.0 - t.compliance_target
    earlier = t.alert_hours - f.after_hours
    desc = (f"Alert the {role_words(f.to_role)} when {words(f.task)} work is still open "
            f"after {f.after_hours:g}h (target {t.target_hours:g}h; the alert comes at "
            f"{t.alert_hours:g}h today). {f.breach_share.value:.0%} of these items miss "
            f"the target (the SLO allows {allowed:.0%}); of those still open at "
            f"{f.after_hours:g}h, {f.precision.value:.0%} go on to miss it. About "
            f"{f.alerts_per_week:.0f} alerts a week.")
    evidence = {
        "method": "mature items (enabled at least a target ago: every outcome known); "
                  "breach share against the allowed share by an exact one-sided binomial "
                  "test; alert checkpoints at 1/4, 1/2, 3/4 of the target, the earliest "
                  "whose precision (flagged items that breach) beats the minimum by a "
                  "binomial test, Bonferroni over the checkpoints",
        "sample_size": f.n, "breaches": f.breaches,
        "breach_share": round(f.breach_share.value, 4),
        "breach_share_interval_95": [round(f.breach_share.low, 4),
                                     round(f.breach_share.high, 4)],
        "allowed_share": round(allowed, 4),
        "breach_confidence": round(f.breach_confidence, 4),
        "after_hours": f.after_hours, "target_hours": t.target_hours,
        "alert_hours": t.alert_hours, "compliance_target": t.compliance_target,
        "earlier_by_hours": round(earlier, 3),
        "flagged": f.flagged, "flagged_share": round(f.flagged_share, 4),
        "precision": round(f.precision.value, 4),
        "precision_interval_95": [round(f.precision.low, 4), round(f.precision.high, 4)],
        "precision_confidence": round(f.precision_confidence, 4),
        "alerts_per_week": round(f.alerts_per_week, 2), "span_days": round(f.span_days, 1),
        "role": f.role, "to_role": f.to_role,
        "confidence": round(f.confidence, 4),
        "confidence_means": "the smaller of the two tests' 1 - p: breaching more than "
                            "allowed, and flagged items breaching more than the minimum "
                            "precision",
    }
    change = Change("escalation", f.workflow_id, f.task,
                    escalation=Escalation(f.after_hours, f.to_role))
    return Proposal("escalation", f.workflow_id, f.task, f.task, change, desc,
                    round(f.confidence, 3),
                    f"at-risk items seen {earlier:.1f}h earlier "
                    f"({f.precision.value:.0%} of alerts real)", None, evidence, f)


# ------------------------------------------------------------------ capacity
def capacity_proposals(f: CapacityFinding) -> list[Proposal]:
    out = []
    role = role_words(f.role)
    for w in f.by_workflow:
        s = w.saving_hours
        desc = (f"The {role} team is saturated: the more {role} work is waiting, the "
                f"longer each item takes ({f.per_item.value - 1:+.0%} per waiting item "
                f"per person; {f.mean_backlog:.1f} waiting per person on average). One "
                f"more person doing {role} work would save about {s.value:.1f}h per item "
                f"on {_and([words(t) for t in w.tasks])} ({s.low:.1f}-{s.high:.1f}h).")
        evidence = {
            "method": "log response on the role's backlog per person at dispatch, with a "
                      "level per local dispatch hour x day type and per task; wild-"
                      "bootstrap 95% interval; one-sided Freedman-Lane permutation "
                      "confidence (residuals shuffled within hour x day type); saving = "
                      "each item's response x (1 - exp(-beta x the backlog per person one "
                      "more person removes))",
            "role": f.role, "people": f.people, "sample_size": f.n,
            "mean_backlog_per_person": round(f.mean_backlog, 3),
            "response_ratio_per_waiting_item": round(f.per_item.value, 4),
            "ratio_interval_95": [round(f.per_item.low, 4), round(f.per_item.high, 4)],
            "workflow_items": w.n, "tasks": w.tasks,
            "mean_response_hours": round(w.mean_hours, 3),
            "saving_hours": round(s.value, 3),
            "saving_interval_95": [round(s.low, 3), round(s.high, 3)],
            "confidence": round(f.confidence, 4),
            "confidence_means": "1 - p of the permutation test: under work that does not "
                                "queue, P(confidence >= c) <= 1 - c",
            "advice": "no policy adds a person: hire, or let a role that acts as this one "
                      "take part of the work",
        }
        out.append(Proposal("capacity", w.workflow_id, None, subject(None, f.role), None, desc,
                            round(f.confidence, 3),
                            f"{s.value:.1f} hours saved per item with one more person",
                            round(s.value, 2), evidence, f))
    return out


# -------------------------------------------------------------------- timing
def timing_proposal(f: TimingFinding, est: dict[str, Any]) -> Proposal | None:
    """A dispatch window found by mapek.timing, with its saving estimated in the twin."""
    saving = float(est["saving_hours"])
    if saving <= 0:
        return None  # the twin does not confirm the finding
    days = f.window.describe().split(" on ", 1)[1]
    desc = (f"Send new {words(f.task)} work at {clock_label(f.window.start_hour)} "
            f"{zone_label(f.window.time_zone)} on {days} (holding it at most "
            f"{f.window.max_wait_hours:g}h) for {saving:.1f}h faster response")
    return Proposal("timing_optimization", f.workflow_id, f.task, f.task,
                    Change("dispatch_window", f.workflow_id, f.task, window=f.window), desc,
                    round(f.confidence, 3), f"{saving:.1f} hours saved per item",
                    round(saving, 2), timing_evidence(f, est), f)


def timing_evidence(f: TimingFinding, est: dict[str, Any]) -> dict[str, Any]:
    return {
        "method": "split-half counterfactual: one half of the cases chose the window, the "
                  "other measured it (bootstrap); saving estimated in the twin with common "
                  "random numbers",
        "sample_size": f.n, "choosing_half": f.n_choose, "measuring_half": f.n_measure,
        "baseline_hours": round(f.baseline_hours, 3),
        "saving_hours_measured": round(f.saving_hours, 3),
        "saving_interval_90": [round(f.interval[0], 3), round(f.interval[1], 3)],
        "confidence": round(f.confidence, 3),
        "confidence_means": f"P(saving > {f.threshold_hours:.2f}h) over the bootstrap",
        "held_share": round(f.held_share, 3),
        "window_median_response_hours": round(f.window_median_hours, 3),
        "elsewhere_median_response_hours": round(f.elsewhere_median_hours, 3),
        "twin": {k: round(v, 3) if isinstance(v, float) else v for k, v in est.items()},
        "time_zone": f.window.time_zone,
    }


# --------------------------------------------------------------------- words
def words(task: str) -> str:
    """'SendForSignature' -> '"Send For Signature"': the task as people read it."""
    return '"' + re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", task).replace("_", " ") + '"'


def role_words(role: str) -> str:
    """'sales_manager' -> 'sales manager'."""
    return role.replace("_", " ").replace("-", " ")


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


__all__ = ["AssignedAt", "EscalateTo", "PlanConfig", "Proposal", "SloOf",
           "capacity_proposals", "escalation_proposal", "plan_effects",
           "routing_proposal", "subject", "timing_proposal", "words"]
