"""The digital twin: the real engine and runtime under a virtual clock, with simulated
people and customers acting on an agenda.

Theory of operation
-------------------
Nothing is faked below the people: cases run in the real `Runtime` (actors, timers,
automatic actions, SLA deadlines, dispatch holds) on a store -- `MemoryStore` for the
planner's what-if runs, SQLite for `caseloop simulate` -- under a `VirtualClock`. What
is simulated is everything outside the system: an `Agenda` of things people and
customers will do at given virtual times (a person completes an item, a customer
signs or pays, a new case arrives).

The loop (`run_agenda`) alternates between the system and the world:

1. run the runtime until it is idle (`wait_idle`): automatic tasks, timer firings and
   hand-overs triggered by the last step have all been committed;
2. let the observer (`settle`) look at what the step produced -- typically the work
   items that were enabled -- and put people's reactions on the agenda;
3. take the earliest of the clock's next deadline (a timer, an action's delay) and the
   agenda's head; advance the clock there. A deadline goes first on a tie: the
   runtime's own work at an instant happens before the world acts at that instant.
   Then perform ONE agenda entry (or, for a deadline, nothing: step 1 runs the woken
   sleepers), and go round again.

One entry at a time, each followed by quiescence, is what makes a run deterministic:
no two simulated actions are ever in flight together, so the order of everything is
fixed by virtual time and, on ties, by the order entries were put on the agenda (a
sequence number) -- never by thread timing, set order or the wall clock. The same
inputs and seed give the same history, event for event.

`TapStore` wraps any store and reports each append after it is durable: the twin learns
what happened (items enabled, completed, phases) from the same batches the store
writes, without a second read.

`run_task_twin` is the planner's question "what would this dispatch policy do to this
task's waiting times": one human task, one case per arrival, a person who answers
arrival i after `respond(i, dispatched)` seconds.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

from actors import ActionRegistry, Runtime, VirtualClock
from actors.ports import Append, DispatchPolicy
from engine import Net, compile, decode_spec
from engine.events import WorkItemCompleted, WorkItemEnabled

from .arrivals import PATTERNS, arrivals, intensity
from .memory_store import MemoryStore
from .responses import (
    CustomerModel,
    Delay,
    Observed,
    PeopleModel,
    RoleModel,
    WorkingHours,
    people_from_observations,
)

__all__ = [
    "PATTERNS",
    "Agenda",
    "CustomerModel",
    "Delay",
    "MemoryStore",
    "Observed",
    "PeopleModel",
    "RoleModel",
    "TapStore",
    "TwinRun",
    "WorkingHours",
    "arrivals",
    "intensity",
    "people_from_observations",
    "run_agenda",
    "run_task_twin",
    "task_spec",
]

Act = Callable[[], Awaitable[None]]


class Agenda:
    """What the world will do, and when: a heap of (time, sequence, action)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Act]] = []
        self._seq = itertools.count()

    def at(self, when: float, act: Act) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), act))

    def next_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def pop(self) -> Act:
        return heapq.heappop(self._heap)[2]

    def __len__(self) -> int:
        return len(self._heap)


