"""The case state machine: commands in, events out, time passed in.

Theory of operation
-------------------
A case is a token game on a compiled `Net` plus the work items people and actions
act on, plus the case data. Its state is:

* the marking: the set of conditions holding any token as one int bitset (`marked`)
  and, only once some condition holds more than one, the count per condition
  (`counts`; None while `marked` says it all, as in a safe net it always does;
  `tokens` gives the counts as a list either way);
* the open work items: ENABLED (offered, nothing consumed yet), STARTED (its input
  tokens consumed, the work under way) or FAILED (stuck on an incident);
* the data (a dict, replaced, never mutated, so a snapshot is a reference);
* for partial joins, which inputs already arrived in the current round (`seen`).

Every command (create, start, complete, cancel, fire_timer, signal, ...) is atomic:
it decides what happens, emits events, and each event is applied to the state by
the fold (`engine.fold.APPLY`) -- the *only* code that mutates a case. So `replay`
runs the same fold and rebuilds the identical state, and a command that raises half way is
rolled back to a snapshot taken on entry: a case is never left half-changed.

After a command moves tokens, `_settle` brings the case to rest: it re-examines the
tasks whose join could have changed (the conditions they watch were touched), fires
empty routing tasks at once, offers newly enabled tasks as work items, withdraws
items whose task is no longer enabled (the losers of a deferred choice), absorbs late
arrivals at partial joins, and ends the case when the end condition is reached (or,
with implicit termination, when nothing can happen any more).

Work item life: ENABLED -> STARTED -> completed | cancelled | failed. Completing an
ENABLED item starts it in the same step (the tutorial completes without a start).
A dispatch policy may hold an ENABLED item until a given time (`hold`, from the
MAPE-K loop's dispatch windows): until then nobody may start or complete it. A
STARTED item may pass to another holder (`reassign`: an action handing its item to
another system); a failed one may be taken up again (`retry_item`: STARTED once more).
Completed and cancelled items leave the state (the log keeps them): a case holds
only what is open, which keeps an open case small.

Nothing here reads a clock, draws a random number, awaits or does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from .errors import (
    AlreadyDone,
    CaseClosed,
    ChecklistIncomplete,
    DataInvalid,
    EngineError,
    GuardFailed,
    NotEnabled,
    Problem,
    ProtectedField,
    UnknownResult,
    UnknownTask,
)
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
from .fold import (
    ACTIVE,
    APPLY,
    COMPLETED,
    ENABLED,
    FAILED,
    STARTED,
    MIWorkItem,
    WorkItem,
    WorkItemEx,
    _counts,
    _marked,
)
from .guards import Guard, GuardError, MissingField
from .net import AND, CANCEL_REMAINING, EMPTY, IMPLICIT, OR, PARTIAL, XOR, Net, Task
from .net import consumption as _consumption
from .net import is_enabled as _is_enabled
from .net import present as _present

__all__ = ["ENABLED", "FAILED", "STARTED", "Case", "CaseSnapshot", "WorkItem", "replay"]

# Events that end breached work: an item's completion or cancellation (that item's
# breach), the case's end or its hand-on to the next workflow (every breach).
_ENDS_WORK = frozenset({WorkItemCompleted, WorkItemCancelled, CaseCompleted, CaseCancelled,
                        CaseFailed, CaseHandedOn})

_MAX_SETTLE_STEPS = 10_000  # an empty-task cycle with no way out is a spec bug, not a hang
_PASS_CACHE = 4096  # settle passes memoised per net (beyond: worked out every time)


class CaseSnapshot(msgspec.Struct, array_like=True, gc=False):
    case_id: str
    workflow_id: str
    workflow_version: int
    status: str
    data: dict[str, Any]
    tokens: list[int]
    items: list[tuple[Any, ...]]
    seen: dict[int, int] | None
    next_item: int
    done_tasks: int
    hand_on_to: str | None
    created_at: float
    closed_at: float | None
    version: int
    breaches: dict[int, str] | None = None  # absent in snapshots from before SLAs


class Case:
    __slots__ = (
        "_dirty",
        "_dirty_busy",
        "_out",
        "breaches",
        "case_id",
        "closed_at",
        "counts",
        "created_at",
        "data",
        "done_tasks",
        "hand_on_to",
        "items",
        "marked",
        "net",
        "next_item",
        "offered",
        "seen",
        "status",
        "version",
    )

    def __init__(self, net: Net) -> None:
        self.net = net
        self.case_id = ""
        self.status = ACTIVE
        self.data: dict[str, Any] = {}
        # Token counts, only while some condition holds two or more (see `tokens`).
        self.counts: tuple[int, ...] | None = None
        self.marked = 0
        self.items: dict[int, WorkItem] = {}
        self.offered = 0  # bitset of tasks that have an ENABLED (non-instance) item
        self.seen: dict[int, int] | None = None  # partial joins: inputs arrived this round
        self.next_item = 1
        self.done_tasks = 0  # bitset of tasks completed at least once (for 3004 vs 2003)
        self.hand_on_to: str | None = None
        self.created_at = 0.0
        self.closed_at: float | None = None
        self.version = 0  # events applied
        # Open SLA breaches: item (0: the stay in the current workflow) -> task or
        # workflow id. None when there are none, so the hot path pays one test.
        self.breaches: dict[int, str] | None = None
        self._dirty = 0
        self._dirty_busy = 0
        self._out: list[Any] | None = None

    # ------------------------------------------------------------------ commands
    @classmethod
    def create(cls, net: Net, case_id: str, data: dict[str, Any] | None, at: float,
               ) -> tuple[Case, list[Any]]:
        data = net.validate_data(dict(data or {}))
        case = cls(net)
        out: list[Any] = []
        case._out = out
        case._emit(CaseCreated(case_id, net.workflow_id, net.version, data, at))
        case._settle(at)
        case._out = None
        return case, out

    def hand_on(self, net: Net, at: float) -> list[Any]:
        """Continue this completed case in the workflow its spec handed it on to."""
        if self.status != COMPLETED or self.hand_on_to != net.workflow_id:
            raise CaseClosed(f"case {self.case_id!r} is not waiting to hand on to "
                             f"{net.workflow_id!r}")
        filled = net.validate_data(self.data)
        defaults = {k: v for k, v in filled.items() if k not in self.data}
        return self._run(self._hand_on, net, at, defaults or None)

    def start(self, ref: int | str, at: float, by: str | None = None) -> list[Any]:
        return self._run(self._start, ref, at, by)

    def hold(self, ref: int | str, at: float, until: float, policy: int = 0) -> list[Any]:
        """Hold an enabled item's dispatch until `until` (a dispatch window): nobody
        may start or complete it earlier. A hold that ends by `at` is no hold."""
        return self._run(self._hold, ref, at, until, policy)

    def complete(self, ref: int | str, at: float, result: str | None = None,
                 output: dict[str, Any] | None = None, by: str | None = None) -> list[Any]:
        return self._run(self._complete, ref, at, result, output, by)

    def cancel_item(self, ref: int | str, at: float, reason: str = "cancelled") -> list[Any]:
        return self._run(self._cancel_item, ref, at, reason)

    def fail_item(self, ref: int | str, at: float, reason: str) -> list[Any]:
        return self._run(self._fail_item, ref, at, reason)

    def retry_item(self, ref: int | str, at: float, by: str | None = None) -> list[Any]:
        """Take a failed item up again (after an incident): it is started once more."""
        return self._run(self._retry_item, ref, at, by)

    def reassign(self, ref: int | str, at: float, by: str | None) -> list[Any]:
        """Pass a started item to another holder; the work goes on where it is."""
        return self._run(self._reassign, ref, at, by)

    def cancel(self, at: float, reason: str = "cancelled") -> list[Any]:
        return self._run(self._cancel_case, at, reason)

    def fire_timer(self, item: int, at: float) -> list[Any]:
        """A due timer: does nothing if its work item is gone or the time not yet come."""
        return self._run(self._fire_timer, item, at)

    def breach_sla(self, item: int, at: float, target: float, alert: float) -> list[Any]:
        """Record that a work item (`item` > 0) or the stay in the current workflow
        (`item` 0) crossed its SLO alert threshold. Refused when that item is gone or
        its breach is already open, so a breach is raised once."""
        return self._run(self._breach_sla, item, at, target, alert)

    def signal(self, condition: str, at: float) -> list[Any]:
        """Put a token on a trigger condition. A transient one is lost unless awaited."""
        return self._run(self._signal, condition, at)

    def add_instance(self, ref: int | str, at: float, data: Any = None) -> list[Any]:
        return self._run(self._add_instance, ref, at, data)

    def force_complete(self, ref: int | str, at: float) -> list[Any]:
        """Complete a multiple-instance task now, cancelling unfinished instances."""
        return self._run(self._force_complete, ref, at)

    # ----------------------------------------------------------------- snapshots
    def snapshot(self) -> CaseSnapshot:
        """The whole state as plain data, so a long log need not be replayed."""
        return CaseSnapshot(
            self.case_id, self.net.workflow_id, self.net.version, self.status, self.data,
            self.tokens,
            [(i.id, i.task, i.state, i.enabled_at, i.parent, i.data, i.started_at, i.by, i.due,
              i.spawned, i.done, list(i.outputs), i.held_until) for i in self.items.values()],
            dict(self.seen) if self.seen else None, self.next_item, self.done_tasks,
            self.hand_on_to, self.created_at, self.closed_at, self.version,
            dict(self.breaches) if self.breaches else None)

    @classmethod
    def restore(cls, net: Net, snap: CaseSnapshot) -> Case:
        if (net.workflow_id, net.version) != (snap.workflow_id, snap.workflow_version):
            raise EngineError(f"snapshot of {snap.workflow_id} v{snap.workflow_version} "
                              f"cannot be restored on {net.workflow_id} v{net.version}")
        case = cls(net)
        case.case_id, case.status, case.data = snap.case_id, snap.status, snap.data
        case.marked = _marked(snap.tokens)
        case.counts = tuple(snap.tokens) if max(snap.tokens, default=0) > 1 else None
        for (iid, task, state, enabled_at, parent, data, started_at, by, due, spawned, done,
             outputs, *held) in snap.items:  # held_until: absent in older snapshots
            held_until = held[0] if held else None
            mi = parent < 0 and net.tasks[task].mi is not None
            if mi or (data, started_at, by, due, held_until) != (None,) * 5:
                it = (MIWorkItem if mi else WorkItemEx)(iid, task, state, enabled_at, parent,
                                                        data)
                it.started_at, it.by, it.due, it.held_until = started_at, by, due, held_until
                if mi:
                    it.spawned, it.done, it.outputs = spawned, done, tuple(outputs)
            else:
                it = WorkItem(iid, task, state, enabled_at, parent)
            case.items[iid] = it
            if state == ENABLED and parent < 0:
                case.offered |= 1 << task
        case.seen = {int(k): v for k, v in snap.seen.items()} if snap.seen else None
        case.next_item, case.done_tasks = snap.next_item, snap.done_tasks
        case.hand_on_to, case.created_at, case.closed_at = (snap.hand_on_to, snap.created_at,
                                                            snap.closed_at)
        case.version = snap.version
        case.breaches = ({int(k): v for k, v in snap.breaches.items()} if snap.breaches
                         else None)
        return case

    # ------------------------------------------------------------------- views
    @property
    def state(self) -> str:
        return self.status

    @property
    def tokens(self) -> list[int]:
        """The token count per condition (a new list: the state is `marked`/`counts`)."""
        return _counts(self)

    def enabled_tasks(self) -> list[str]:
        tasks, seen, out = self.net.tasks, set(), []
        for it in self.items.values():
            t = tasks[it.task]
            if it.state != FAILED and not (t.mi is not None and it.parent < 0) \
                    and it.task not in seen:
                seen.add(it.task)
                out.append(t.id)
        return out

    def work_item(self, ref: int | str) -> WorkItem:
        """The open work item a command with `ref` would act on; refuses as it would."""
        return self._item(ref)

    def work_items(self) -> list[WorkItem]:
        return list(self.items.values())

    def pending_timers(self) -> list[tuple[int, float]]:
        return [(i.id, i.due) for i in self.items.values() if i.due is not None]

    def tokens_by_condition(self) -> dict[str, int]:
        return {self.net.cond_ids[c]: n for c, n in enumerate(self.tokens) if n}

    # ------------------------------------------------------------- atomicity
    def _run(self, fn: Callable[..., None], *args: Any) -> list[Any]:
        if self.status != ACTIVE and getattr(fn, "__func__", None) is not Case._hand_on:
            raise CaseClosed(f"case {self.case_id!r} is {self.status}")
        snap = (self.counts, self.marked, self.items.copy(), self.offered,
                dict(self.seen) if self.seen else None, self.data, self.next_item,
                self.done_tasks, self.status, self.hand_on_to, self.net, self.version,
                self.closed_at, self.breaches)
        out: list[Any] = []
        self._out = out
        try:
            fn(*args)
        except BaseException:
            (self.counts, self.marked, self.items, self.offered, self.seen, self.data,
             self.next_item, self.done_tasks, self.status, self.hand_on_to, self.net,
             self.version, self.closed_at, self.breaches) = snap
            self._dirty = self._dirty_busy = 0
            raise
        finally:
            self._out = None
        return out

    def _emit(self, event: Any) -> None:
        APPLY[type(event)](self, event)
        self._out.append(event)  # type: ignore[union-attr]
        if self.breaches and type(event) in _ENDS_WORK:
            self._resolve(event)

    def _resolve(self, event: Any) -> None:
        """A breached item that completed or was cancelled -- or, at the case's end
        (or hand-on), every open breach -- records its resolution."""
        if type(event) in (WorkItemCompleted, WorkItemCancelled):
            ended = [event.item] if event.item in self.breaches else []  # type: ignore[operator]
        else:
            ended = list(self.breaches or ())
        for item in ended:
            self._emit(SlaResolved(item, event.at))

    # ----------------------------------------------------------- command bodies
    def _hand_on(self, net: Net, at: float, defaults: dict[str, Any] | None) -> None:
        self.net = net
        self._emit(CaseHandedOn(net.workflow_id, net.version, at, defaults))
        self._settle(at)

    def completed_for_good(self, task: int) -> bool:
        """Task (index) `task` was completed and cannot come round again: asking for it
        now is a second completion (3004). In a loop it is merely not enabled now."""
        return bool(self.done_tasks >> task & 1) and not self.net.tasks[task].in_cycle

    def _item(self, ref: int | str) -> WorkItem:
        if isinstance(ref, int):
            it = self.items.get(ref)
            if it is None:
                if 0 < ref < self.next_item:
                    raise AlreadyDone(f"work item {ref} is already closed", field="item")
                raise UnknownTask(f"no work item {ref} in case {self.case_id!r}", field="item")
            return it
        ti = self.net.task_index.get(ref)
        if ti is None:
            raise UnknownTask(f"workflow {self.net.workflow_id!r} has no task {ref!r}",
                              field="task")
        for it in self.items.values():
            if it.task == ti and it.state == ENABLED and it.parent < 0:
                return it  # the offered item of the task: the usual case
        found = []  # (only now: no list to build on the usual path)
        for it in self.items.values():
            if it.task == ti:
                found.append(it)
        if len(found) == 1:
            return found[0]
        if not found:
            if self.completed_for_good(ti):
                raise AlreadyDone(f"task {ref!r} is already completed", field="task")
            raise NotEnabled(f"task {ref!r} is not enabled (enabled: "
                             f"{', '.join(self.enabled_tasks()) or 'none'})", field="task")
        inst = [i for i in found if i.parent >= 0]
        if len(inst) == 1:
            return inst[0]
        raise NotEnabled(f"task {ref!r} has {len(found)} open work items "
                         f"({', '.join(str(i.id) for i in found)}): name one", field="task")

    def _offered_item(self, ti: int) -> WorkItem:
        for it in self.items.values():
            if it.task == ti and it.state == ENABLED and it.parent < 0:
                return it
        raise EngineError(f"task #{ti} is marked offered but has no enabled item")

    def _hold(self, ref: int | str, at: float, until: float, policy: int) -> None:
        it = self._item(ref)
        if it.state != ENABLED:
            raise NotEnabled(f"work item {it.id} is {it.state}, not enabled")
        if until > at:
            self._emit(WorkItemHeld(it.id, at, until, policy))

    @staticmethod
    def _check_released(it: WorkItem, at: float) -> None:
        if at < it.held_until:  # type: ignore[operator]
            # The engine reads no calendar: the adapter shows `held_until` as a date.
            raise NotEnabled(f"work item {it.id} is held by the dispatch policy for another "
                             f"{(it.held_until - at) / 3600:.1f} h", field="held_until")

    def _start(self, ref: int | str, at: float, by: str | None) -> None:
        it = self._item(ref)
        if it.state != ENABLED:
            raise NotEnabled(f"work item {it.id} is {it.state}, not enabled")
        # Only a WorkItemEx can be held (a plain item reads the class default, slowly).
        if type(it) is not WorkItem and it.held_until is not None:
            self._check_released(it, at)
        t = self.net.tasks[it.task]
        consumed = () if it.parent >= 0 else _consumption(t, self.marked)
        self._emit(WorkItemStarted(it.id, at, consumed, by))
        if t.timer is not None and t.timer.on_start:
            self._emit(TimerSet(it.id, at + t.timer.after))
        self._settle(at)

    def _complete(self, ref: int | str, at: float, result: str | None,
                  output: dict[str, Any] | None, by: str | None) -> None:
        it = self._item(ref)
        t = self.net.tasks[it.task]
        if it.state == FAILED:
            raise NotEnabled(f"work item {it.id} failed; retry it first")
        # A plain WorkItem is never held (see _start).
        if type(it) is not WorkItem and it.held_until is not None and it.state == ENABLED:
            self._check_released(it, at)
        if t.mi is not None and it.parent < 0:
            raise NotEnabled(f"task {t.id!r} runs as instances: complete those, or "
                             "force-complete the task")
        if t.results and result not in t.results:
            raise UnknownResult(
                f"task {t.id!r} takes the result {_either(sorted(t.results))}, not "
                f"{result!r}", field="result")
        output = output or {}
        if t.checklist:
            self._check_list(t, result, output)
        merged = self._map_output(t, result, output) if t.outputs else output
        # What a completion writes into the case obeys the data schema too (an
        # instance's output is collected, not merged, later). Fields the schema does
        # not name pass unchecked: the usual output (an approval) skips the call.
        if merged and it.parent < 0 and not self.net.schema_fields.isdisjoint(merged):
            self.net.validate_data(merged, partial=True)
        if it.parent >= 0:
            self._emit(WorkItemCompleted(it.id, at, result, merged or None, by=by))
            self._after_instance(it.parent, at)
        else:
            self._finish_item(it, t, at, result, merged, by)
        self._settle(at)

    def _finish_item(self, it: WorkItem, t: Task, at: float, result: str | None,
                     merged: dict[str, Any], by: str | None) -> None:
        consumed = _consumption(t, self.marked) if it.state == ENABLED else ()
        # Split guards see the case data as it will be after this completion: the
        # output shadows the data (the same view as merging, without building it).
        # An AND split has no guards to show it to.
        produced = t.postset if t.split == AND else self._route(
            t, {**merged, "result": result} if merged else {"result": result})
        if t.cancel_mask or t.cancel_tasks:
            self._cancel_region(t, at, consumed, keep=it.id)
        self._emit(WorkItemCompleted(it.id, at, result, merged or None, consumed, produced, by))

    def check_output(self, ref: int | str, output: dict[str, Any] | None) -> None:
        """Refuse (ProtectedField) an output that a person or another system completing
        work item `ref` may not write. The case's declared data that has a value (the
        deal's ACV, its discount) is what approvers sign off: their output may add
        fields, and fill declared ones still unset, but changes a set one only through
        the task's output mapping (a justification that revises the discount says so in
        the spec). The adapters ask this of every completion they take from outside;
        the spec's own timers and the runtime's actions are not asked."""
        if not output:
            return
        t = self.net.tasks[self._item(ref).task]
        if t.outputs:  # the mapping alone decides what reaches the data
            return
        data = self.data
        for f in self.net.schema_fields.intersection(output):
            if data.get(f) is not None and data[f] != output[f]:
                raise ProtectedField(
                    f"task {t.id!r} may not change {f!r} ({data[f]!r} -> {output[f]!r}): "
                    "only a task whose output mapping writes it may", field=f"output_data.{f}")

    def _check_list(self, t: Task, result: str | None, output: dict[str, Any]) -> None:
        """A quality gate: the completion confirms every required checklist item (when
        the task's `checklist_when` holds for this completion); one problem per miss."""
        if t.checklist_when is not None and not self._eval(
                t.checklist_when, self.data, {**output, "result": result}):
            return
        done = output.get("checklist") or {}
        if isinstance(done, dict):
            confirmed = {c for c, v in done.items() if v is True}
        else:  # a list of names; any other shape (a string, a number) confirms nothing
            confirmed = ({c for c in done if isinstance(c, str)}
                         if isinstance(done, (list, tuple)) else set())
        missing = [c for c in t.checklist if c not in confirmed]
        if missing:
            raise ChecklistIncomplete(
                f"task {t.id!r} needs checklist items: {', '.join(missing)}",
                field="output_data.checklist",
                problems=[Problem(f"output_data.checklist.{c}", "required checklist item not "
                                  "confirmed") for c in missing])

    def _map_output(self, t: Task, result: str | None, output: dict[str, Any]) -> dict[str, Any]:
        """The task's output mapping (callers skip the call when it has none)."""
        local = {**output, "result": result}
        data, out = self.data, {}
        for f, g in t.outputs:
            out[f] = self._eval(g, data, local)
        return out

    def _route(self, t: Task, local: dict[str, Any] | None) -> tuple[int, ...]:
        s = t.split
        if s == AND:
            return t.postset
        data = self.data
        g = None
        try:  # one try around the loop: guards run on the hot path
            if s == XOR:
                for c, g in t.routes:
                    if g(data, local):
                        return (c,)
                return (t.default,)
            chosen = []
            for c, g in t.routes:
                if g(data, local):
                    chosen.append(c)
        except GuardError as exc:
            assert g is not None
            raise _guard_failed(g, exc) from None
        return tuple(chosen) or (t.default,)

    @staticmethod
    def _eval(g: Guard, data: dict[str, Any], local: dict[str, Any] | None) -> Any:
        try:
            return g(data, local)
        except GuardError as exc:
            raise _guard_failed(g, exc) from None

    def _cancel_region(self, t: Task, at: float, consumed: tuple[int, ...], keep: int) -> None:
        """Cancel t's region: its tasks' open items and its conditions' tokens.

        An offered item of a region task is withdrawn together with the tokens that
        enable it (as `cancel_item` does); otherwise it would be offered again at once.
        The tokens the cancelling task itself consumes are not available to take.
        """
        why = f"cancelled by {t.id}"
        takes: dict[int, tuple[int, ...]] = {}
        tokens = self.tokens  # a copy, to lend tokens away on while choosing what to take
        for c in consumed:
            tokens[c] -= 1  # t's own inputs are not there to take
        marked = _marked(tokens)
        for it in self.items.values():
            if it.state == ENABLED and it.parent < 0 and it.task in t.cancel_tasks:
                take = _consumption(self.net.tasks[it.task], marked)
                for c in take:
                    tokens[c] -= 1
                marked = _marked(tokens)
                takes[it.id] = take
        for it in list(self.items.values()):
            if it.id != keep and it.id in self.items and (it.task in t.cancel_tasks or (
                    it.parent >= 0 and self.items.get(it.parent, it).task in t.cancel_tasks)):
                self._emit(WorkItemCancelled(it.id, at, why, takes.get(it.id, ())))
        removed = []
        tokens = self.tokens  # as the cancellations above left them
        for c in t.cancel_conds:
            n = tokens[c] - consumed.count(c)
            removed.extend([c] * n)
        if removed:
            self._emit(TokensRemoved(tuple(removed), at, why))

    def _after_instance(self, parent_id: int, at: float) -> None:
        parent = self.items.get(parent_id)
        if parent is None:  # the task did not wait for its instances (threshold 0)
            return
        mi = self.net.tasks[parent.task].mi
        assert mi is not None
        if mi.threshold is not None and parent.done >= mi.threshold:
            self._complete_mi(parent, at, "threshold reached")
        elif not any(i.parent == parent_id for i in self.items.values()):
            # Every instance is closed (some may have been cancelled): nothing more
            # can arrive, so the task completes with what it has.
            self._complete_mi(parent, at, "all instances closed")

    def _complete_mi(self, parent: WorkItem, at: float, why: str) -> None:
        t = self.net.tasks[parent.task]
        assert t.mi is not None
        # Without synchronisation (WCP-12), or when told to let them finish (WCP-34),
        # the remaining instances live on; otherwise they are cancelled (WCP-35/36).
        if t.mi.threshold != 0 and t.mi.cancel_rest:
            for it in list(self.items.values()):
                if it.parent == parent.id:
                    self._emit(WorkItemCancelled(it.id, at, why))
        merged = {t.mi.collect: list(parent.outputs)} if t.mi.collect else {}
        self._finish_item(self.items[parent.id], t, at, None, merged, None)

    def _spawn(self, parent: WorkItem, t: Task, at: float) -> None:
        mi = t.mi
        assert mi is not None
        if mi.items is not None:
            values = self._eval(mi.items, self.data, None)
            if not isinstance(values, list | tuple):
                raise DataInvalid(f"instances of {t.id!r}: {mi.items.text!r} is not a list",
                                  field=mi.items.text)
        else:
            values = [None] * mi.min
        if len(values) < mi.min or (mi.max is not None and len(values) > mi.max):
            raise DataInvalid(f"task {t.id!r} needs between {mi.min} and {mi.max} instances, "
                              f"got {len(values)}", field=mi.items.text if mi.items else t.id)
        for v in values:
            self._new_instance(parent.id, t, at, v)
        if mi.threshold == 0 or not values:
            self._complete_mi(self.items[parent.id], at, "no synchronisation")

    def _new_instance(self, parent_id: int, t: Task, at: float, value: Any) -> None:
        assert t.mi is not None
        data = {t.mi.item_field: value} if value is not None else None
        self._emit(WorkItemEnabled(self.next_item, t.id, at, parent_id, data))

    def _add_instance(self, ref: int | str, at: float, value: Any) -> None:
        parent = self._mi_parent(ref)
        mi = self.net.tasks[parent.task].mi
        assert mi is not None
        if not mi.dynamic:
            raise NotEnabled(f"task {self.net.tasks[parent.task].id!r} creates its instances "
                             "statically")
        if mi.max is not None and parent.spawned >= mi.max:
            raise NotEnabled(f"task {self.net.tasks[parent.task].id!r} already has its "
                             f"maximum of {mi.max} instances")
        self._new_instance(parent.id, self.net.tasks[parent.task], at, value)
        self._settle(at)

    def _force_complete(self, ref: int | str, at: float) -> None:
        self._complete_mi(self._mi_parent(ref), at, "task force-completed")
        self._settle(at)

    def _mi_parent(self, ref: int | str) -> WorkItem:
        if isinstance(ref, str):
            ti = self.net.task_index.get(ref)
            if ti is None:
                raise UnknownTask(f"workflow {self.net.workflow_id!r} has no task {ref!r}")
            found = [i for i in self.items.values() if i.task == ti and i.parent < 0]
            if not found:
                raise NotEnabled(f"task {ref!r} is not running")
            it = found[0]
        else:
            it = self._item(ref)
        if self.net.tasks[it.task].mi is None or it.parent >= 0 or it.state != STARTED:
            raise NotEnabled(f"work item {it.id} is not a running multiple-instance task")
        return it

    def _cancel_item(self, ref: int | str, at: float, reason: str) -> None:
        it = self._item(ref)
        t = self.net.tasks[it.task]
        # Cancelling an offered item withdraws its thread: the input tokens go with it,
        # otherwise the task would be offered again at once (WCP-19).
        consumed = _consumption(t, self.marked) if it.state == ENABLED and it.parent < 0 else ()
        for child in list(self.items.values()):
            if child.parent == it.id:
                self._emit(WorkItemCancelled(child.id, at, reason))
        self._emit(WorkItemCancelled(it.id, at, reason, consumed))
        if it.parent >= 0:
            self._after_instance(it.parent, at)
        self._settle(at)

    def _fail_item(self, ref: int | str, at: float, reason: str) -> None:
        it = self._item(ref)
        self._emit(WorkItemFailed(it.id, at, reason))

    def _retry_item(self, ref: int | str, at: float, by: str | None) -> None:
        it = self._item(ref)
        if it.state != FAILED:
            raise NotEnabled(f"work item {it.id} is {it.state}, not failed")
        self._emit(WorkItemRetried(it.id, at, by))
        t = self.net.tasks[it.task]
        if t.timer is not None:
            self._emit(TimerSet(it.id, at + t.timer.after))

    def _reassign(self, ref: int | str, at: float, by: str | None) -> None:
        it = self._item(ref)
        if it.state != STARTED:
            raise NotEnabled(f"work item {it.id} is {it.state}, not started")
        self._emit(WorkItemReassigned(it.id, at, by))

    def _cancel_case(self, at: float, reason: str) -> None:
        for it in list(self.items.values()):
            self._emit(WorkItemCancelled(it.id, at, reason))
        self._remove_all_tokens(at, reason)
        self._emit(CaseCancelled(at, reason))

    def _remove_all_tokens(self, at: float, reason: str, keep: int = -1) -> None:
        if keep >= 0 and self.marked == 1 << keep and self.counts is None:
            return  # the usual end: one token on the end condition and nothing else
        removed: list[int] = []  # (no generator: `keep` would be a cell on every call)
        for c, n in enumerate(self.tokens):
            removed.extend([c] * (n - (c == keep)))
        if removed:
            self._emit(TokensRemoved(tuple(removed), at, reason))

    def _fire_timer(self, iid: int, at: float) -> None:
        it = self.items.get(iid)
        if it is None or it.due is None or at < it.due:
            return
        t = self.net.tasks[it.task]
        assert t.timer is not None
        self._emit(TimerFired(iid, at))
        how = t.timer.on_timeout
        if how == "complete":
            if t.mi is not None and it.parent < 0:
                self._complete_mi(it, at, "timed out")
                self._settle(at)
            else:
                self._complete(iid, at, t.timer.result, dict(t.timer.output), "timer")
        elif how == "cancel":
            self._cancel_item(iid, at, "timed out")
        else:
            self._fail_item(iid, at, "timed out")

    def _breach_sla(self, item: int, at: float, target: float, alert: float) -> None:
        if self.breaches and item in self.breaches:
            raise AlreadyDone(f"the SLA breach of item {item} is already recorded")
        if item == 0:
            task = self.net.workflow_id
        else:
            it = self.items.get(item)
            if it is None:
                raise NotEnabled(f"work item {item} is no longer open", field="item")
            task = self.net.tasks[it.task].id
        self._emit(SlaBreached(item, at, task, target, alert))

    def _signal(self, condition: str, at: float) -> None:
        c = self.net.cond_index.get(condition)
        bit = 1 << c if c is not None else 0
        if not bit & (self.net.transient_mask | self.net.persistent_mask):
            raise UnknownTask(f"workflow {self.net.workflow_id!r} has no trigger {condition!r}",
                              field="signal")
        if bit & self.net.transient_mask:
            busy = self._busy()
            marked = self.marked | bit
            if self.marked & bit or not any(
                    bit & t.preset_mask and not self.offered >> t.idx & 1
                    and _is_enabled(t, marked, busy, self._seen(t)) for t in self.net.tasks):
                return  # nobody is waiting for it: a transient trigger is lost (WCP-23)
        self._emit(TokensAdded((c,), at, f"signal {condition}"))  # type: ignore[arg-type]
        self._settle(at)

    # ---------------------------------------------------------------- settling
    def _seen(self, t: Task) -> int:
        return self.seen.get(t.idx, 0) if self.seen else 0

    def _orphans(self) -> bool:
        """Instances still running after their task moved on (WCP-12) hold the case open."""
        items = self.items
        for i in items.values():  # noqa: SIM110 (a generator would cost a cell per call)
            if i.parent >= 0 and i.parent not in items:
                return True
        return False

    def _busy(self) -> int:
        """The tasks with a running (started or failed, not instance) item, as a bitset."""
        if len(self.items) == self.offered.bit_count():
            # Each offered task has exactly one enabled item, so when they are all the
            # items there are, nothing runs: the usual answer without a look at them.
            return 0
        b = 0
        for it in self.items.values():
            if it.state != ENABLED and it.parent < 0:
                b |= 1 << it.task
        return b

    def _offer(self, t: Task, at: float) -> int:
        """Offer task `t`: a new work item (and its timer, if it runs from enabling)."""
        iid = self.next_item
        self._emit(WorkItemEnabled(iid, t.id, at))
        if t.timer is not None and not t.timer.on_start:
            self._emit(TimerSet(iid, at + t.timer.after))
        return iid

    def _withdraw(self, t: Task, at: float) -> None:
        """Withdraw the offer of task `t`: it is no longer enabled."""
        self._emit(WorkItemCancelled(self._offered_item(t.idx).id, at, "withdrawn"))

    def _settle(self, at: float) -> None:
        net = self.net
        revisit, plans = net.revisit_memo, net.pass_memo
        steps = 0
        while self.status == ACTIVE:
            dirty, dbusy = self._dirty, self._dirty_busy
            if not (dirty or dbusy):
                break
            self._dirty = self._dirty_busy = 0
            if self.marked >> net.end & 1 and (
                    net.completion == CANCEL_REMAINING or not self._orphans()):
                self._finish_case(at)
                return
            # With no partial join waiting and nothing running, a pass's offers and
            # withdrawals follow from what was touched, the marking and the offers
            # alone (see Net.pass_memo): replay them rather than look at the tasks.
            key: tuple[int, int, int, int] | None = None
            if not self.seen and len(self.items) == self.offered.bit_count():
                key = (dirty, dbusy, self.marked, self.offered)
                plan = plans.get(key)
                if plan is not None:
                    for t, offer in plan:
                        if offer:
                            self._offer(t, at)
                        else:
                            self._withdraw(t, at)
                    continue
            # Which tasks could have changed: those watching a touched condition or a
            # task whose running items changed (OR-joins). Visited in index order.
            todo = None if dbusy else revisit.get(dirty)  # the memo of net.revisit
            if todo is None:
                todo = net.revisit(dirty, dbusy)
            busy = -1
            done: list[tuple[Task, bool]] = []  # this pass's offers (True) and withdrawals
            for t in todo:
                join = t.join
                if join == PARTIAL and self.seen and t.idx in self.seen:
                    late = self.marked & t.preset_mask & ~self.seen[t.idx]
                    if late:
                        self._emit(TokensRemoved(_present(t.preset, late), at,
                                                 "arrived after the join fired", t.id))
                has = self.offered >> t.idx & 1
                if not has and not self.marked & t.preset_mask:
                    # No input holds a token: no join rule enables it (every task has
                    # an input), and it has no offer to withdraw.
                    continue
                if join == OR and busy < 0:
                    busy = self._busy()
                en = _is_enabled(t, self.marked, busy, self._seen(t) if join == PARTIAL else 0)
                if en and not has:
                    if t.kind == EMPTY:
                        key = None  # its routing reads the data: not a pass to keep
                        steps += 1
                        if steps > _MAX_SETTLE_STEPS:
                            raise EngineError(f"workflow {net.workflow_id!r}: routing does not "
                                              "come to rest (a cycle of empty tasks?)")
                        consumed = _consumption(t, self.marked)
                        merged = self._map_output(t, None, {}) if t.outputs else None
                        produced = self._route(t, merged)
                        if t.cancel_mask or t.cancel_tasks:
                            self._cancel_region(t, at, consumed, keep=-1)
                        self._emit(TaskFired(t.id, at, consumed, produced, merged or None))
                        busy = -1
                        if self.marked >> net.end & 1:
                            break
                        continue
                    iid = self._offer(t, at)
                    if t.mi is not None:
                        key = None  # the instances come from the data
                        self._emit(WorkItemStarted(iid, at, _consumption(t, self.marked),
                                                   "engine"))
                        self._spawn(self.items[iid], t, at)
                        busy = -1
                    done.append((t, True))
                elif has and not en:
                    self._withdraw(t, at)
                    done.append((t, False))
            if key is not None and len(plans) < _PASS_CACHE:
                plans[key] = tuple(done)
        if self.status == ACTIVE and not self.items and not net.has_triggers:
            if net.completion == IMPLICIT:
                self._finish_case(at)
            else:
                self._emit(CaseFailed(at, "deadlock: nothing is enabled and the end is not "
                                          "reached"))

    def _finish_case(self, at: float) -> None:
        busy = self._busy()
        for it in list(self.items.values()):
            t = self.net.tasks[it.task]
            # An offer whose task lost its tokens lost a deferred choice: say so, as
            # the settle loop would have had the end not come first.
            lost = it.state == ENABLED and it.parent < 0 and not _is_enabled(
                t, self.marked, busy, self._seen(t))
            self._emit(WorkItemCancelled(it.id, at, "withdrawn" if lost else "case completed"))
        self._remove_all_tokens(at, "case completed", keep=self.net.end)
        hand_on = None
        for wf, g in self.net.handovers:
            if g is None or self._eval(g, self.data, None):
                hand_on = wf
                break
        self._emit(CaseCompleted(at, hand_on))

    # ------------------------------------------------------------------- the fold
    def apply(self, e: Any) -> None:
        """Apply one event: the only place a case's state changes."""
        APPLY[type(e)](self, e)


def _either(words: list[str]) -> str:
    """'a', 'a' or 'b', 'a', 'b' or 'c'."""
    quoted = [repr(w) for w in words]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _guard_failed(g: Guard, exc: GuardError) -> GuardFailed:
    if isinstance(exc, MissingField):
        return GuardFailed(f"guard {g.text!r} reads missing field {exc.field!r}",
                           field=exc.field)
    return GuardFailed(f"guard {g.text!r} cannot be decided: {exc}")


def replay(events: Iterable[Any], nets: Net | Callable[[str, int], Net],
           onto: Case | None = None) -> Case:
    """Rebuild a case from its log. `nets` is the net, or a lookup (workflow id, version).

    `onto` continues from a case restored from a snapshot with the events after it.
    """
    resolve = (lambda _w, _v: nets) if isinstance(nets, Net) else nets
    case = onto
    for e in events:
        if isinstance(e, CaseCreated):
            case = Case(resolve(e.workflow_id, e.version))
        elif isinstance(e, CaseHandedOn):
            assert case is not None
            case.net = resolve(e.workflow_id, e.version)
        if case is None:
            raise EngineError("a case log must begin with CaseCreated")
        APPLY[type(e)](case, e)
    if case is None:
        raise EngineError("empty case log")
    case._dirty = case._dirty_busy = 0
    return case

