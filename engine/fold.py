"""The fold: how each event changes a case. State is a fold over the events.

`APPLY[type(event)](case, event)` is the only code that mutates a case: commands in
`engine.case` decide which events happen and apply them through this table, and
`replay` applies a stored log through the same table -- so a replayed case is the
same case. Each function trusts its event: the decisions were made when it was
emitted (which conditions a firing consumed and produced are in the event).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .errors import EngineError
from .events import (
    CaseCancelled,
    CaseCompleted,
    CaseCreated,
    CaseFailed,
    CaseHandedOn,
    SlaBreached,
    SlaResolved,
    TaskFired,
    TimerFired,
    TimerSet,
    TokensAdded,
    TokensRemoved,
    WorkItemCancelled,
    WorkItemCompleted,
    WorkItemEnabled,
    WorkItemFailed,
    WorkItemHeld,
    WorkItemReassigned,
    WorkItemRetried,
    WorkItemStarted,
)
from .net import PARTIAL, Task
from .net import consumption as _consumption

if TYPE_CHECKING:
    from .case import Case

ENABLED, STARTED, FAILED = "enabled", "started", "failed"
ACTIVE, COMPLETED, CANCELLED, CASE_FAILED = "active", "completed", "cancelled", "failed"


class WorkItem:
    """An open work item. Immutable by convention: the fold replaces, never edits.

    Most open items are offers nobody has taken up yet, so this class has slots for the
    five fields every item has. The fields few items ever set (when and by whom it was
    started, a timer, a hold, per-instance data) read as None from the class here and
    have slots in `WorkItemEx`, which an item becomes when the fold sets one (`_copy`):
    an offered item is 40 bytes smaller, and offered items are most of an open case.
    """

    __slots__ = ("enabled_at", "id", "parent", "state", "task")
    data: dict[str, Any] | None = None
    started_at: float | None = None
    by: str | None = None
    due: float | None = None
    held_until: float | None = None  # a dispatch policy's hold (WorkItemHeld)
    spawned = done = 0  # only multiple-instance parents count instances (MIWorkItem)
    outputs: tuple[Any, ...] = ()

    def __init__(self, id: int, task: int, state: str, enabled_at: float,
                 parent: int = -1) -> None:
        self.id = id
        self.task = task
        self.state = state
        self.enabled_at = enabled_at
        self.parent = parent

    def _copy(self) -> WorkItem:
        """A copy to edit: a `WorkItemEx` (or MIWorkItem), so every field can be set."""
        cls = _EDITABLE.get(type(self), type(self))
        c = object.__new__(cls)
        for s in _SLOTS[cls]:
            setattr(c, s, getattr(self, s))
        return c

    def __repr__(self) -> str:
        return f"<WorkItem {self.id} task#{self.task} {self.state}>"


class WorkItemEx(WorkItem):
    """A work item with every field: one that was started, timed, held or carries data."""

    __slots__ = ("by", "data", "due", "held_until", "started_at")

    def __init__(self, id: int, task: int, state: str, enabled_at: float, parent: int = -1,
                 data: dict[str, Any] | None = None) -> None:
        super().__init__(id, task, state, enabled_at, parent)
        self.data = data
        self.started_at: float | None = None
        self.by: str | None = None
        self.due: float | None = None
        self.held_until: float | None = None


class MIWorkItem(WorkItemEx):
    """The parent item of a multiple-instance task: counts its instances."""

    __slots__ = ("done", "outputs", "spawned")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spawned = 0  # instances created, completed, and their outputs in order
        self.done = 0
        self.outputs = ()


_SLOTS = {WorkItem: WorkItem.__slots__, WorkItemEx: WorkItem.__slots__ + WorkItemEx.__slots__,
          MIWorkItem: WorkItem.__slots__ + WorkItemEx.__slots__ + MIWorkItem.__slots__}
_EDITABLE = {WorkItem: WorkItemEx}


def new_item(id: int, task: int, state: str, enabled_at: float, parent: int = -1,
             data: dict[str, Any] | None = None, mi: bool = False) -> WorkItem:
    """The smallest item that holds these fields (`mi`: a multiple-instance parent)."""
    if mi:
        return MIWorkItem(id, task, state, enabled_at, parent, data)
    if data is None:
        return WorkItem(id, task, state, enabled_at, parent)
    return WorkItemEx(id, task, state, enabled_at, parent, data)


def _marked(tokens: Iterable[int]) -> int:
    m = 0
    for c, n in enumerate(tokens):
        if n:
            m |= 1 << c
    return m


def _counts(case: Case) -> list[int]:
    """The token count per condition, from `counts` or, while that is None, `marked`."""
    if case.counts is not None:
        return list(case.counts)
    return _unpack(case.marked, len(case.net.cond_ids))


def _unpack(marked: int, n: int) -> list[int]:
    out = [0] * n
    while marked:
        low = marked & -marked
        out[low.bit_length() - 1] = 1
        marked ^= low
    return out


def _consume(case: Case, conds: Iterable[int]) -> None:
    marked, dirty = case.marked, case._dirty
    if case.counts is None:  # at most one token each: the marking is the bitset
        for c in conds:
            bit = 1 << c
            if not marked & bit:
                raise _empty(case, c)
            marked ^= bit
            dirty |= bit
    else:
        counts = list(case.counts)
        for c in conds:
            n = counts[c] - 1
            if n < 0:
                raise _empty(case, c)
            counts[c] = n
            if not n:
                marked &= ~(1 << c)
            dirty |= 1 << c
        # Back to None once no condition holds two, as a case restored from a
        # snapshot starts: a restored case is the same state as the live one.
        case.counts = tuple(counts) if max(counts) > 1 else None
    case.marked, case._dirty = marked, dirty


def _empty(case: Case, c: int) -> EngineError:
    return EngineError(f"event takes a token from empty condition "
                       f"{case.net.cond_ids[c]!r}: the log does not fit this net")


def _produce(case: Case, conds: tuple[int, ...]) -> None:
    old = marked = case.marked
    if case.counts is None:  # at most one token each so far
        for c in conds:
            bit = 1 << c
            if marked & bit:
                break  # a second token on one condition: count them (below)
            marked |= bit
        else:
            case.marked = marked
            case._dirty |= marked ^ old
            return
    counts = (_unpack(old, len(case.net.cond_ids)) if case.counts is None
              else list(case.counts))
    bits = 0
    for c in conds:
        counts[c] += 1
        bits |= 1 << c
    case.counts = tuple(counts)
    case.marked = old | bits
    case._dirty |= bits


def _fired(case: Case, t: Task, consumed: tuple[int, ...]) -> None:
    """A partial join remembers which inputs arrived this round.

    One with a cancellation region (the cancelling discriminator, WCP-29/32) cancels
    the branches it did not wait for, so nothing late can come: it resets at once.
    """
    if t.join == PARTIAL and not (t.cancel_mask or t.cancel_tasks):
        m = 0
        for c in consumed:
            m |= 1 << c
        if m != t.preset_mask:
            if case.seen is None:
                case.seen = {}
            case.seen[t.idx] = m


def _a_created(case: Case, e: CaseCreated) -> None:
    case.case_id = e.case_id
    case.data = e.data
    case.created_at = e.at
    case.status = ACTIVE
    _produce(case, (case.net.start,))
    case._dirty = -1  # look at every task once
    case._dirty_busy = -1
    case.version += 1


def _a_handed_on(case: Case, e: CaseHandedOn) -> None:
    net = case.net
    case.counts = None
    case.marked = 0
    case.items = {}
    case.offered = 0
    case.seen = None
    case.status = ACTIVE
    case.hand_on_to = None
    case.closed_at = None
    case.done_tasks = 0
    if e.defaults:
        case.data = {**case.data, **e.defaults}
    _produce(case, (net.start,))
    case._dirty = case._dirty_busy = -1
    case.version += 1


def _a_enabled(case: Case, e: WorkItemEnabled) -> None:
    ti = case.net.task_index[e.task]
    case.items[e.item] = new_item(e.item, ti, ENABLED, e.at, e.parent, e.data,
                                  e.parent < 0 and case.net.tasks[ti].mi is not None)
    if e.parent < 0:
        case.offered |= 1 << ti
    else:
        p = case.items[e.parent]._copy()
        p.spawned += 1
        case.items[e.parent] = p
    if e.item >= case.next_item:
        case.next_item = e.item + 1
    case.version += 1


def _a_held(case: Case, e: WorkItemHeld) -> None:
    it = case.items[e.item]._copy()
    it.held_until = e.until
    case.items[e.item] = it
    case.version += 1


def _a_started(case: Case, e: WorkItemStarted) -> None:
    it = case.items[e.item]._copy()
    if it.state == ENABLED and it.parent < 0:
        case.offered &= ~(1 << it.task)
    it.state = STARTED
    it.started_at = e.at
    it.by = e.by
    case.items[e.item] = it
    if e.consumed:
        _consume(case, e.consumed)
        _fired(case, case.net.tasks[it.task], e.consumed)
    case._dirty_busy |= 1 << it.task
    case.version += 1


def _a_completed(case: Case, e: WorkItemCompleted) -> None:
    it = case.items.pop(e.item)
    ti = it.task
    top = it.parent < 0
    if top and it.state == ENABLED:
        # Completed straight from the offer: no running item ended, so the OR-joins
        # watching ti's running items need no second look (the tokens it took and
        # gave have the settle look at what they touch).
        case.offered &= ~(1 << ti)
    else:
        case._dirty_busy |= 1 << ti
    if e.consumed:
        _consume(case, e.consumed)
        if case.net.tasks[ti].join == PARTIAL:
            _fired(case, case.net.tasks[ti], e.consumed)
    if top:
        if e.output:
            case.data = {**case.data, **e.output}
        case.done_tasks |= 1 << ti
    else:
        p = case.items.get(it.parent)
        if p is not None:
            p = p._copy()
            p.done += 1
            p.outputs = (*p.outputs, e.output)
            case.items[p.id] = p
    if e.produced:
        _produce(case, e.produced)
    case.version += 1


def _a_cancelled(case: Case, e: WorkItemCancelled) -> None:
    it = case.items.pop(e.item)
    if it.state == ENABLED and it.parent < 0:
        case.offered &= ~(1 << it.task)
    if e.consumed:
        _consume(case, e.consumed)
    case._dirty_busy |= 1 << it.task
    case.version += 1


def _a_failed(case: Case, e: WorkItemFailed) -> None:
    it = case.items[e.item]._copy()
    if it.state == ENABLED and it.parent < 0:
        case.offered &= ~(1 << it.task)
        # A failed offered item keeps its thread: take the tokens as a start would.
        c = _consumption(case.net.tasks[it.task], case.marked)
        _consume(case, c)
    it.state = FAILED
    it.due = None
    case.items[e.item] = it
    case._dirty_busy |= 1 << it.task
    case.version += 1


def _a_reassigned(case: Case, e: WorkItemReassigned) -> None:
    it = case.items[e.item]._copy()
    it.by = e.by
    case.items[e.item] = it
    case.version += 1


def _a_retried(case: Case, e: WorkItemRetried) -> None:
    it = case.items[e.item]._copy()
    it.state = STARTED
    it.by = e.by
    case.items[e.item] = it
    case._dirty_busy |= 1 << it.task
    case.version += 1


def _a_task_fired(case: Case, e: TaskFired) -> None:
    t = case.net.tasks[case.net.task_index[e.task]]
    _consume(case, e.consumed)
    _fired(case, t, e.consumed)
    if e.output:
        case.data = {**case.data, **e.output}
    _produce(case, e.produced)
    case.done_tasks |= 1 << t.idx
    case.version += 1


def _a_tokens_removed(case: Case, e: TokensRemoved) -> None:
    _consume(case, e.conditions)
    if e.absorbed_by is not None and case.seen:
        t = case.net.tasks[case.net.task_index[e.absorbed_by]]
        m = case.seen.get(t.idx, 0)
        for c in e.conditions:
            m |= 1 << c
        if m == t.preset_mask:
            del case.seen[t.idx]
            case._dirty |= t.preset_mask  # the join is ready again: look at it
        else:
            case.seen[t.idx] = m
    case.version += 1


def _a_tokens_added(case: Case, e: TokensAdded) -> None:
    _produce(case, e.conditions)
    case.version += 1


def _a_timer_set(case: Case, e: TimerSet) -> None:
    it = case.items[e.item]._copy()
    it.due = e.due
    case.items[e.item] = it
    case.version += 1


def _a_timer_fired(case: Case, e: TimerFired) -> None:
    it = case.items[e.item]._copy()
    it.due = None
    case.items[e.item] = it
    case.version += 1


def _a_sla_breached(case: Case, e: SlaBreached) -> None:
    # Copy on write: a command's rollback keeps the old dict by reference.
    case.breaches = {**(case.breaches or {}), e.item: e.task}
    case.version += 1


def _a_sla_resolved(case: Case, e: SlaResolved) -> None:
    left = dict(case.breaches or {})
    left.pop(e.item, None)
    case.breaches = left or None
    case.version += 1


def _a_case_completed(case: Case, e: CaseCompleted) -> None:
    case.status = COMPLETED
    case.hand_on_to = e.hand_on_to
    case.closed_at = e.at
    case.version += 1


def _a_case_cancelled(case: Case, e: CaseCancelled) -> None:
    case.status = CANCELLED
    case.closed_at = e.at
    case.version += 1


def _a_case_failed(case: Case, e: CaseFailed) -> None:
    case.status = CASE_FAILED
    case.closed_at = e.at
    case.version += 1


APPLY: dict[type, Callable[[Case, Any], None]] = {
    CaseCreated: _a_created,
    CaseHandedOn: _a_handed_on,
    WorkItemEnabled: _a_enabled,
    WorkItemStarted: _a_started,
    WorkItemCompleted: _a_completed,
    WorkItemCancelled: _a_cancelled,
    WorkItemFailed: _a_failed,
    WorkItemRetried: _a_retried,
    WorkItemReassigned: _a_reassigned,
    WorkItemHeld: _a_held,
    TaskFired: _a_task_fired,
    TokensRemoved: _a_tokens_removed,
    TokensAdded: _a_tokens_added,
    TimerSet: _a_timer_set,
    TimerFired: _a_timer_fired,
    SlaBreached: _a_sla_breached,
    SlaResolved: _a_sla_resolved,
    CaseCompleted: _a_case_completed,
    CaseCancelled: _a_case_cancelled,
    CaseFailed: _a_case_failed,
}
