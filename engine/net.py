"""The compiled net: a spec turned into integer indices and precomputed bitsets.

Conditions are numbered 0..n-1 and a marking's "which conditions hold a token" is
one int used as a bitset, so the enabling rule of every join is a few bit
operations. Task-side facts are precomputed per task in a `Task` record with slots.
Both the case state machine and the soundness checker decide enabling with the same
`is_enabled`, so what the checker proves is what the runtime does.

OR-join (YAWL semantics, structural form): an OR-join task is enabled when at least
one input holds a token and no empty input can still receive one, i.e. no token and
no running work item lies on a path to that input that does not pass through the
join itself. The compiler computes, for each OR-join input, the conditions and tasks
from which that input is reachable avoiding the join; at run time the test is a
couple of ANDs per empty input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .guards import Guard
from .spec import TaskSpec, WorkflowSpec

_REVISIT_CACHE = 4096  # patterns memoised per net (beyond: computed every time)

# Task kinds, joins and splits as small ints (compared on the hot path).
HUMAN, AUTOMATIC, EMPTY, COMPOSITE = 0, 1, 2, 3
AND, XOR, OR, PARTIAL = 0, 1, 2, 3
KIND = {"human": HUMAN, "automatic": AUTOMATIC, "empty": EMPTY, "composite": COMPOSITE}
JOIN = {"and": AND, "xor": XOR, "or": OR, "partial": PARTIAL}
SPLIT = {"and": AND, "xor": XOR, "or": OR}
KIND_NAME = {v: k for k, v in KIND.items()}

STRICT, CANCEL_REMAINING, IMPLICIT = 0, 1, 2
COMPLETION = {"strict": STRICT, "cancel_remaining": CANCEL_REMAINING, "implicit": IMPLICIT}


class Timer:
    __slots__ = ("after", "on_start", "on_timeout", "output", "result")

    def __init__(self, after: float, on_start: bool, on_timeout: str, result: str,
                 output: dict[str, Any]) -> None:
        self.after = after
        self.on_start = on_start
        self.on_timeout = on_timeout
        self.result = result
        self.output = output


class MultipleInstance:
    __slots__ = ("cancel_rest", "collect", "dynamic", "item_field", "items", "max", "min",
                 "threshold")

    def __init__(self, min_: int, max_: int | None, threshold: int | None, dynamic: bool,
                 items: Guard | None, item_field: str, collect: str | None,
                 cancel_rest: bool = True) -> None:
        self.cancel_rest = cancel_rest
        self.min = min_
        self.max = max_
        self.threshold = threshold
        self.dynamic = dynamic
        self.items = items
        self.item_field = item_field
        self.collect = collect


class Task:
    """One compiled task. Read-only after compilation."""

    __slots__ = (
        "accepts_signal",
        "action",
        "authority",
        "authority_when",
        "cancel_conds",
        "cancel_mask",
        "cancel_tasks",
        "checklist",
        "checklist_when",
        "contested",
        "default",
        "delay",
        "id",
        "idx",
        "in_cycle",
        "join",
        "kind",
        "mi",
        "milestone_mask",
        "orjoin",
        "outputs",
        "params",
        "post_mask",
        "postset",
        "preset",
        "preset_mask",
        "relax",
        "results",
        "role",
        "routes",
        "spec",
        "split",
        "threshold",
        "timer",
        "watch_busy",
        "watch_conds",
        "workflow",
    )

    def __init__(self, idx: int, spec: TaskSpec) -> None:
        self.idx = idx
        self.id = spec.id
        self.spec = spec
        self.kind = KIND[spec.kind]
        self.join = JOIN[spec.join]
        self.split = SPLIT[spec.split]
        self.threshold = spec.threshold or 1
        self.role = spec.role
        self.action = spec.action
        self.params = spec.params
        self.workflow = spec.workflow
        self.checklist: tuple[str, ...] = tuple(spec.checklist)
        self.checklist_when: Guard | None = None
        # The spec's word: a person's task another system may complete. Whether an
        # automatic task takes a signal depends on its action (does it hand the work to
        # another system?), which the runtime's registry knows, not the net.
        self.accepts_signal: bool = spec.accepts_signal
        self.delay: float | None = None  # params.delay in seconds: wait before the action
        self.results: frozenset[str] = frozenset(spec.results)
        self.preset: tuple[int, ...] = ()
        self.preset_mask = 0
        self.postset: tuple[int, ...] = ()
        # Guarded routes in evaluation order, and the default condition (-1: none).
        self.routes: tuple[tuple[int, Guard], ...] = ()
        self.default = -1
        self.orjoin: tuple[tuple[int, int, int], ...] = ()  # (input bit, cond mask, task mask)
        self.milestone_mask = 0
        self.cancel_conds: tuple[int, ...] = ()
        self.cancel_mask = 0
        self.cancel_tasks: frozenset[int] = frozenset()
        self.watch_conds = 0  # conditions whose change may change this task's enabling
        self.watch_busy = 0  # tasks whose running items may change it (OR-join)
        self.timer: Timer | None = None
        self.mi: MultipleInstance | None = None
        self.outputs: tuple[tuple[str, Guard], ...] = ()
        self.authority: tuple[tuple[str, Guard], ...] = ()  # (limit kind, measure)
        self.authority_when: Guard | None = None  # None: the limits bind every result
        self.in_cycle = False  # the task can come round again (a loop runs through it)
        # Another task takes tokens from one of its inputs (a deferred choice): starting
        # it is a decision, so an action must claim it before running.
        self.contested = False
        self.post_mask = 0
        # For an OR-join inside a loop: the precise (relaxed reachability) test used when
        # the structural one says a token might still come. None elsewhere.
        self.relax: Callable[[int, int], bool] | None = None


class Net:
    """An immutable, integer-indexed workflow net. Built by `engine.compile`."""

    __slots__ = (
        "all_tasks",
        "busy_watchers",
        "completion",
        "cond_ids",
        "cond_index",
        "cond_watchers",
        "end",
        "handovers",
        "has_triggers",
        "pass_memo",
        "persistent_mask",
        "revisit_memo",
        "schema_fields",
        "spec",
        "start",
        "task_index",
        "tasks",
        "transient_mask",
        "validate_data",
        "version",
        "warnings",
        "workflow_id",
    )

    def __init__(self, spec: WorkflowSpec, cond_ids: tuple[str, ...], tasks: tuple[Task, ...],
                 start: int, end: int, handovers: tuple[tuple[str, Guard | None], ...],
                 validate_data: Callable[..., dict[str, Any]],
                 transient_mask: int, persistent_mask: int) -> None:
        self.spec = spec
        self.workflow_id = spec.id
        self.version = spec.version
        self.cond_ids = cond_ids
        self.cond_index = {c: i for i, c in enumerate(cond_ids)}
        self.tasks = tasks
        self.task_index = {t.id: t.idx for t in tasks}
        self.start = start
        self.end = end
        self.completion = COMPLETION[spec.completion]
        self.handovers = handovers
        self.validate_data = validate_data
        # The fields the data schema says anything about (required or typed): a
        # completion's output that names none of them has nothing to check.
        schema = spec.data
        self.schema_fields: frozenset[str] = (
            frozenset(schema.required) | frozenset(schema.properties) if schema is not None
            else frozenset())
        self.transient_mask = transient_mask
        self.persistent_mask = persistent_mask
        self.has_triggers = bool(transient_mask or persistent_mask)
        self.warnings: tuple[str, ...] = ()
        # Per condition / per task: the tasks (as a bitset) whose enabling may change
        # when that condition's tokens or that task's running items change.
        cw = [0] * len(cond_ids)
        bw = [0] * len(tasks)
        for t in tasks:
            for c in range(len(cond_ids)):
                if t.watch_conds >> c & 1:
                    cw[c] |= 1 << t.idx
            for u in range(len(tasks)):
                if t.watch_busy >> u & 1:
                    bw[u] |= 1 << t.idx
        self.cond_watchers = tuple(cw)
        self.busy_watchers = tuple(bw)
        self.all_tasks = (1 << len(tasks)) - 1
        # Touched conditions (or, when running items changed too, the pair) ->
        # `revisit`'s answer. A cache, not state: the same for every case of the net,
        # and a net sees few patterns (a completion touches its task's inputs and
        # outputs). Keyed by the int alone in the usual case: cheaper to look up.
        self.revisit_memo: dict[int | tuple[int, int], tuple[Task, ...]] = {}
        # (touched conditions, tasks whose running items changed, marking, offered
        # tasks) -> the settle pass's offers (True) and withdrawals (False), in order.
        # Kept by `Case._settle` only for a pass with nothing running and no partial
        # join waiting, where the join rules read nothing else (running tasks are
        # none; the case data only reaches an empty task's routing or a task's
        # instances, and a pass doing either is not kept). A cache like the above.
        self.pass_memo: dict[tuple[int, int, int, int], tuple[tuple[Task, bool], ...]] = {}

    def __repr__(self) -> str:
        return f"<Net {self.workflow_id} v{self.version}: {len(self.tasks)} tasks>"

    def revisit(self, dirty: int, busy: int) -> tuple[Task, ...]:
        """The tasks whose enabling may change when the conditions in `dirty` gained or
        lost tokens and the tasks in `busy` started or ended running items (bitsets; -1:
        everything), in index order. Memoised: settling asks this on every step."""
        key = (dirty, busy) if busy else dirty
        todo = self.revisit_memo.get(key)
        if todo is None:
            if dirty < 0 or busy < 0:
                mask = self.all_tasks
            else:
                mask = 0
                for c, w in enumerate(self.cond_watchers):
                    if dirty >> c & 1:
                        mask |= w
                for u, w in enumerate(self.busy_watchers):
                    if busy >> u & 1:
                        mask |= w
            todo = tuple(t for t in self.tasks if mask >> t.idx & 1)
            if len(self.revisit_memo) < _REVISIT_CACHE:
                self.revisit_memo[key] = todo
        return todo


def is_enabled(t: Task, marked: int, busy: int, seen: int) -> bool:
    """The join rule of task `t` for a marking (bitset), running tasks and partial-join memory."""
    if t.milestone_mask and marked & t.milestone_mask != t.milestone_mask:
        return False
    m = marked & t.preset_mask
    j = t.join
    if j == AND:
        return m == t.preset_mask
    if not m:
        return False
    if j == XOR:
        return True
    if j == OR:
        for bit, conds, tasks in t.orjoin:
            if not marked & bit and (marked & conds or busy & tasks):
                # Structurally a token could still come. In an acyclic net that is the
                # answer; inside a loop the path may lead through a join that itself
                # waits for this one, so ask the relaxed reachability test.
                return t.relax is not None and t.relax(marked, busy)
        return True
    # PARTIAL: after firing, the join waits until every input has arrived once
    # (late arrivals are absorbed); tokens on inputs already seen wait (WCP-28/30).
    return not seen and m.bit_count() >= t.threshold


def make_relax(t: Task, tasks: tuple[Task, ...] | list[Task], triggers: int,
               ) -> Callable[[int, int], bool]:
    """The OR-join test of YAWL, in its delete-relaxed form.

    From the current marking (plus whatever running work items will produce, plus
    triggers from outside), compute every condition that could ever be marked while
    `t` itself does not fire: tasks fire as soon as their join could be satisfied and
    tokens are never used up. That over-approximates what can happen, so "no empty
    input of t can ever be marked" is a safe licence to fire; unlike the structural
    test it respects AND-joins, so a loop back through a join that waits for `t` does
    not block `t` for ever. As in YAWL, what counts is a state that keeps the tokens `t`
    already holds and adds one: a task whose cancellation region would take one of
    them (or cancel `t`) leads nowhere that matters, so it is left out.
    """
    others = [u for u in tasks if u.idx != t.idx]

    def relax(marked: int, busy: int) -> bool:
        held = t.preset_mask & marked
        reach = marked | triggers
        for u in tasks:
            if busy >> u.idx & 1 and not (u.cancel_mask & held or t.idx in u.cancel_tasks):
                reach |= u.post_mask
        changed = True
        while changed:
            changed = False
            for u in others:
                if not u.post_mask & ~reach or u.cancel_mask & held \
                        or t.idx in u.cancel_tasks:
                    continue
                pm = u.preset_mask
                if (reach & pm == pm) if u.join == AND else (reach & pm):
                    reach |= u.post_mask
                    changed = True
        return not (t.preset_mask & ~marked & reach)

    return relax


def consumption(t: Task, marked: int) -> tuple[int, ...]:
    """Which conditions firing `t` takes a token from (deterministic)."""
    j = t.join
    if j == AND:
        return t.preset
    pm = t.preset_mask
    if marked & pm == pm and (j != XOR or not pm & (pm - 1)):
        # Every input holds a token (an XOR join: its only input): all are taken,
        # in the preset's order -- what the loops below would build, without them.
        return t.preset
    if j == XOR:
        for c in t.preset:
            if marked >> c & 1:
                return (c,)
        return ()
    return present(t.preset, marked)


def present(conds: tuple[int, ...], mask: int) -> tuple[int, ...]:
    """The conditions of `conds` that are in the bitset `mask`, in order.

    A loop, not a generator expression: one would make `mask` a closure cell, which
    the hot callers would pay for on every call, whichever branch they take.
    """
    out = []
    for c in conds:
        if mask >> c & 1:
            out.append(c)
    return tuple(out)