class TapStore:
    """An EventStore that reports every durable append to `on_append` (synchronously,
    right after the inner store committed it). Everything else goes to the inner store,
    so the runtime and the actions (least-loaded assignment) see one store."""

    def __init__(self, inner: Any, on_append: Callable[[Append], None]) -> None:
        self.inner = inner
        self.on_append = on_append

    async def append(self, batch: Append) -> None:
        await self.inner.append(batch)
        self.on_append(batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def run_agenda(runtime: Runtime, clock: VirtualClock, agenda: Agenda, *,
                     settle: Callable[[], Awaitable[None]] | None = None,
                     until: float | None = None,
                     step: Callable[[], None] | None = None) -> None:
    """Alternate system and world until neither has anything left (or until `until`:
    then the clock stops there, with what is due later still pending). The runtime must
    be running (`async with runtime`)."""
    while True:
        await runtime.wait_idle()
        if settle is not None:
            await settle()
        due_world = agenda.next_time()
        due_system = clock.next_deadline()
        if due_system is not None and (due_world is None or due_system <= due_world):
            if until is not None and due_system > until:
                break
            clock.advance_to(max(due_system, clock.now()))
            continue
        if due_world is None or (until is not None and due_world > until):
            break
        if due_world > clock.now():
            clock.advance_to(due_world)
        await agenda.pop()()
        if step is not None:
            step()
    if until is not None and until > clock.now():
        clock.advance_to(until)
        await runtime.wait_idle()


# ------------------------------------------------------------ the one-task twin
class TwinRun(msgspec.Struct):
    """One entry per arrival, in the order of the arrivals given: when its work item was
    enabled, dispatched (enabled, or released from a hold) and completed."""

    enabled_at: list[float]
    dispatched_at: list[float]
    completed_at: list[float]


def task_spec(workflow_id: str, task: str, role: str = "twin") -> dict[str, Any]:
    """A one-task workflow, written as specs/*.json are: a human task of `role`, then end."""
    return {
        "id": workflow_id, "name": f"Twin of {task}", "version": 1,
        "description": "The digital twin's one-task workflow: a person of the role does "
                       "the task, then the case ends.",
        "tasks": [{"id": task, "role": role}],
        "flows": [{"from": "start", "to": task}, {"from": task, "to": "end"}],
    }


def _task_net(workflow_id: str, task: str) -> Net:
    return compile(decode_spec(task_spec(workflow_id, task)))


async def run_task_twin(arrivals: Sequence[float], respond: Callable[[int, float], float],
                        *, dispatch: DispatchPolicy | None = None,
                        workflow_id: str = "twin", task: str = "Work") -> TwinRun:
    """Run one human task through the real runtime on a MemoryStore and a VirtualClock:
    a case per arrival (created at that virtual time), whose item a simulated person
    completes at dispatched + respond(i, dispatched), dispatched = max(enabled_at,
    held_until). `respond` gets the arrival's index (common random numbers across the
    policies compared) and must return seconds >= 0."""
    n = len(arrivals)
    nan = math.nan
    enabled, dispatched, completed = [nan] * n, [nan] * n, [nan] * n
    index: dict[str, int] = {}
    fresh: deque[tuple[str, int, int]] = deque()  # (case, item, arrival) enabled, unplanned

    def observe(batch: Append) -> None:
        i = index[batch.case_id]
        for e in batch.events:
            t = type(e)
            if t is WorkItemEnabled:
                enabled[i] = e.at
                fresh.append((batch.case_id, e.item, i))
            elif t is WorkItemCompleted:
                completed[i] = e.at

    clock = VirtualClock(min(arrivals) if n else 0.0)
    rt = Runtime(TapStore(MemoryStore(), observe), clock, ActionRegistry(), dispatch=dispatch)
    rt.add_net(_task_net(workflow_id, task))
    agenda = Agenda()

    def arrive(i: int) -> Act:
        case_id = f"{workflow_id}-{i}"
        index[case_id] = i

        async def create() -> None:
            await rt.create(workflow_id, case_id, None)
        return create

    def finish(case_id: str, item: int) -> Act:
        async def complete() -> None:
            await rt.complete(case_id, item, None, None, "twin")
        return complete

    async def settle() -> None:
        while fresh:
            case_id, item, i = fresh.popleft()
            it = (await rt.get(case_id)).items.get(item)
            if it is None:
                continue
            held = getattr(it, "held_until", None)
            at = it.enabled_at if held is None else max(it.enabled_at, held)
            dispatched[i] = at
            wait = respond(i, at)
            if not 0 <= wait < math.inf:
                raise ValueError(f"respond({i}, {at}) = {wait!r}: need finite seconds >= 0")
            agenda.at(at + wait, finish(case_id, item))

    for i, at in enumerate(arrivals):
        agenda.at(at, arrive(i))
    async with rt:
        await run_agenda(rt, clock, agenda, settle=settle)
    return TwinRun(enabled, dispatched, completed)
