"""Monitor: the event log, tailed off the hot path, turned into observations of work.

Theory of operation
-------------------
The store numbers every append (`pos`); the monitor reads the appends after the last
position it saw and folds their events into one `Observation` per work item: when it
was enabled, started and closed, by whom, with what result, in which workflow, and a
few attributes of its case (ACV, contract type, discount). Items still open are kept
as right-censored observations (closed_at None), never dropped: a slow approval that
has not finished yet is exactly the one that matters. SLA breaches and their
resolutions are observations too.

Nothing here runs on the command path: reading is on the store's reading connection,
on demand (`catch_up()` before answering a question), so a burst of completions costs
the monitor nothing until someone asks. A restart rebuilds everything from the log.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import anyio
import msgspec

from engine.events import (
    CaseCreated,
    CaseHandedOn,
    SlaBreached,
    SlaResolved,
    TaskFired,
    WorkItemCancelled,
    WorkItemCompleted,
    WorkItemEnabled,
    WorkItemStarted,
)

# Case data worth keeping beside each observation (segmenting response times).
ATTRIBUTES = ("deal_acv", "contract_type", "discount_percent", "company_size", "industry")


class EventLog(Protocol):
    async def read_events(self, after_pos: int = 0, limit: int = 10_000,
                          ) -> list[tuple[int, str, int, list[Any]]]: ...


class Observation(msgspec.Struct, gc=False):
    case_id: str
    workflow_id: str
    task: str
    item: int
    enabled_at: float
    started_at: float | None = None
    closed_at: float | None = None  # None: still open (right-censored)
    outcome: str | None = None  # completed | cancelled
    by: str | None = None
    result: str | None = None
    role: str | None = None  # the role the task is offered to (None: automatic/unknown)
    held_until: float | None = None  # dispatch held by a policy until then (WorkItemHeld)
    source: str = "log"  # "log": this engine's events; "import": history from a CSV

    @property
    def dispatched_at(self) -> float:
        """When the work was put in front of someone: enabled, or released from a hold."""
        h = self.held_until
        return self.enabled_at if h is None or h < self.enabled_at else h

    def hours(self, now: float) -> float:
        """Time from enabled to closed (or to `now` for an open item), in hours."""
        return ((self.closed_at if self.closed_at is not None else now)
                - self.enabled_at) / 3600.0


class Breach(msgspec.Struct, gc=False):
    case_id: str
    workflow_id: str
    item: int  # 0: the stay in the workflow
    task: str
    at: float
    target: float
    alert: float
    resolved_at: float | None = None


class Monitor:
    def __init__(self, log: EventLog, batch: int = 10_000) -> None:
        self.log = log
        self.batch = batch
        self.pos = 0
        self.closed: list[Observation] = []
        self.open: dict[tuple[str, int], Observation] = {}
        self.breaches: list[Breach] = []
        self._open_breach: dict[tuple[str, int], Breach] = {}
        self.fired: Counter[tuple[str, str]] = Counter()  # (workflow, task) empty tasks
        self.attributes: dict[str, dict[str, Any]] = {}
        self._workflow: dict[str, str] = {}
        self._lock = anyio.Lock()
        self._absorbed = 0

    async def catch_up(self) -> None:
        """Fold every append committed since the last call."""
        async with self._lock:
            while True:
                rows = await self.log.read_events(self.pos, self.batch)
                for pos, case_id, _first, events in rows:
                    self.observe(case_id, events)
                    self.pos = pos
                if len(rows) < self.batch:
                    return

    def observe(self, case_id: str, events: Iterable[Any]) -> None:
        for e in events:
            t = type(e)
            if t is WorkItemEnabled:
                if e.parent < 0:
                    self.open[(case_id, e.item)] = Observation(
                        case_id, self._workflow.get(case_id, ""), e.task, e.item, e.at)
            elif t is WorkItemStarted:
                o = self.open.get((case_id, e.item))
                if o is not None:
                    o.started_at, o.by = e.at, e.by
            elif t is WorkItemCompleted or t is WorkItemCancelled:
                o = self.open.pop((case_id, e.item), None)
                if o is not None:
                    o.closed_at = e.at
                    if t is WorkItemCompleted:
                        o.outcome, o.result = "completed", e.result
                        o.by = e.by or o.by
                    else:
                        o.outcome = "cancelled"
                    self.closed.append(o)
                if t is WorkItemCompleted and e.output:
                    self._remember(case_id, e.output)
            elif t is TaskFired:
                self.fired[(self._workflow.get(case_id, ""), e.task)] += 1
            elif t is CaseCreated or t is CaseHandedOn:
                self._workflow[case_id] = e.workflow_id
                self._remember(case_id, e.data if t is CaseCreated else e.defaults or {})
            elif t is SlaBreached:
                b = Breach(case_id, self._workflow.get(case_id, ""), e.item, e.task, e.at,
                           e.target, e.alert)
                self.breaches.append(b)
                self._open_breach[(case_id, e.item)] = b
            elif t is SlaResolved:
                b = self._open_breach.pop((case_id, e.item), None)
                if b is not None:
                    b.resolved_at = e.at

    def absorb(self, observations: Iterable[Observation]) -> None:
        """Add observations that did not come from this log (imported history)."""
        for o in observations:
            if o.closed_at is None:
                self._absorbed += 1  # negative keys: never matched by a log event
                self.open[(f"import:{o.case_id}", -self._absorbed)] = o
            else:
                self.closed.append(o)

    def _remember(self, case_id: str, data: dict[str, Any]) -> None:
        kept = {k: data[k] for k in ATTRIBUTES if k in data}
        if kept:
            self.attributes.setdefault(case_id, {}).update(kept)

    # ------------------------------------------------------------------ queries
    def observations(self, workflow_id: str | None = None, task: str | None = None,
                     since: float = float("-inf")) -> Iterator[Observation]:
        """Closed and open observations of items enabled since `since`."""
        for pool in (self.closed, self.open.values()):
            for o in pool:
                if (o.enabled_at >= since and (workflow_id is None or o.workflow_id == workflow_id)
                        and (task is None or o.task == task)):
                    yield o

    def completions(self, workflow_id: str, task: str) -> int:
        """How many times a task completed (work items and empty tasks)."""
        return self.fired[(workflow_id, task)] + sum(
            1 for o in self.closed
            if o.outcome == "completed" and o.workflow_id == workflow_id and o.task == task)

    def cases_completing(self, workflow_id: str, task: str) -> set[str]:
        return {o.case_id for o in self.closed if o.outcome == "completed"
                and o.workflow_id == workflow_id and o.task == task}
