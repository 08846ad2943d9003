"""Economics: the pipeline's conversion and money as the static reports show them.

Theory of operation
-------------------
The money-and-conversion half of the descriptive numbers whose time-and-flow half is
`mapek.insights`, under the same contract and conventions (stated there): exact numbers
over the pipeline's history, each a plain function from rows to msgspec Structs ready
for JSON or a template, no I/O and no clock. The adapters read the rows and pass them
in: the store's `phases` projection (`mapek.insights.Phase`, a case's stay in one
workflow), the Monitor's observations (`mapek.monitor.Observation`, one work item),
the case attributes (segment, deal_acv, discount_percent, margin_percent) and the cost
model of costs.yaml (`CostModel`, loaded by adapters/reports/costs.py).

Three parts, each on the one before:

- conversion: `conversion` follows cases from lead to booked revenue, deals by
  segment; a `Funnel` (`PIPELINE`: PIPELINE.md's five workflows) says where the
  pipeline marks each step, `completed_cases` finds the cases in which a marking
  task completed, and `deal_status` sorts each deal into booked, open or lost.
- cost: `priced_items` values people's time (the work items they completed) at the
  rates of a `CostModel`; `process_cost` sums it per role and workflow.
- profitability: `deal_profitability` charges each deal (with its `deal_status`:
  booked, open or lost) the priced work on its case as its cost to serve, against its
  revenue; segments sum the deals of one status (booked: revenue that is real).

The money, defined once:

- net revenue (first year): ACV x (1 - discount), the discount clamped to 0..1; a
  missing or unreadable number counts as 0. Deals without a segment are in
  `UNKNOWN_SEGMENT`.
- process cost: a person's paid working hours, shared equally among the work items
  they hold at each moment (`shared_hours`), times their own role's hourly rate. The
  log has no effort, only when work was put in front of someone and done; this is
  the upper bound of effort that cannot exceed what the person is paid for.
- deal contribution (first year): ACV x (1 - discount) x gross margin share (the
  deal's `margin_percent`, else the model's default) - cost to serve (the process
  cost of the deal's own case, approval to revenue).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any

import msgspec
import numpy as np

from mapek.insights import _HOUR, Phase, RoleOfPerson
from mapek.monitor import Observation, utc_offset


# ------------------------------------------------------------------ conversion
class Funnel(msgspec.Struct, frozen=True):
    """Where the pipeline marks each step of a case (PIPELINE.md's five workflows)."""

    leads: str = "lead-qualification"
    qualified: tuple[str, str] = ("lead-qualification", "AssignToSDR")
    deals: str = "deal-approval-gate"
    approved: tuple[str, str] = ("deal-approval-gate", "AllApprovalsComplete")
    # A signed contract hands the deal on to one of these (discount or not).
    signed: tuple[str, ...] = ("pricing-exception", "revenue-recognition")
    booked: tuple[str, str] = ("revenue-recognition", "BookRevenue")


PIPELINE = Funnel()
UNKNOWN_SEGMENT = "(none)"


class SegmentConversion(msgspec.Struct, frozen=True):
    """Deals of one segment from approval gate to booked revenue."""

    segment: str
    deals: int
    approved: int
    signed: int
    booked: int
    open: int  # still in some workflow
    lost: int  # ended without revenue booked (rejected, expired, denied, written off)
    pipeline_acv: float  # ACV of every deal that entered
    booked_acv: float
    booked_net: float  # booked ACV after discount: ACV x (1 - discount)
    win_rate: float | None  # booked / (booked + lost): among the deals decided


class Conversion(msgspec.Struct, frozen=True):
    """Leads -> qualified -> deals -> approved -> signed -> booked, and per segment."""

    leads: int
    leads_qualified: int
    deals: int
    deals_approved: int
    deals_signed: int
    deals_booked: int
    booked_acv: float
    booked_net: float
    lead_to_qualified: float | None  # shares, 0..1
    lead_to_deal: float | None
    deal_to_booked: float | None
    segments: list[SegmentConversion]  # largest pipeline ACV first, then the total
    total: SegmentConversion


def _number(v: object) -> float:
    try:
        x = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return x if math.isfinite(x) else 0.0


def _acv(attributes: Mapping[str, Mapping[str, Any]], case_id: str) -> float:
    return _number(attributes.get(case_id, {}).get("deal_acv"))


def _net(attributes: Mapping[str, Mapping[str, Any]], case_id: str) -> float:
    """ACV after discount: what the customer pays for the first year."""
    discount = min(max(_number(attributes.get(case_id, {}).get("discount_percent")), 0.0), 1.0)
    return _acv(attributes, case_id) * (1.0 - discount)


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def deal_status(phases: Iterable[Phase], booked: set[str], funnel: Funnel = PIPELINE,
                ) -> dict[str, str]:
    """Each deal (a case that entered the deals workflow): booked, open (a stay not yet
    left) or lost (every stay ended, no revenue booked)."""
    deals: set[str] = set()
    still: set[str] = set()
    for p in phases:
        if p.workflow_id == funnel.deals:
            deals.add(p.case_id)
        if p.left_at is None:
            still.add(p.case_id)
    return {c: "booked" if c in booked else "open" if c in still else "lost" for c in deals}


def completed_cases(observations: Iterable[Observation], *steps: tuple[str, str],
                    ) -> list[set[str]]:
    """For each (workflow, task): the cases in which it completed."""
    out: list[set[str]] = [set() for _ in steps]
    index = {s: i for i, s in enumerate(steps)}
    for o in observations:
        i = index.get((o.workflow_id, o.task))
        if i is not None and o.outcome == "completed":
            out[i].add(o.case_id)
    return out


def conversion(phases: Iterable[Phase], observations: Iterable[Observation],
               attributes: Mapping[str, Mapping[str, Any]], funnel: Funnel = PIPELINE,
               ) -> Conversion:
    """Counts as /stats counts them: leads and deals are stays in the leads and deals
    workflows, qualified / approved / booked the cases whose marking task completed,
    signed the deals handed on past the contract. Leads carry no segment (a lead turns
    into a deal through a new case, and the log does not link the two), so segments
    start at the deal; a deal without one is in UNKNOWN_SEGMENT."""
    rows = list(phases)
    qualified, approved, booked = completed_cases(observations, funnel.qualified,
                                                  funnel.approved, funnel.booked)
    leads = sum(1 for p in rows if p.workflow_id == funnel.leads)
    signed = {p.case_id for p in rows if p.workflow_id in funnel.signed}
    status = deal_status(rows, booked, funnel)
    per: dict[str, list[str]] = defaultdict(list)
    for case_id in status:
        per[str(attributes.get(case_id, {}).get("segment") or UNKNOWN_SEGMENT)].append(case_id)

    def segment(name: str, cases: list[str]) -> SegmentConversion:
        won = [c for c in cases if status[c] == "booked"]
        lost = sum(1 for c in cases if status[c] == "lost")

        return SegmentConversion(
            name, len(cases), sum(1 for c in cases if c in approved),
            sum(1 for c in cases if c in signed), len(won),
            sum(1 for c in cases if status[c] == "open"), lost,
            math.fsum(_acv(attributes, c) for c in cases),
            math.fsum(_acv(attributes, c) for c in won),
            math.fsum(_net(attributes, c) for c in won), _share(len(won), len(won) + lost))

    segments = [segment(k, v) for k, v in per.items()]
    segments.sort(key=lambda s: (-s.pipeline_acv, s.segment))
    total = segment("all", list(status))
    # Deals and approvals as /stats counts them: every stay in the deals workflow, and
    # approvals wherever the marking task completed (a deal case, or one the phases lack).
    deals = sum(1 for p in rows if p.workflow_id == funnel.deals)
    return Conversion(
        leads, len(qualified), deals, len(approved), total.signed, len(booked),
        math.fsum(_acv(attributes, c) for c in booked),
        math.fsum(_net(attributes, c) for c in booked),
        _share(len(qualified), leads), _share(deals, leads), _share(len(booked), deals),
        segments, total)


# ------------------------------------------------------------------ cost
class WorkingHours(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The hours a person is paid for, on their own clock (roles.yaml time zone)."""

    start: Annotated[int, msgspec.Meta(ge=0, le=23)] = 9
    end: Annotated[int, msgspec.Meta(ge=1, le=24)] = 17
    weekdays: tuple[Annotated[int, msgspec.Meta(ge=0, le=6)], ...] = (0, 1, 2, 3, 4)  # Mon 0


class CostModel(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What an hour of each role costs, and how to count a task's hours (costs.yaml)."""

    # role -> cost of an hour (>= 0; the loader names a bad entry by its key)
    rates: dict[str, float]
    currency: str = "USD"
    # Paid hours a person's time is counted in (None: around the clock).
    working_hours: WorkingHours | None = msgspec.field(default_factory=WorkingHours)
    # Tasks whose elapsed time is someone else's (a customer signing, paying): charged
    # this many hours of the person's time instead of a share of their working time.
    effort_hours: dict[str, float] = {}
    # Gross margin share of a deal's revenue when its data carries no margin_percent.
    default_margin: Annotated[float, msgspec.Meta(ge=0, le=1)] = 1.0


class RoleCost(msgspec.Struct, frozen=True):
    role: str
    rate: float | None  # None: no rate in the cost model (hours shown, not priced)
    items: int
    hours: float
    cost: float | None
    standard_items: int  # of `items`, charged at a task's effort_hours


class WorkflowCost(msgspec.Struct, frozen=True):
    workflow_id: str
    cases: int  # cases with priced work in this workflow
    hours: float
    cost: float
    by_role: dict[str, float]  # role -> cost
    cost_per_case: float | None


class ProcessCost(msgspec.Struct, frozen=True):
    currency: str
    roles: list[RoleCost]  # most cost first; unpriced last
    workflows: list[WorkflowCost]
    total_hours: float
    total_cost: float
    unpriced_hours: float  # hours of roles without a rate


class PricedItem(msgspec.Struct, frozen=True, gc=False):
    case_id: str
    workflow_id: str
    task: str
    role: str
    hours: float
    standard: bool  # charged effort_hours, not the measured time
    cost: float | None


def working_seconds(at: np.ndarray, zone: str, hours: WorkingHours | None) -> np.ndarray:
    """Paid seconds from a fixed origin to each epoch time `at`, on `zone`'s clock: the
    difference of two values is the working time between them (a night, a weekend
    count nothing). None: every second counts."""
    at = np.asarray(at, dtype=float)
    if hours is None:
        return at
    offsets = np.array([utc_offset(zone, t) for t in at.tolist()], dtype=float)
    local = at + offsets
    day = np.floor(local / 86_400.0)
    into = local - day * 86_400.0
    since_monday = day + 3  # 1970-01-01 was a Thursday: day + 3 counts from a Monday
    weeks, weekday = np.divmod(since_monday, 7)
    works = np.zeros(7, bool)
    works[sorted(set(hours.weekdays))] = True
    before = np.concatenate([[0], np.cumsum(works)])  # working days before each weekday
    span = max(hours.end - hours.start, 0) * 3600.0
    today = np.clip(into - hours.start * 3600.0, 0.0, span) * works[weekday.astype(np.int64)]
    return (weeks * works.sum() + before[weekday.astype(np.int64)]) * span + today


def shared_hours(begin: np.ndarray, end: np.ndarray, paid: Callable[[np.ndarray], np.ndarray],
                 ) -> np.ndarray:
    """One person's paid time divided among the items they hold: at each moment the
    items open are charged equal shares of it. Items' hours sum to the paid time during
    which the person held anything, never more, however many items pile up."""
    n = begin.size
    if n == 0:
        return np.zeros(0)
    points = np.unique(np.concatenate([begin, end]))
    lo = np.searchsorted(points, begin)
    hi = np.searchsorted(points, end)
    holding = np.cumsum(np.bincount(lo, minlength=points.size)
                        - np.bincount(hi, minlength=points.size))[:-1]  # per segment
    worked = np.diff(paid(points)) / _HOUR
    share = np.where(holding > 0, worked / np.maximum(holding, 1), 0.0)
    cumulative = np.concatenate([[0.0], np.cumsum(share)])
    return cumulative[hi] - cumulative[lo]


def priced_items(observations: Iterable[Observation], model: CostModel,
                 role_of_person: RoleOfPerson | None = None,
                 zone_of_person: Callable[[str], str] | None = None,
                 now: float | None = None) -> list[PricedItem]:
    """Every completed work item a person did, with its hours and their cost.

    The log records when work was put in front of someone and when it was done, not the
    effort in between; what it does bound is the person's time. So a person's paid
    working hours (`model.working_hours`, on their clock) are shared among the items
    they hold -- from start, or dispatch when nobody marked a start, to completion --
    equally at each moment (`shared_hours`): ten approvals waiting at once cost an hour
    of the approver's hour, not ten. That counts all of a busy person's paid time as
    pipeline work, so it is an upper bound of effort, but one that cannot exceed what
    the person is paid for. Tasks in `effort_hours` (a customer's time: signing,
    paying) are charged that standard effort instead and hold no share.

    The rate is that of the person's own role (a CFO approving as sales manager costs a
    CFO's hour), else of the role the task is offered to. Automatic items (no role) and
    items closed by a timer or a system are not work of a person. Items still open
    share the person's time until `now` (default: the person's last completion) but
    are not priced: they are not done yet.
    """
    zone_of = zone_of_person or (lambda _person: "UTC")
    held: dict[str, list[tuple[Observation, str]]] = defaultdict(list)
    out = []
    for o in observations:
        if o.by is None or o.role is None or o.outcome == "cancelled":
            continue
        own = role_of_person(o.by) if role_of_person is not None else o.role
        if own is None:
            continue
        standard = model.effort_hours.get(o.task)
        if standard is not None:
            if o.outcome == "completed":
                rate = model.rates.get(own)
                out.append(PricedItem(o.case_id, o.workflow_id, o.task, own, standard, True,
                                      None if rate is None else standard * rate))
            continue
        held[o.by].append((o, own))
    for person, items in held.items():
        begin = np.array([o.started_at if o.started_at is not None else o.dispatched_at
                          for o, _ in items], dtype=float)
        end = np.array([o.closed_at if o.closed_at is not None else np.inf
                        for o, _ in items], dtype=float)
        until = now if now is not None else float(end[np.isfinite(end)].max(
            initial=begin.max()))
        end = np.maximum(np.minimum(end, until), begin)  # open: held until `until`
        zone = zone_of(person)
        hours = shared_hours(begin, end, lambda t, zone=zone: working_seconds(
            t, zone, model.working_hours))
        for (o, own), h in zip(items, hours.tolist(), strict=True):
            if o.outcome != "completed":
                continue
            rate = model.rates.get(own)
            out.append(PricedItem(o.case_id, o.workflow_id, o.task, own, h, False,
                                  None if rate is None else h * rate))
    out.sort(key=lambda it: (it.case_id, it.workflow_id, it.task))
    return out


def process_cost(items: Iterable[PricedItem], model: CostModel) -> ProcessCost:
    """Hours and cost per role and per workflow; totals add up to the items' sums."""
    role_hours: dict[str, float] = defaultdict(float)
    role_items: Counter[str] = Counter()
    role_std: Counter[str] = Counter()
    wf_hours: dict[str, float] = defaultdict(float)
    wf_roles: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    wf_cases: dict[str, set[str]] = defaultdict(set)
    unpriced = 0.0
    for it in items:
        role_hours[it.role] += it.hours
        role_items[it.role] += 1
        role_std[it.role] += it.standard
        if it.cost is None:
            unpriced += it.hours
            continue
        wf_hours[it.workflow_id] += it.hours
        wf_roles[it.workflow_id][it.role] += it.cost
        wf_cases[it.workflow_id].add(it.case_id)
    roles = []
    for role, hours in role_hours.items():
        rate = model.rates.get(role)
        roles.append(RoleCost(role, rate, role_items[role], hours,
                              None if rate is None else hours * rate, role_std[role]))
    roles.sort(key=lambda r: (r.cost is None, -(r.cost or 0.0), -r.hours, r.role))
    workflows = []
    for wf in sorted(wf_roles):
        cost = math.fsum(wf_roles[wf].values())
        n = len(wf_cases[wf])
        workflows.append(WorkflowCost(wf, n, wf_hours[wf], cost,
                                      dict(sorted(wf_roles[wf].items())),
                                      cost / n if n else None))
    return ProcessCost(model.currency, roles, workflows, math.fsum(role_hours.values()),
                       math.fsum(r.cost or 0.0 for r in roles), unpriced)


# ------------------------------------------------------------------ profitability
class DealProfit(msgspec.Struct, frozen=True):
    case_id: str
    segment: str
    status: str  # booked | open | lost
    acv: float
    discount: float  # share, 0..1
    net_revenue: float  # acv x (1 - discount)
    margin_share: float  # gross margin share of revenue (margin_percent or default)
    gross_margin: float  # net_revenue x margin_share
    cost_to_serve: float  # priced work on the case
    contribution: float  # gross_margin - cost_to_serve
    contribution_share: float | None  # contribution / net_revenue


class SegmentProfit(msgspec.Struct, frozen=True):
    segment: str
    deals: int
    acv: float
    discount_given: float  # acv - net revenue: what the discounts cost
    net_revenue: float
    gross_margin: float
    cost_to_serve: float
    contribution: float
    contribution_share: float | None  # contribution / net revenue
    cost_per_deal: float | None
    losing: int  # deals whose cost to serve exceeds their gross margin


class Profitability(msgspec.Struct, frozen=True):
    currency: str
    basis: str  # which deals the segments sum: "booked"
    segments: list[SegmentProfit]  # most contribution first
    total: SegmentProfit
    deals: list[DealProfit]  # every deal, least contribution share first


def deal_profitability(status: Mapping[str, str], attributes: Mapping[str, Mapping[str, Any]],
                       items: Iterable[PricedItem], model: CostModel, *,
                       basis: str = "booked") -> Profitability:
    """A deal's first-year contribution: its ACV after discount, times its gross margin
    share (`margin_percent` of the deal, else the model's `default_margin`), minus the
    cost to serve it (the priced work of `priced_items` on its case, in every workflow
    it passed through; its lead is another case and not counted). Segments sum the
    deals of `status` == `basis` (booked: revenue that is real); `deals` lists all."""
    cost: dict[str, float] = defaultdict(float)
    for it in items:
        if it.cost is not None:
            cost[it.case_id] += it.cost
    deals = []
    for case_id, st in status.items():
        a = attributes.get(case_id, {})
        acv = _number(a.get("deal_acv"))
        discount = min(max(_number(a.get("discount_percent")), 0.0), 1.0)
        margin = a.get("margin_percent")
        share = min(max(_number(margin), 0.0), 1.0) if margin is not None else model.default_margin
        net = acv * (1.0 - discount)
        gross = net * share
        contribution = gross - cost[case_id]
        deals.append(DealProfit(case_id, str(a.get("segment") or UNKNOWN_SEGMENT), st, acv,
                                discount, net, share, gross, cost[case_id], contribution,
                                contribution / net if net > 0 else None))
    deals.sort(key=lambda d: (d.contribution_share if d.contribution_share is not None
                              else -math.inf, d.case_id))

    def segment(name: str, rows: list[DealProfit]) -> SegmentProfit:
        net = math.fsum(d.net_revenue for d in rows)
        serve = math.fsum(d.cost_to_serve for d in rows)
        contribution = math.fsum(d.contribution for d in rows)
        return SegmentProfit(name, len(rows), math.fsum(d.acv for d in rows),
                             math.fsum(d.acv - d.net_revenue for d in rows), net,
                             math.fsum(d.gross_margin for d in rows), serve, contribution,
                             contribution / net if net > 0 else None,
                             serve / len(rows) if rows else None,
                             sum(1 for d in rows if d.contribution < 0))

    counted = [d for d in deals if d.status == basis]
    per: dict[str, list[DealProfit]] = defaultdict(list)
    for d in counted:
        per[d.segment].append(d)
    segments = sorted((segment(k, v) for k, v in per.items()),
                      key=lambda s: (-s.contribution, s.segment))
    return Profitability(model.currency, basis, segments, segment("all", counted), deals)
