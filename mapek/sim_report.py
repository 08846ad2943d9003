"""What a pipeline simulation reports: progress while it runs, a summary at the end.

Theory of operation
-------------------
The simulation's store tap hands every durable append to a `Tally`, which keeps only
counters and the open stay of each case: where each case is now (workflow, state),
when it entered its current workflow, how long each completed stay took, how work
items were completed (by people, by customers through the billing and e-signature
systems, by actions, by timers that complete on timeout) and how many SLA breaches
were recorded. Stays come from the appends' phase changes (a deal keeps one case id
from WF2 to WF5, so each workflow it passes through counts as one stay). Nothing is
read back from the store, so the summary costs nothing extra on SQLite or in memory.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import msgspec

from actors.ports import Append
from engine.events import SlaBreached, WorkItemCompleted

HOUR = 3600.0
DAY = 86400.0


class Progress(msgspec.Struct):
    now: float
    start: float
    end: float
    leads: int  # lead cases opened so far
    deals: int  # deal cases opened so far
    deals_planned: int
    events: int


class PhaseStats(msgspec.Struct):
    workflow_id: str
    entered: int
    completed: int
    cancelled: int
    failed: int
    open: int
    mean_hours: float | None  # of the stays that completed
    p95_hours: float | None


class SimulationSummary(msgspec.Struct):
    start: float
    end: float
    pattern: str
    seed: int
    leads: int
    deals: int
    deals_planned: int
    cases: dict[str, dict[str, int]]  # current workflow -> case state -> count
    phases: list[PhaseStats]
    completions: dict[str, int]  # people, customers, actions, timers
    sla_breaches: int
    events: int
    stale: int  # planned actions whose item had gone (withdrawn, timed out, cancelled)
    unstaffed: int  # items nobody with the authority could take
    incidents: int  # work items failed and not picked up again by the end

    @property
    def span_days(self) -> float:
        return (self.end - self.start) / DAY


class Tally:
    """Counts what the appends of a simulation say happened."""

    def __init__(self, signals_by: str) -> None:
        self.signals_by = signals_by
        self.where: dict[str, tuple[str, str]] = {}  # case -> (workflow, state)
        self.stay: dict[str, tuple[str, float]] = {}  # case -> (workflow, entered at)
        self.stays: dict[str, list[float]] = {}  # workflow -> completed stays (seconds)
        self.outcomes: dict[str, Counter[str]] = {}
        self.entered = Counter[str]()
        self.completions = Counter[str]()
        self.breaches = self.events = 0

    def observe(self, batch: Append) -> None:
        cid = batch.case_id
        self.events += len(batch.events)
        self.where[cid] = (batch.case.workflow_id, batch.case.state)
        for p in batch.phases or ():
            if p.op == "open":
                self.stay[cid] = (p.workflow_id, p.at)
                self.entered[p.workflow_id] += 1
            elif cid in self.stay:
                wf, since = self.stay.pop(cid)
                self.outcomes.setdefault(wf, Counter())[p.outcome] += 1
                if p.outcome == "completed":
                    self.stays.setdefault(wf, []).append(p.at - since)
        for e in batch.events:
            t = type(e)
            if t is WorkItemCompleted:
                by = e.by or ""
                self.completions["actions" if by.startswith("action:") else
                                 "customers" if by == self.signals_by else
                                 "timers" if by == "timer" else "people"] += 1
            elif t is SlaBreached:
                self.breaches += 1

    def summary(self, *, start: float, end: float, pattern: str, seed: int, leads: int,
                deals: int, deals_planned: int, order: Sequence[str], stale: int,
                unstaffed: int, incidents: int) -> SimulationSummary:
        cases: dict[str, dict[str, int]] = {}
        for wf, state in self.where.values():
            row = cases.setdefault(wf, {})
            row[state] = row.get(state, 0) + 1
        rank = {w: i for i, w in enumerate(order)}
        phases = []
        for wf in sorted(self.entered, key=lambda w: (rank.get(w, len(rank)), w)):
            out = self.outcomes.get(wf, Counter())
            done = self.stays.get(wf, [])
            p95 = _percentile(done, 0.95)
            phases.append(PhaseStats(
                wf, self.entered[wf], out["completed"], out["cancelled"], out["failed"],
                self.entered[wf] - sum(out.values()),
                sum(done) / len(done) / HOUR if done else None,
                None if p95 is None else p95 / HOUR))
        return SimulationSummary(
            start, end, pattern, seed, leads, deals, deals_planned,
            {k: cases[k] for k in sorted(cases)}, phases, dict(sorted(self.completions.items())),
            self.breaches, self.events, stale, unstaffed, incidents)


def _percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank percentile (no interpolation: a value that happened)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]
