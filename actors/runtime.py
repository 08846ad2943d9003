"""The runtime: one lightweight actor per live case, over a durable event store.

Theory of operation
-------------------
A case actor is a resident `Case` (the engine's state machine) plus bookkeeping. It
has no task of its own: an idle case costs only its state, and a passivated one
costs nothing. A message to a case (create, start, complete, cancel, fire a timer,
an action's result) is handled by the sender's task:

1. find the actor; if it is not resident, activate it: load the latest snapshot and
   the events after it from the store. Concurrent messages for a case that is being
   activated wait for that one activation and are then handled in arrival order;
2. run the engine command -- synchronous, no suspension point -- and hand the
   resulting events (and the projection rows they imply) to the store's group
   commit queue, still without suspending. Because nothing can interleave between
   the command and the queueing, messages to one case are handled one at a time in
   arrival order and their appends are committed in that order, while messages to
   different cases run concurrently;
3. wait for COMMIT, then acknowledge. A command is acknowledged only after its
   events are durable. Side effects (timers to arm, automatic actions to run) are
   started only after COMMIT, so nothing acts on a state that might be lost.

If a handler raises something other than an engine refusal, or the append fails,
the actor is dropped: its next message rebuilds it from the log, so a failure never
leaves a half-applied state in memory (engine refusals are atomic and leave the case
as it was; a hand-on the next workflow refuses comes after a command that went
through, so that case is dropped too). Hand-over to the next workflow happens in the
same step as the completion that causes it: one append, one case id, one history.

Actors are passivated least-recently-used first beyond a resident cap, and after an
idle time. Timers are events in the log and rows in the items projection; after a
restart `start()` re-arms the pending timers and resumes every automatic item.
Memory holds only the earliest work-item timers (`timer_window` of them, up to twice
that before the latest are let go); the others wait in the store and are read in due
order as the earlier ones fire, so a passivated case's pending timer costs no memory.
Nothing here reads the wall clock: time comes from the injected `Clock`.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskGroup

from engine import Case, CaseSnapshot, EngineError, Net, replay
from engine.events import (
    CaseCreated,
    CaseHandedOn,
    SlaBreached,
    TimerSet,
    WorkItemEnabled,
    WorkItemFailed,
)
from engine.net import AUTOMATIC

from .actions import AWAIT_CALLBACK, AWAITING, ActionContext, ActionRegistry, Incident
from .ports import (
    Append,
    AppendConflict,
    Clock,
    DispatchPolicy,
    EventStore,
    Notice,
    SlaPolicy,
    TimerKey,
)
from .projection import case_row, changes

Command = Callable[[Case], list[Any]]
# The events _after_commit acts on: timers to arm, failures to list, items to run or
# to watch; with an SLA policy also the workflows entered (their stay is timed).
_FOLLOW = frozenset((TimerSet, WorkItemFailed, WorkItemEnabled))
_FOLLOW_SLA = _FOLLOW | {CaseCreated, CaseHandedOn}
# What a command's events must notify, decided with them and written in their append.
Notify = Callable[[Case, list[Any]], list[Notice]]
# Work items' timers held in memory at most (see the module's docstring). 1,000 of
# them cost ~0.3 MB; a read of the next ones, a few ms.
TIMER_WINDOW = 1_000
# Incidents listed again at a restart with their reason read from the log, at most.
RECOVER_REASONS = 1_000
# Marks a timer held again after its firing failed (see _timer_loop): not the window's.
_AGAIN = "again"


def _windowed(entry: list[Any]) -> bool:
    """A work item's timer as the store has it (not an SLA or action deadline, nor a
    retry): one of those the window holds."""
    return len(entry) == 4 and entry[2] is not None and type(entry[3]) is int


def _key(entry: list[Any]) -> TimerKey:
    """A windowed heap entry's place in the store's order (TimerRow.key)."""
    return (entry[0], entry[2], entry[3])


class CaseNotFound(EngineError):
    code = 2003
    kind = "not_found"


class CaseExists(EngineError):
    code = 2002
    kind = "conflict"


class WorkflowNotFound(EngineError):
    code = 2001
    kind = "not_found"


class ActorFault(Exception):
    """A handler failed unexpectedly; the case is rebuilt from its log on next use."""


def _hand_over(case: Case, item: int, at: float, holder: str) -> list[Any]:
    """Mark an automatic item as held by the other system its action handed it to, so a
    restart waits for the callback instead of running the action again (`_recover`).
    Enabled: claimed so. Started already -- claimed by a contested task's action, or
    taken up again after an incident by the person who retried it -- reassigned."""
    it = case.items.get(item)
    if it is None or it.by == holder:
        return []
    if it.state == "enabled":
        return case.start(item, at, holder)
    if it.state == "started":
        return case.reassign(item, at, holder)
    return []  # failed meanwhile: the incident says so


class _Actor:
    __slots__ = ("case", "last_used", "pending", "snap_seq")

    def __init__(self, case: Case, snap_seq: int, now: float) -> None:
        self.case = case
        self.snap_seq = snap_seq  # events covered by the latest snapshot
        self.last_used = now
        self.pending = 0  # appends queued and not yet committed: not to be passivated


class Runtime:
    def __init__(self, store: EventStore, clock: Clock, actions: ActionRegistry | None = None,
                 *, snapshot_every: int = 100,
                 resident_cap: int = 250_000, idle_timeout: float | None = None,
                 max_action_workers: int = 256, slas: SlaPolicy | None = None,
                 dispatch: DispatchPolicy | None = None,
                 timer_window: int = TIMER_WINDOW) -> None:
        self.store = store
        self.slas = slas
        self.dispatch = dispatch
        self.clock = clock
        self.actions = actions or ActionRegistry()
        self.snapshot_every = snapshot_every
        self.resident_cap = resident_cap
        self.idle_timeout = idle_timeout
        self._nets: dict[tuple[str, int], Net] = {}
        self._latest: dict[str, Net] = {}
        self._resident: OrderedDict[str, _Actor] = OrderedDict()
        # Cases being created or loaded. The event is made only when a second message
        # for the case has to wait (rare): an anyio.Event costs ~3 us to make.
        self._activating: dict[str, anyio.Event | None] = {}
        # Actors dropped (memory ahead of the log) while an append of theirs was still
        # in flight: the case is loaded again only once those appends have settled, or
        # the reload would miss them and its next append conflict with theirs.
        self._settling: dict[str, tuple[_Actor, anyio.Event]] = {}
        self._tg: TaskGroup | None = None
        self._timers: list[list[Any]] = []
        self._timer_seq = itertools.count()
        self._timer_wake = anyio.Event()
        self._timer_scope: anyio.CancelScope | None = None
        self._timer_sleeping_until = 0.0
        # Work items' timers: how many are in the heap, and the last one (in TimerKey
        # order) of those read from the store -- None: every stored timer is in the heap
        # (or has fired). While a read is under way every timer armed goes in.
        if timer_window < 1:
            raise ValueError(f"timer_window must be at least 1, not {timer_window}")
        self.timer_window = timer_window
        self.timers_held = 0
        self._timers_read_to: TimerKey | None = None
        self._timers_reading = False
        self._timers_read_again_at = 0.0  # after a failed read: when to try again
        self.incidents: list[Incident] = []
        self.max_action_workers = max_action_workers
        self._action_queue: deque[tuple[str, int, bool, int, bool]] = deque()
        self._action_workers = 0
        self._idle_workers: list[anyio.Event] = []
        # The running backend's Event and CancelScope classes, made directly: anyio.Event()
        # and anyio.CancelScope() ask sniffio for the backend and initialise the object
        # twice on every call (2.7 -> 1.0 us, 3.4 -> 1.1 us here). Set on entry, in the
        # event loop; used once per automatic action.
        self._event: Callable[[], anyio.Event] = anyio.Event
        self._scope: Callable[[], anyio.CancelScope] = anyio.CancelScope
        self._busy = 0  # runnable work units (not sleeping on the clock)
        self._idle = anyio.Event()
        self._idle.set()

    # ----------------------------------------------------------------- workflows
    def add_net(self, net: Net) -> None:
        self._nets[(net.workflow_id, net.version)] = net
        cur = self._latest.get(net.workflow_id)
        if cur is None or net.version >= cur.version:
            self._latest[net.workflow_id] = net

    def net(self, workflow_id: str, version: int | None = None) -> Net:
        net = (self._latest.get(workflow_id) if version is None
               else self._nets.get((workflow_id, version)))
        if net is None:
            raise WorkflowNotFound(f"workflow {workflow_id!r} is not registered",
                                   field="workflow_id")
        return net

    def workflows(self) -> list[Net]:
        return list(self._latest.values())

    # ----------------------------------------------------------------- lifecycle
    async def __aenter__(self) -> Runtime:
        self._event = type(anyio.Event())
        self._scope = type(anyio.CancelScope())
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._timer_loop)
        if self.idle_timeout:
            self._tg.start_soon(self._passivation_loop)
        await self._recover()
        return self

    async def __aexit__(self, *exc: Any) -> bool | None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        return await self._tg.__aexit__(*exc)

    async def _recover(self) -> None:
        """After a restart: re-arm pending timers, resume automatic work items."""
        await self._read_timers(None)
        items = await self.store.open_items()
        failed = 0
        for it in items:
            if it.state != "failed":
                # An action whose callback is awaited was handed over: not run again.
                if it.kind == "automatic" and not (it.assignee or "").startswith(AWAITING):
                    self._spawn_action(it.case_id, it.item)
                continue
            # Still waiting for someone to retry it: listed again, with the reason and
            # the time its case's log gives (the first RECOVER_REASONS of them: a log
            # read each; beyond that the history has them).
            reason, at = "failed before the last restart (the case history has the " \
                "reason)", it.enabled_at
            if failed < RECOVER_REASONS:
                for e in reversed(await self.store.events(it.case_id)):
                    if type(e) is WorkItemFailed and e.item == it.item:
                        reason, at = e.reason, e.at
                        break
            failed += 1
            self.incidents.append(Incident(it.case_id, it.item, it.task, "", 0, reason, at))
        if self.slas is not None:  # deadlines are derived, not stored: enabled + target
            phases = await self.store.open_phases()
            wf_of = {cid: wf for cid, wf, _ in phases}
            for it in items:
                wf = wf_of.get(it.case_id)
                if wf is not None:
                    self._arm_sla(it.case_id, it.item, wf, it.task, it.enabled_at)
            for cid, wf, entered in phases:
                self._arm_sla(cid, 0, wf, None, entered)

    # ------------------------------------------------------------------ messages
    async def create(self, workflow_id: str, case_id: str, data: dict[str, Any] | None,
                     ) -> Case:
        net = self.net(workflow_id)
        # A passivated case with this id is caught by the store: its first event
        # number is taken, and the append fails with a conflict.
        if case_id in self._resident or case_id in self._activating:
            raise CaseExists(f"case {case_id!r} already exists", field="case_id")
        now = self.clock.now()
        case, events = Case.create(net, case_id, data, now)
        events += self._hand_on(case, now)
        if self.dispatch is not None:
            events += self._holds(case, events, now)
        actor = _Actor(case, 0, now)
        # Until the create is durable the new case is "activating": messages for the
        # same id wait, then find it resident -- or, if a case with this id already
        # existed in the store, load that one.
        self._activating[case_id] = None
        try:
            await self._commit(actor, events, now, first_seq=1)
            self._resident[case_id] = actor
        except AppendConflict:
            raise CaseExists(f"case {case_id!r} already exists", field="case_id") from None
        finally:
            self._activated(case_id)
        self._passivate_over_cap()
        self._after_commit(case, events)
        return case

    async def tell(self, case_id: str, command: Command, notify: Notify | None = None,
                   ) -> Case:
        """Handle one command for a case; returns the case once its events are durable.

        `notify` turns the command's events into notifications, written to the outbox
        in the same append."""
        actor = self._resident.get(case_id)
        if actor is None:
            actor = await self._activate(case_id)
        else:
            self._resident.move_to_end(case_id)
        case = actor.case
        now = self.clock.now()
        first = case.version + 1
        events: list[Any] | None = None
        try:
            events = command(case)
            if case.status == "completed":  # the only state a case is handed on from
                events += self._hand_on(case, now)
            if self.dispatch is not None and events:
                events += self._holds(case, events, now)
        except EngineError:
            # A refusal. The engine leaves the case as it was when the command itself
            # refuses; when the command went through and the hand-on after it was
            # refused (the next workflow's schema), the case in memory has moved on
            # while nothing was written: it is rebuilt from its log.
            if events is not None:
                self._drop(case_id)
            raise
        except Exception as exc:
            self._drop(case_id)
            raise ActorFault(f"case {case_id!r}: handler failed ({exc!r}); it will be "
                             "rebuilt from its log") from exc
        actor.last_used = now
        if events:
            notices = notify(case, events) if notify is not None else None
            await self._commit(actor, events, now, first_seq=first, notices=notices)
            self._after_commit(case, events)
        return case

    async def get(self, case_id: str) -> Case:
        """The current state of a case (activating it if need be). Do not mutate it."""
        actor = self._resident.get(case_id)
        if actor is None:
            return (await self._activate(case_id)).case
        self._resident.move_to_end(case_id)
        actor.last_used = self.clock.now()
        return actor.case

    # convenience wrappers with the clock's time ------------------------------------
    async def complete(self, case_id: str, ref: int | str, result: str | None = None,
                       output: dict[str, Any] | None = None, by: str | None = None) -> Case:
        return await self.tell(case_id, lambda c: c.complete(ref, self.clock.now(), result,
                                                             output, by))

    async def start(self, case_id: str, ref: int | str, by: str | None = None) -> Case:
        return await self.tell(case_id, lambda c: c.start(ref, self.clock.now(), by))

    async def cancel(self, case_id: str, reason: str = "cancelled") -> Case:
        return await self.tell(case_id, lambda c: c.cancel(self.clock.now(), reason))

    async def retry(self, case_id: str, item: int, by: str | None = None) -> Case:
        """Take a failed item up again. An action's item is run again, held by `by`
        (who resolved the incident); a person's item goes back to its role unheld:
        whoever retries it (a permission, not the task's role) must not end up holding
        work they may not complete, keeping everyone else off it."""
        def take_up(c: Case) -> list[Any]:
            it = c.items.get(item)
            human = it is not None and c.net.tasks[it.task].kind != AUTOMATIC
            return c.retry_item(item, self.clock.now(), None if human else by)

        case = await self.tell(case_id, take_up)
        self.incidents = [i for i in self.incidents
                          if not (i.case_id == case_id and i.item == item)]
        if item in case.items and case.net.tasks[case.items[item].task].kind == AUTOMATIC:
            self._spawn_action(case_id, item, started=True)
        return case

    # ------------------------------------------------------------------ internals
    def _hand_on(self, case: Case, now: float) -> list[Any]:
        events: list[Any] = []
        while case.status == "completed" and case.hand_on_to in self._latest:
            events += case.hand_on(self._latest[case.hand_on_to], now)  # type: ignore[index]
        return events

    def _holds(self, case: Case, events: list[Any], now: float) -> list[Any]:
        """Hold the items this command enabled whose dispatch the policy puts off: in
        the same command, so an item is never seen undecided."""
        held: list[Any] = []
        wf = case.net.workflow_id
        for e in events:
            if type(e) is WorkItemEnabled and e.parent < 0:
                it = case.items.get(e.item)
                if it is None or it.state != "enabled":
                    continue  # gone already, or in a workflow the case has left
                hold = self.dispatch.hold_until(wf, e.task, now)  # type: ignore[union-attr]
                if hold is not None:
                    held += case.hold(e.item, now, hold[0], hold[1])
        return held

    async def _commit(self, actor: _Actor, events: list[Any], now: float, first_seq: int,
                      notices: list[Notice] | None = None) -> None:
        case = actor.case
        upserts, deletes, phases = changes(case, events)
        snapshot = None
        if case.version - actor.snap_seq >= self.snapshot_every:
            snapshot = msgspec.msgpack.encode(case.snapshot())
            actor.snap_seq = case.version
        batch = Append(case.case_id, first_seq, events, case_row(case, now), upserts, deletes,
                       snapshot, phases, notices or None)
        actor.pending += 1
        try:
            await self.store.append(batch)
        except BaseException:
            if self._resident.get(case.case_id) is actor:
                self._drop(case.case_id)  # memory is ahead of the log: rebuild on next use
            raise
        finally:
            actor.pending -= 1
            if self._settling and not actor.pending:
                settling = self._settling.get(case.case_id)
                if settling is not None and settling[0] is actor:
                    del self._settling[case.case_id]
                    settling[1].set()

    def _after_commit(self, case: Case, events: list[Any]) -> None:
        follow = _FOLLOW if self.slas is None else _FOLLOW_SLA
        tasks = case.net.tasks
        for e in events:
            if type(e) not in follow:
                continue  # most events (a completion) need nothing: one test, not four
            if type(e) is TimerSet:
                self._arm(e.due, case.case_id, e.item)
            elif type(e) is WorkItemFailed and e.item in case.items:
                t = tasks[case.items[e.item].task]
                if t.kind != AUTOMATIC:  # a person's item failed (a timer): show it
                    self.incidents.append(Incident(case.case_id, e.item, t.id, "", 0,
                                                   e.reason, e.at))
            elif type(e) is WorkItemEnabled and e.item in case.items:
                t = tasks[case.net.task_index[e.task]]
                if t.kind == AUTOMATIC and (t.mi is None or e.parent >= 0):
                    self._spawn_action(case.case_id, e.item)
                if self.slas is not None and e.parent < 0:
                    self._arm_sla(case.case_id, e.item, case.net.workflow_id, e.task, e.at)
            elif self.slas is not None and type(e) in (CaseCreated, CaseHandedOn):
                self._arm_sla(case.case_id, 0, e.workflow_id, None, e.at)

    async def _activate(self, case_id: str) -> _Actor:
        while case_id in self._activating:
            done = self._activating[case_id]
            if done is None:
                done = self._activating[case_id] = anyio.Event()
            await done.wait()
            actor = self._resident.get(case_id)
            if actor is not None:
                return actor
        self._activating[case_id] = None
        try:
            while (settling := self._settling.get(case_id)) is not None:
                await settling[1].wait()
            stored = await self.store.load(case_id)
            if stored is None:
                raise CaseNotFound(f"case {case_id!r} not found", field="case_id")
            base = None
            if stored.snapshot is not None:
                snap = msgspec.msgpack.decode(stored.snapshot, type=CaseSnapshot)
                base = Case.restore(self.net(snap.workflow_id, snap.workflow_version), snap)
            case = replay(stored.events, self.net, onto=base)
            actor = _Actor(case, stored.snapshot_seq, self.clock.now())
            self._resident[case_id] = actor
            self._passivate_over_cap()
            return actor
        finally:
            self._activated(case_id)

    def _activated(self, case_id: str) -> None:
        """The case is resident (or known not to be): wake the messages that waited."""
        done = self._activating.pop(case_id)
        if done is not None:
            done.set()

    def _drop(self, case_id: str) -> None:
        """Forget the case in memory; the next message rebuilds it from the log (once
        the appends it still has in flight are settled: see _settling)."""
        actor = self._resident.pop(case_id, None)
        if actor is not None and actor.pending:
            self._settling[case_id] = (actor, self._event())

    def _passivate_over_cap(self) -> None:
        """Least recently used first; never an actor whose append is still in flight
        (reloading it from the log would miss that append)."""
        busy = []
        while len(self._resident) > self.resident_cap:
            case_id, actor = self._resident.popitem(last=False)
            if actor.pending:
                busy.append((case_id, actor))
        for case_id, actor in busy:
            self._resident[case_id] = actor
            self._resident.move_to_end(case_id, last=False)

    @property
    def resident(self) -> int:
        return len(self._resident)

    async def _passivation_loop(self) -> None:
        assert self.idle_timeout
        while True:
            await self.clock.sleep_until(self.clock.now() + self.idle_timeout / 2)
            horizon = self.clock.now() - self.idle_timeout
            before = len(self._resident)
            for case_id in [c for c, a in self._resident.items()
                            if a.last_used < horizon and not a.pending]:
                self._drop(case_id)
            if before >= 1024 and len(self._resident) < before // 4:
                # A dict's table does not shrink as entries go (~60 B a slot): made
                # anew, the passivated cases' slots are given back.
                self._resident = OrderedDict(self._resident)

    # ------------------------------------------------------------------- timers
    def _arm(self, due: float, case_id: str, item: int) -> None:
        """Hold a work item's timer (already in the store: armed after its commit, or
        read from it) -- unless it falls after the ones read, where it waits its turn."""
        read_to = self._timers_read_to
        if read_to is not None and not self._timers_reading and (due, case_id, item) > read_to:
            return
        self._push([due, next(self._timer_seq), case_id, item])
        self.timers_held += 1
        if self.timers_held > 2 * self.timer_window and not self._timers_reading:
            # (Not during a read: it sets where the store's timers were read to when
            # it ends, which must not pass over timers let go meanwhile.)
            self._let_timers_go()

    def _let_timers_go(self) -> None:
        """Keep the earliest `timer_window` work-item timers in the heap; the later ones
        wait in the store, read again once these have fired."""
        timers = self._timers
        held = sorted((e for e in timers if _windowed(e)), key=_key)
        keep = held[:self.timer_window]
        read_to = _key(keep[-1])
        timers[:] = [e for e in timers if not _windowed(e)] + keep
        heapq.heapify(timers)
        self.timers_held = len(keep)
        if self._timers_read_to is None or read_to < self._timers_read_to:
            self._timers_read_to = read_to

    async def _read_timers(self, after: TimerKey | None) -> None:
        """Hold the next `timer_window` stored timers after `after` (None: the first)."""
        self._work(+1)  # a simulation's clock must not jump past timers not yet read
        try:
            self._timers_reading = True
            try:
                rows = await self.store.pending_timers(after, self.timer_window)
            finally:
                self._timers_reading = False
            # Timers armed during the read are in already; those it found again come
            # twice, and fire once (a timer that has fired is gone from its item).
            self._timers_read_to = rows[-1].key() if len(rows) >= self.timer_window else None
            for t in rows:
                self._arm(t.due, t.case_id, t.item)
            if self.timers_held > 2 * self.timer_window:
                self._let_timers_go()  # held back during the read (see _arm)
        finally:
            self._work(-1)

    def _arm_sla(self, case_id: str, item: int, workflow_id: str, task: str | None,
                 since: float) -> None:
        assert self.slas is not None
        target = self.slas.target(workflow_id, task)
        if target is not None:
            self._push([since + target.alert, next(self._timer_seq), case_id,
                        (item, workflow_id, target)])

    def _breach(self, item: int, workflow_id: str, target: Any) -> Command:
        def command(c: Case) -> list[Any]:
            if c.net.workflow_id != workflow_id:
                return []  # the case has moved on: the deadline belonged to its past
            it = c.items.get(item)
            if it is not None and it.parent >= 0:
                return []  # an instance: its task's deadline is the parent item's
            return c.breach_sla(item, self.clock.now(), target.target, target.alert)
        return command

    def _sla_notices(self, case: Case, events: list[Any]) -> list[Notice]:
        assert self.slas is not None
        return [n for e in events if type(e) is SlaBreached
                for n in self.slas.notices(case.case_id, case.net.workflow_id, e,
                                           case.data)]

    def _push(self, entry: list[Any]) -> list[Any]:
        """Timer entries are [due, seq, case_id, item]; SLA deadlines are
        [due, seq, case_id, (item, workflow_id, target)] (item 0: the workflow stay);
        action deadlines are [due, seq, None, cancel scope], the scope set to None once
        the action is done; a firing that failed is held again with a fifth element,
        _AGAIN."""
        timers = self._timers
        heapq.heappush(timers, entry)
        if self._timer_scope is not None and entry[0] < self._timer_sleeping_until:
            self._timer_scope.cancel()  # an earlier deadline: re-plan the sleep
        if len(timers) == 1:
            # The loop waits for the wake only once the heap is empty (it checks with
            # no suspension before waiting), so only a push into an empty heap need set
            # it; an entry per action makes this worth the test.
            self._timer_wake.set()
        return entry

    async def _timer_loop(self) -> None:
        while True:
            while self._timers and self._timers[0][2] is None and self._timers[0][3] is None:
                heapq.heappop(self._timers)  # the deadline of an action that has finished
            read_to = self._timers_read_to
            now = self.clock.now()
            # Read on once nothing held is due before the store's next timers can be
            # (strictly: timers due at the same time fire in either order, and equal
            # dues beyond a window must not be read again and again).
            wake_at = self._timers[0][0] if self._timers else None
            if read_to is not None and (wake_at is None or wake_at > read_to[0]):
                if now >= self._timers_read_again_at:
                    try:
                        await self._read_timers(read_to)
                    except Exception:  # the store failed: its timers wait in it; what is
                        # held meanwhile (SLA and action deadlines too) still fires
                        self._timers_read_again_at = self.clock.now() + 1.0
                    continue
                again = self._timers_read_again_at
                wake_at = again if wake_at is None else min(wake_at, again)
            if wake_at is None:
                self._timer_wake = anyio.Event()
                await self._timer_wake.wait()
                continue
            if wake_at > now:
                with anyio.CancelScope() as scope:
                    self._timer_scope, self._timer_sleeping_until = scope, wake_at
                    await self.clock.sleep_until(wake_at)
                self._timer_scope = None
                continue
            if not self._timers or self._timers[0][0] > now:
                continue  # the time to read the store again
            entry = heapq.heappop(self._timers)
            due, case_id, item = entry[0], entry[2], entry[3]
            if case_id is None:
                item.cancel()  # an action overran its timeout
                continue
            if _windowed(entry):
                self.timers_held -= 1
            self._work(+1)
            try:
                if type(item) is tuple:  # an SLA deadline
                    await self._tell_retrying(case_id, self._breach(*item),
                                              self._sla_notices)
                else:
                    await self._tell_retrying(case_id, lambda c, i=item: c.fire_timer(
                        i, self.clock.now()))
            except (EngineError, ActorFault):
                pass  # the case is closed or gone: the timer has nothing left to do
            except Exception:
                # The store failed: try again in a second, and carry on with the other
                # cases' timers rather than take the runtime down. Held apart from the
                # window: the store has this timer at its own due, which a window read
                # beyond it would not read again (and an SLA deadline is not stored).
                self._push([due + 1.0, next(self._timer_seq), case_id, item, _AGAIN])
            finally:
                self._work(-1)

    # ------------------------------------------------------------------ actions
    def _spawn_action(self, case_id: str, item: int, started: bool = False,
                      attempt: int = 0, waited: bool = False) -> None:
        """Queue an automatic item for the action workers: a pool of long-lived tasks,
        grown on demand up to `max_action_workers` (a task per action costs more).
        `attempt`: tries made so far; `waited`: its delay is behind it."""
        assert self._tg is not None
        self._work(+1)
        self._action_queue.append((case_id, item, started, attempt, waited))
        if self._idle_workers:
            self._idle_workers.pop().set()
        elif self._action_workers < self.max_action_workers:
            self._action_workers += 1
            self._tg.start_soon(self._action_worker)

    async def _action_worker(self) -> None:
        while True:
            while self._action_queue:
                case_id, item, started, attempt, waited = self._action_queue.popleft()
                try:
                    await self._action(case_id, item, started, attempt, waited)
                except Exception as exc:  # a bug must not take the runtime down
                    self.incidents.append(Incident(case_id, item, "?", "?", 0,
                                                   f"runtime error: {exc!r}",
                                                   self.clock.now()))
                finally:
                    self._work(-1)
            wake = self._event()
            self._idle_workers.append(wake)
            await wake.wait()

    def _later(self, due: float, case_id: str, item: int, started: bool, attempt: int,
               waited: bool) -> None:
        """Queue the action again at `due`. It waits in a task of its own, not in an
        action worker: a worker asleep is one fewer for the actions due now, and
        `max_action_workers` items waiting for a window would hold up all the others."""
        assert self._tg is not None
        self._work(+1)  # until it sleeps on the clock (wait_idle must not miss it)
        self._tg.start_soon(self._wait_then_run, due, case_id, item, started, attempt,
                            waited)

    async def _wait_then_run(self, due: float, case_id: str, item: int, started: bool,
                             attempt: int, waited: bool) -> None:
        try:
            await self._sleep(due)
            self._spawn_action(case_id, item, started, attempt, waited)
        finally:
            self._work(-1)

    async def _action(self, case_id: str, item: int, started: bool, attempt: int = 0,
                      waited: bool = False) -> None:
        try:
            case = await self.get(case_id)
        except (CaseNotFound, WorkflowNotFound):
            return
        it = case.items.get(item)
        if it is None:
            return
        t = case.net.tasks[it.task]
        name = t.action or ""
        now = self.clock.now()
        if it.state == "enabled" and attempt == 0:
            delay = 0.0 if waited else self.actions.delay(name)
            if delay is None:
                delay = t.delay  # the spec's params.delay, parsed by the compiler
            if delay:
                self._later(now + delay, case_id, item, started, 0, True)
                return
            if it.held_until is not None and it.held_until > now:
                # a dispatch window: not before it opens
                self._later(it.held_until, case_id, item, started, 0, True)
                return
        if it.state == "enabled" and not started and t.contested:
            try:  # claim it: in a deferred choice this is the moment the choice is made
                case = await self._tell_durably(case_id, lambda c: c.start(
                    item, self.clock.now(), f"action:{name}"))
            except EngineError:
                return  # withdrawn meanwhile (another branch won) or already done
            started = True
        handler = self.actions.get(name)
        policy = self.actions.retry
        error = f"no handler registered for action {name!r}"
        if handler is not None and attempt < policy.attempts:
            attempt += 1
            ctx = ActionContext(case_id, item, t.id, name, dict(t.params), dict(case.data),
                                attempt, self.clock.now(), case.net.workflow_id)
            try:
                out = await self._call(handler, ctx, policy.timeout)
            except Exception as exc:  # the action's own failure: retry with backoff
                error = f"{type(exc).__name__}: {exc}"
                if attempt < policy.attempts:
                    self._later(self.clock.now() + policy.delay(attempt, self.actions.rng),
                                case_id, item, started, attempt, True)
                    return
            else:
                if out is AWAIT_CALLBACK:  # handed over: the callback completes the item
                    with contextlib.suppress(EngineError):  # unless it already has
                        await self._tell_durably(case_id, lambda c: _hand_over(
                            c, item, self.clock.now(), AWAITING + name))
                    return
                out = dict(out or {})
                result = out.pop("result", None)
                try:
                    await self._tell_durably(case_id, lambda c, r=result, o=out: c.complete(
                        item, self.clock.now(), r, o, f"action:{name}"))
                except EngineError as exc:
                    if exc.kind != "invalid":
                        return  # cancelled or withdrawn meanwhile, or done already
                    # The case refused what the action answered (a result its task does
                    # not list, data its schema does not take): running it again answers
                    # the same, and an item left enabled would wait for nothing.
                    # Someone looks.
                    error = f"its answer was refused: {exc.message}"
                else:
                    return
        self.incidents.append(Incident(case_id, item, t.id, name, attempt, error,
                                       self.clock.now()))
        with contextlib.suppress(EngineError):
            await self.tell(case_id, lambda c: c.fail_item(item, self.clock.now(), error))

    async def _tell_retrying(self, case_id: str, command: Command,
                             notify: Notify | None = None) -> Case:
        """`tell` for the runtime's own messages: a conflict means the actor was rebuilt
        from the log meanwhile, so the message is worth one more try on the fresh state."""
        try:
            return await self.tell(case_id, command, notify)
        except AppendConflict:
            return await self.tell(case_id, command, notify)

    async def _tell_durably(self, case_id: str, command: Command) -> Case:
        """`_tell_retrying` for what an action did: a store that could not write it for
        now (a `transient` failure: another process held the lock past its timeout) is
        waited out -- 1 s, doubling to 30 s -- rather than leaving an enabled item
        nobody resumes, and the action is not run again for it (its effect has
        happened). Anything else is the caller's."""
        wait = 1.0
        while True:
            try:
                return await self._tell_retrying(case_id, command)
            except Exception as exc:
                if not getattr(type(exc), "transient", False):
                    raise
            await self._sleep(self.clock.now() + wait)
            wait = min(2 * wait, 30.0)

    async def _call(self, handler: Any, ctx: ActionContext, timeout: float) -> Any:
        """Run a handler with a timeout measured on the runtime's clock (virtual or not).

        The deadline goes into the timer heap the timer loop already sleeps on, so a
        call costs a cancel scope and a heap entry -- not a task group and a sleeper.
        """
        deadline = self.clock.now() + timeout
        with self._scope() as scope:
            entry = self._push([deadline, next(self._timer_seq), None, scope])
            try:
                return await handler(ctx)
            finally:
                entry[3] = None  # disarmed; popped when it reaches the top of the heap
                if self._timer_scope is not None and self._timer_sleeping_until == deadline:
                    self._timer_scope.cancel()  # do not keep a sleeper for a dead deadline
        raise TimeoutError(f"action {ctx.action!r} took longer than {timeout:g} s")

    # ---------------------------------------------------------------- quiescence
    def _work(self, delta: int) -> None:
        self._busy += delta
        if self._busy == 0:
            self._idle.set()
        elif delta > 0 and self._idle.is_set():
            self._idle = anyio.Event()

    async def _sleep(self, deadline: float) -> None:
        """Sleep on the clock; sleeping work does not count as busy (for simulations)."""
        self._work(-1)
        try:
            await self.clock.sleep_until(deadline)
        finally:
            self._work(+1)

    async def wait_idle(self) -> None:
        """Until every action and timer firing is done or asleep on the clock."""
        while True:
            await self._idle.wait()
            await anyio.sleep(0)
            if self._busy == 0:
                return
