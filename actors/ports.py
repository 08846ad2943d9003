"""The ports the runtime consults: a store, a clock, service levels (SLOs) and the
dispatch, routing and escalation policies (which the MAPE-K loop may change).

They are Protocols defined here, next to their user, so that actors/ depends on no
adapter: SQLite or PostgreSQL stores and the system clock implement them from above.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import msgspec


class CaseRow(msgspec.Struct, gc=False):
    """The cases projection: one row per case, updated with every append."""

    case_id: str
    workflow_id: str
    workflow_version: int
    state: str
    created_at: float
    updated_at: float
    closed_at: float | None
    seq: int  # events in the case's log


class ItemRow(msgspec.Struct, gc=False):
    """The open work items projection (worklists, least-loaded assignment, timers)."""

    case_id: str
    item: int
    task: str
    kind: str  # human | automatic | composite
    role: str | None
    state: str  # enabled | started | failed
    enabled_at: float
    due: float | None
    assignee: str | None = None
    held_until: float | None = None  # dispatch held by a policy until then


class PhaseChange(msgspec.Struct, gc=False, array_like=True):
    """A case entering a workflow ("open") or leaving its current one ("close").

    The phases projection gives each workflow its own cases and cycle times even
    though a deal keeps one case id from WF2 to WF5 (metrics, SLOs).
    """

    op: str  # open | close
    at: float
    workflow_id: str = ""  # open only
    version: int = 0  # open only
    outcome: str = ""  # close only: completed | cancelled | failed


class Notice(msgspec.Struct, frozen=True):
    """A notification to deliver, written to the outbox in the same transaction as the
    events that caused it (so a breach is never recorded without its notification,
    nor notified without being recorded). `channel` is webhook, slack or email;
    `target` a URL or an e-mail address; `key` makes it unique (a retried command
    does not notify twice)."""

    key: str
    channel: str
    target: str
    topic: str  # e.g. sla.breached
    subject: str
    body: str
    case_id: str = ""
    payload: dict[str, Any] = {}


class Append(msgspec.Struct, gc=False):
    """One case's new events with the projection changes they cause.

    `first_seq` is the sequence number of the first event (expected version + 1): a
    store must refuse the append if the case already has an event with that number.
    """

    case_id: str
    first_seq: int
    events: list[Any]
    case: CaseRow
    item_upserts: list[ItemRow]
    item_deletes: list[int]
    snapshot: bytes | None = None  # the state after these events, msgpack
    # In event order; None on most appends. Only appends with phases change the case's
    # workflow, version, state or closed_at: a store may write just the time and
    # version of the case row of an append without (adapters.sqlite_store).
    phases: list[PhaseChange] | None = None
    notices: list[Notice] | None = None  # outbox rows caused by these events


class StoredCase(msgspec.Struct):
    case_id: str
    snapshot: bytes | None  # the latest snapshot, if any
    snapshot_seq: int  # events covered by it (0 without one)
    events: list[Any]  # the events after the snapshot, in order


class SpecRow(msgspec.Struct):
    workflow_id: str
    version: int
    digest: str
    document: str
    registered_at: float


# Where a timer stands in the order timers are read in: (due, case_id, item).
TimerKey = tuple[float, str, int]


class TimerRow(msgspec.Struct):
    case_id: str
    item: int
    due: float

    def key(self) -> TimerKey:
        return (self.due, self.case_id, self.item)


class AppendConflict(Exception):
    """Another writer appended to the case first (optimistic concurrency)."""

    def __init__(self, case_id: str, seq: int) -> None:
        super().__init__(f"case {case_id!r} already has event {seq}: concurrent writer")
        self.case_id = case_id
        self.seq = seq


class EventStore(Protocol):
    async def append(self, batch: Append) -> None:
        """Queue the append synchronously, then return once it is durable (COMMIT).

        The queueing happens before the first suspension point, so appends are
        committed in the order the runtime made them. Raises AppendConflict; an
        exception whose class has `transient = True` says the append was not written
        but the same may be later (another process held the lock): the runtime waits
        and tries again where running the command again would repeat an effect.
        """
        ...

    async def load(self, case_id: str) -> StoredCase | None: ...

    async def case_exists(self, case_id: str) -> bool: ...

    async def save_spec(self, row: SpecRow) -> None: ...

    async def specs(self) -> list[SpecRow]: ...

    async def pending_timers(self, after: TimerKey | None = None,
                             limit: int | None = None) -> list[TimerRow]:
        """Work items' timers in (due, case_id, item) order, those after `after` only,
        at most `limit`."""
        ...

    async def open_items(self, kind: str | None = None) -> list[ItemRow]: ...

    async def open_phases(self) -> list[tuple[str, str, float]]:
        """(case_id, workflow_id, entered_at) of every case still in a workflow."""
        ...


class SlaTarget(msgspec.Struct, frozen=True):
    target: float  # seconds: what good looks like
    alert: float  # seconds: when a breach is raised


class SlaPolicy(Protocol):
    """Service levels: the targets of a task (or, with task None, of a stay in a
    workflow), and who hears of a breach. Deadlines follow from durable data (when
    the item was enabled, when the case entered the workflow) plus these targets, so
    after a restart the runtime re-arms them from the projections."""

    def target(self, workflow_id: str, task: str | None) -> SlaTarget | None: ...

    def notices(self, case_id: str, workflow_id: str, breach: Any,
                data: Mapping[str, Any] | None = None) -> list[Notice]:
        """Who hears of `breach` of case `case_id`, whose data is `data` (so the notice
        can name the deal, not only its case id)."""
        ...


class RoutingRule(msgspec.Struct, frozen=True):
    """How to choose among a role's people for a task: `prefer` first (when any is
    available), never `avoid` (unless nobody else is left)."""

    prefer: tuple[str, ...] = ()
    avoid: tuple[str, ...] = ()


class RoutingPolicy(Protocol):
    def rule(self, workflow_id: str, task: str) -> RoutingRule | None:
        """The rule an assignment task (`assign_least_loaded`) follows: its own, merged
        with the rules of the later tasks whose performer its choice decides (the SDR a
        lead is assigned to works the deal's SDR tasks) -- the policy knows that link,
        the assignment does not."""
        ...


class EscalationRule(msgspec.Struct, frozen=True):
    """Raise a task's SLA alert `after` seconds from enabling -- earlier than its SLO's
    own alert threshold -- and tell the people of `to_role` (who can act on it)."""

    after: float  # seconds
    to_role: str
    version: int  # the policy version that set it


class EscalationPolicy(Protocol):
    """Earlier alerts for tasks whose breaches can be seen coming (the MAPE-K loop's
    escalations). Consulted with the SLA policy whenever a task's deadline is armed:
    a dictionary lookup for a task without one."""

    def escalation(self, workflow_id: str, task: str) -> EscalationRule | None: ...


class DispatchPolicy(Protocol):
    """When new work may be put in front of someone (the MAPE-K loop's dispatch windows).

    Consulted once per newly enabled work item, inside the command that enables it."""

    def hold_until(self, workflow_id: str, task: str, at: float) -> tuple[float, int] | None:
        """(release time, policy version) to hold an item enabled at `at`; None: dispatch
        now."""
        ...


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep_until(self, deadline: float) -> None: ...
