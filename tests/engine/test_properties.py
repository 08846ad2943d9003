"""Property-based tests of the engine on random block-structured (sound) workflows.

The strategies live in `strategies.py` next to this file. Each run-based property
draws a spec, compiles it, draws case data and a random admissible run (see
`strategies.runs`), then checks the recorded events and snapshots. Set
CASELOOP_PROPERTY_SCALE=10 (say) for a deeper run.

A generated spec that the engine refuses to compile is property 1's failure to
report; the run-based properties skip such specs (`reject()`) so that one compile
problem does not turn every property red.

Engine findings (open when this file was written; the tests stay red until fixed):

1a. An OR-join inside a loop whose body also holds a cancellation task is reported as a
    dead task: loop(cancel(or(t, t))). The cancelling task's pending token can reach the
    OR-join's empty input round the loop, but only by cancelling the join's own marked
    inputs first; YAWL's OR-join (coverability of the *current* inputs plus one) fires,
    the engine's test (reachability of an empty input, cancellation ignored) waits for
    ever.
1b. Nested OR blocks in a loop whose outer OR split can start two branches deadlock:
    loop(or*(or(t, t), t)). The inner join waits for the outer one (optimistically
    assumed to fire and go round the loop), the outer waits for the inner: a "vicious
    circle", so the checker rejects a block-structured spec.
6b. When a deferred choice is taken and the case reaches `end` in the same settle (an
    empty join right before `end`), the losers are cancelled as "case completed", not
    "withdrawn": `Case._settle` breaks out of its task sweep as soon as `end` is marked,
    before the remaining (higher-index) tasks are re-examined and withdrawn.
"""

from __future__ import annotations

import copy
import itertools
import os
from collections import deque
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, event, example, given, reject, settings
from strategies import (
    BLOCK_KINDS,
    STEP_BOUND,
    Run,
    SpecMeta,
    build_spec,
    case_data,
    runs,
    shapes,
    specs,
)

from engine import (
    ENABLED,
    Case,
    Net,
    SpecError,
    compile_document,
    replay,
)
from engine.events import (
    TaskFired,
    TokensAdded,
    TokensRemoved,
    WorkItemCancelled,
    WorkItemCompleted,
    WorkItemEnabled,
    WorkItemStarted,
)
from engine.net import AND, OR, XOR

# CASELOOP_PROPERTY_SCALE=20 (say) multiplies every example count, for a deep run.
SCALE = max(1, int(os.environ.get("CASELOOP_PROPERTY_SCALE", "1")))
SETTINGS = settings(max_examples=250 * SCALE, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# --------------------------------------------------------------------- helpers
def _compile(spec: dict[str, Any]) -> Net:
    try:
        return compile_document(spec)
    except SpecError:
        reject()  # property 1 reports it


def _play(data: st.DataObject, spec_strategy: Any = None) -> tuple[dict[str, Any], SpecMeta, Run]:
    if spec_strategy is None:
        spec_strategy = specs()
    spec, meta = data.draw(spec_strategy, label="spec")
    net = _compile(spec)
    values = data.draw(case_data(meta), label="case data")
    run = data.draw(runs(net, meta, values), label="run")
    return spec, meta, run


def _trace(run: Run, upto: int | None = None) -> str:
    return "\n".join(s.command for s in run.steps[:upto])


class Shadow:
    """A case rebuilt event by event (with `Case.apply`), to look at every intermediate state.

    Also remembers each work item's task and parent (items leave the case when closed)."""

    def __init__(self, net: Net) -> None:
        self.net = net
        self.case = Case(net)
        self.item_task: dict[int, str] = {}
        self.item_parent: dict[int, int] = {}

    def apply(self, e: Any) -> None:
        if isinstance(e, WorkItemEnabled):
            self.item_task[e.item] = e.task
            self.item_parent[e.item] = e.parent
        self.case.apply(e)

    def task_of(self, e: Any) -> Any:
        if isinstance(e, TaskFired):
            return self.net.tasks[self.net.task_index[e.task]]
        return self.net.tasks[self.net.task_index[self.item_task[e.item]]]

    def started(self) -> list[str]:
        return [self.net.tasks[i.task].id for i in self.case.work_items()
                if i.state != ENABLED and i.parent < 0]


# ------------------------------------------------------------------ property 1
# Minimal counter-examples this property found (engine findings 1a/1b, module docstring):
# an OR-join in a loop body waits for a token that can only come after it fired itself.
_OR_IN_LOOP_WITH_CANCEL = ("loop", ("cancel", "human", "human",
                                    ("or", "human", "human", False, (("task",), ("task",)))))
_NESTED_OR_IN_LOOP = ("loop", ("or", "human", "human", True,
                               (("or", "human", "human", False, (("task",), ("task",))),
                                ("task",))))
# Fixed by the engine's relaxed OR-join test in loops; kept as a regression example.
_OR_IN_LOOP_WITH_AND = ("loop", ("and", "human", "human",
                                  (("task",), ("or", "human", "human", False,
                                               (("task",), ("task",))))))


@settings(max_examples=300 * SCALE, deadline=None)
@given(shapes())
@example(_OR_IN_LOOP_WITH_AND)
@example(_OR_IN_LOOP_WITH_CANCEL)
def test_generated_specs_compile_sound_without_warnings(shape: tuple[Any, ...]) -> None:
    """1. Every block-structured spec compiles, passes the soundness check, no warnings."""
    spec, _ = build_spec(shape)
    try:
        net = compile_document(spec)
    except SpecError as exc:
        raise AssertionError(f"a sound block-structured spec was rejected:\n{exc}") from None
    assert net.warnings == ()


# ------------------------------------------------------------------ property 2
@pytest.mark.xfail(strict=True, raises=SpecError, reason=(
    "known limit: two OR-joins nested in a loop each see the other's loop-back as a token "
    "still to come (a vicious circle); the generator excludes the shape"))
def test_nested_or_joins_in_a_loop_are_accepted() -> None:
    spec, _ = build_spec(_NESTED_OR_IN_LOOP)
    compile_document(spec)


@SETTINGS
@given(st.data())
def test_tokens_are_never_created_from_nothing(data: st.DataObject) -> None:
    """2. Every firing consumes from its preset by its join and produces into its postset by
    its split; the nets are safe (<= 1 token per condition) and the threads alive (tokens
    plus running items) never exceed the structure's width."""
    _, meta, run = _play(data)
    sh = Shadow(run.net)
    for k, step in enumerate(run.steps):
        for e in step.events:
            where = f"after\n{_trace(run, k)}\nevent {e}"
            assert not isinstance(e, TokensAdded), where  # no triggers: no tokens from outside
            if isinstance(e, WorkItemStarted | WorkItemCompleted | TaskFired | WorkItemCancelled):
                t = sh.task_of(e)
                top = isinstance(e, TaskFired) or sh.item_parent[e.item] < 0
                was_enabled = not isinstance(e, TaskFired) and \
                    sh.case.items[e.item].state == ENABLED
                consumed = set(e.consumed)
                assert len(consumed) == len(e.consumed), where
                assert consumed <= set(t.preset), where
                fires = isinstance(e, TaskFired) or (
                    was_enabled and top and not isinstance(e, WorkItemCancelled))
                if fires:  # the join decides what the firing takes
                    assert consumed, where
                    if t.join == AND:
                        assert consumed == set(t.preset), where
                    elif t.join == XOR:
                        assert len(consumed) == 1, where
                    elif t.join == OR:  # everything that arrived
                        marked = {c for c in t.preset if sh.case.tokens[c]}
                        assert consumed == marked, where
                elif not isinstance(e, WorkItemCancelled):
                    assert not consumed, where  # a started item already took its tokens
                if isinstance(e, WorkItemCompleted | TaskFired) and top:
                    produced = set(e.produced)
                    assert produced, where
                    assert len(produced) == len(e.produced), where
                    assert produced <= set(t.postset), where
                    if t.split == AND:
                        assert produced == set(t.postset), where
                    elif t.split == XOR:
                        assert len(produced) == 1, where
            if isinstance(e, TokensRemoved):
                assert e.reason == "case completed" or e.reason.startswith("cancelled by"), where
            sh.apply(e)
            tokens = sh.case.tokens
            assert max(tokens) <= 1, f"unsafe marking {sh.case.tokens_by_condition()} {where}"
            threads = sum(tokens) + len(sh.started())
            assert threads <= meta.width, (
                f"{threads} threads > width {meta.width}: {sh.case.tokens_by_condition()}, "
                f"running {sh.started()} {where}")


# ------------------------------------------------------------------ property 3
@SETTINGS
@given(st.data())
def test_no_silent_deadlock(data: st.DataObject) -> None:
    """3. After every step a case of a sound net is completed or offers some work item."""
    _, _, run = _play(data)
    for k, step in enumerate(run.steps):
        snap = step.after
        assert snap.status in ("active", "completed"), \
            f"case {snap.status} after\n{_trace(run, k + 1)}\nevents {step.events}"
        if snap.status == "active":
            assert snap.items, (f"active case with nothing open after\n{_trace(run, k + 1)}\n"
                                f"tokens {snap.tokens}")
    last = run.steps[-1].after
    event(f"run ends {last.status}")
    event(f"steps: {'<10' if len(run.steps) < 10 else '<50' if len(run.steps) < 50 else '50+'}")
    assert last.status == "completed" or len(run.steps) > STEP_BOUND  # or the step bound hit


# ------------------------------------------------------------------ property 4
@SETTINGS
@given(st.data())
def test_replay_equals_state(data: st.DataObject) -> None:
    """4. Replaying the log up to any step rebuilds the state the live case had then
    (tokens, marking, status, data, open items); at the end, every public slot."""
    _, _, run = _play(data)
    log: list[Any] = []
    for k, step in enumerate(run.steps):
        log.extend(step.events)
        again = replay(log, run.net)
        snap = step.after
        got = (tuple(again.tokens), again.marked, again.status, again.data,
               frozenset((i.id, run.net.tasks[i.task].id, i.state) for i in again.work_items()))
        want = (snap.tokens, snap.marked, snap.status, snap.data, snap.items)
        assert got == want, f"replay differs after\n{_trace(run, k + 1)}"
    live, again = run.case, replay(log, run.net)
    assert _full_state(again) == _full_state(live)


class _Forgetful(dict):  # type: ignore[type-arg]
    """A settle-pass memo that keeps nothing: every pass is worked out."""

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


def _drive(net: Net, run: Run, values: dict[str, Any]) -> list[Any]:
    """The run's commands again, on a new case of `net`: its events."""
    case, events = Case.create(net, "case-1", values, at=0.0)
    for step in run.steps[1:]:
        method, *args = step.call
        events += getattr(case, method)(*args)
    return events


@given(st.data())
def test_memoised_settle_passes_change_nothing(data: st.DataObject) -> None:
    """4b. A net remembers settle passes (`Net.pass_memo`) and replays them: the run,
    whose passes were memoised as it went, makes the same events on a net that
    remembers nothing, and again on its own net with the memo full of its passes."""
    spec, meta = data.draw(specs(), label="spec")
    net = _compile(spec)
    values = data.draw(case_data(meta), label="case data")
    run = data.draw(runs(net, meta, copy.deepcopy(values)), label="run")
    cold = _compile(spec)
    cold.pass_memo = _Forgetful()
    want = run.events
    assert _drive(cold, run, copy.deepcopy(values)) == want, _trace(run)
    assert not cold.pass_memo
    assert _drive(net, run, copy.deepcopy(values)) == want, _trace(run)


def _slots(obj: Any) -> list[str]:
    return sorted({s for k in type(obj).__mro__ for s in getattr(k, "__slots__", ())
                   if not s.startswith("_")})


def _full_state(case: Case) -> dict[str, Any]:
    """Every public slot of a case, its work items' included (whatever the engine keeps)."""
    state = {s: getattr(case, s) for s in _slots(case) if s not in ("net", "items")}
    state["items"] = {i.id: {s: getattr(i, s) for s in _slots(i)} for i in case.work_items()}
    return state


# ------------------------------------------------------------------ property 5
class NetModel:
    """The spec's net read straight from the spec dict (independent of the compiler):
    every task's input and output conditions by name (a task->task flow goes through its
    implicit condition "A->B"), join, possible split outcomes (guards free, as the runtime
    evaluates them: XOR one flow; OR the guarded flows that hold, else the default) and
    cancellation region."""

    def __init__(self, spec: dict[str, Any]) -> None:
        tasks = {t["id"]: t for t in spec["tasks"]}
        self.tasks = list(tasks)
        self.join = {t: tasks[t].get("join", "xor") for t in tasks}
        self.pre: dict[str, list[str]] = {t: [] for t in tasks}
        outs: dict[str, list[tuple[str, bool, bool]]] = {t: [] for t in tasks}
        self.succ: dict[str, set[str]] = {}
        for f in spec["flows"]:
            a, b = f["from"], f["to"]
            c = f"{a}->{b}" if a in tasks and b in tasks else (a if b in tasks else b)
            if a in tasks:
                guarded = f.get("when") is not None
                outs[a].append((c, guarded, not guarded or f.get("default", False)))
                self.succ.setdefault(a, set()).add(c)
            if b in tasks:
                self.pre[b].append(c)
                self.succ.setdefault(c, set()).add(b)
        self.outcomes: dict[str, list[frozenset[str]]] = {}
        for t, flows in outs.items():
            split = tasks[t].get("split", "and")
            if split == "and":
                self.outcomes[t] = [frozenset(c for c, _, _ in flows)]
            elif split == "xor":
                self.outcomes[t] = [frozenset({c}) for c, _, _ in flows]
            else:
                guarded = [c for c, g, _ in flows if g]
                default = [c for c, _, d in flows if d]
                subsets = [frozenset(x) for k in range(1, len(guarded) + 1)
                           for x in itertools.combinations(guarded, k)]
                self.outcomes[t] = [*subsets, frozenset(default)]
        self.cancels = {t: frozenset(tasks[t].get("cancels", ())) for t in tasks}

    def structural(self, join: str, marked: set[str], running: list[str]) -> set[str]:
        """Empty inputs of `join` on a flow path from a token or a running task that does
        not pass through `join` (the plain structural test: ignores what joins wait for)."""
        todo = deque(n for n in [*marked, *running] if n != join)
        seen = set(todo)
        while todo:
            for m in self.succ.get(todo.popleft(), ()):
                if m not in seen and m != join:
                    seen.add(m)
                    todo.append(m)
        return {c for c in self.pre[join] if c not in marked and c in seen}

    def reachable(self, join: str, marked: set[str], running: list[str],
                  limit: int = 20_000) -> set[str] | None:
        """Exactly: the empty inputs of `join` that some continuation marks while `join`
        does not fire (every other task fires atomically by its own join rule -- other
        OR-joins optimistically, on any token --, running tasks finish, any split outcome,
        cancellation regions applied). As in YAWL, only continuations that keep the tokens
        the join already holds count: a task whose cancellation region takes one of them
        (or the join) is not followed. None when the search exceeds `limit` states."""
        empty = frozenset(self.pre[join]) - marked
        held = frozenset(self.pre[join]) & marked
        start = (frozenset(marked), frozenset(running))
        seen, todo = {start}, deque([start])
        while todo:
            m, r = todo.popleft()
            moves: list[tuple[str, frozenset[str], frozenset[str]]] = [
                (t, m, r - {t}) for t in r]
            for t in self.tasks:
                if t == join:
                    continue
                pre = self.pre[t]
                have = [c for c in pre if c in m]
                if not have or (self.join[t] == "and" and len(have) < len(pre)):
                    continue
                takes = [[c] for c in have] if self.join[t] == "xor" else [have]
                moves.extend((t, m - frozenset(take), r) for take in takes)
            for t, m1, r1 in moves:
                cut = self.cancels[t]
                if cut & held or join in cut:
                    continue
                for out in self.outcomes[t]:
                    m2 = (m1 - cut) | out
                    if m2 & empty:
                        return set(m2 & empty)
                    nxt = (m2, r1 - cut)
                    if nxt not in seen:
                        if len(seen) >= limit:
                            return None
                        seen.add(nxt)
                        todo.append(nxt)
        return set()


_WITH_OR = specs(require=("or",)) | specs(require=("or", "loop"))


@SETTINGS
@given(st.data())
def test_or_join_never_fires_while_a_token_can_still_arrive(data: st.DataObject) -> None:
    """5. When an OR-join is enabled (offered, or fired if empty) or takes its tokens, no
    continuation can still put a token on one of its empty inputs.

    Checked by brute force on the spec's own graph: first the plain structural test (a
    path from a token or running task avoiding the join); when that finds a path (it can
    lead back round a loop through a join that waits for this one, which the engine
    rightly does not count), an exhaustive search of the behaviour from the current state
    decides."""
    spec, meta, run = _play(data, _WITH_OR)
    model = NetModel(spec)
    or_joins = set(meta.or_joins)
    sh = Shadow(run.net)
    checked = searched = 0
    for k, step in enumerate(run.steps):
        for e in step.events:
            task = None
            if (isinstance(e, WorkItemEnabled) and e.parent < 0) or isinstance(e, TaskFired):
                task = e.task
            elif isinstance(e, WorkItemStarted | WorkItemCompleted) and e.consumed:
                task = sh.item_task[e.item]
            if task in or_joins:
                checked += 1
                marked = set(sh.case.tokens_by_condition())
                running = sh.started()
                if model.structural(task, marked, running):
                    searched += 1
                    late = model.reachable(task, marked, running)
                    if late is None:
                        event("OR-join search inconclusive (state limit)")
                    assert not late, (
                        f"OR-join {task} enabled/fired ({type(e).__name__}) while "
                        f"{sorted(late or ())} can still receive a token; tokens on "
                        f"{sorted(marked)}, running {running}; after\n{_trace(run, k + 1)}")
            sh.apply(e)
    event(f"OR-join enablings/firings checked: {min(checked, 5)}{'+' if checked >= 5 else ''}")
    if searched:
        event("OR-join decided by the exhaustive search (structural path exists)")


# ------------------------------------------------------------------ property 6
def _check_choices(run: Run, meta: SpecMeta, losers_reason: str | None) -> None:
    """Follow every deferred choice through a run.

    A choice is taken when one of its tasks' items takes the shared token (start, or
    completion straight from offered). Then, in the same step, every other offered item
    of the choice must be closed without taking anything (with `losers_reason` as its
    reason, if given); no other branch may be running; only chosen items complete, and
    every chosen item completes (or is ended by a cancellation region)."""
    net = run.net
    item_task: dict[int, str] = {}
    blocks = [(net.cond_index[dc.condition], set(dc.tasks)) for dc in meta.choices]
    chosen: list[set[int]] = [set() for _ in blocks]  # chosen, not yet closed
    choices, completed, region_cancelled = [0] * len(blocks), [0] * len(blocks), [0] * len(blocks)
    before = run.steps[0].after
    for k, step in enumerate(run.steps):
        where = f"after\n{_trace(run, k + 1)}\nevents {step.events}"
        for e in step.events:
            if isinstance(e, WorkItemEnabled):
                item_task[e.item] = e.task
        for b, (c_in, tasks) in enumerate(blocks):
            offered = {i for i, t, s in before.items if t in tasks and s == ENABLED}
            picked = None
            closed: dict[int, Any] = {}
            for e in step.events:
                if not isinstance(e, WorkItemStarted | WorkItemCompleted | WorkItemCancelled):
                    continue
                if item_task.get(e.item) not in tasks:
                    continue
                if isinstance(e, WorkItemStarted | WorkItemCompleted) and c_in in e.consumed:
                    assert picked is None, f"two choices in one step {where}"
                    assert not chosen[b], f"a second branch of the choice runs {where}"
                    assert e.item in offered, where
                    picked = e.item
                    choices[b] += 1
                    chosen[b].add(e.item)
                if isinstance(e, WorkItemCompleted):
                    assert e.item in chosen[b], f"item {e.item} completes unchosen {where}"
                    chosen[b].discard(e.item)
                    completed[b] += 1
                if isinstance(e, WorkItemCancelled):
                    if e.item in chosen[b]:
                        assert e.reason.startswith("cancelled by"), where
                        chosen[b].discard(e.item)
                        region_cancelled[b] += 1
                    else:
                        closed[e.item] = e
            if picked is not None:
                assert offered == {i for i, t, s in before.items if t in tasks}, where
                assert len(offered) == len(tasks), f"not every branch was offered {where}"
                losers = offered - {picked}
                assert set(closed) == losers, \
                    f"closed {set(closed)}, offered {offered}, chose {picked} {where}"
                for e in closed.values():
                    assert not e.consumed, f"a withdrawn item took a token: {e} {where}"
                    if losers_reason is not None:
                        assert e.reason == losers_reason, \
                            f"loser {e.item} closed as {e.reason!r}, not {losers_reason!r} {where}"
            open_ = [(i, s) for i, t, s in step.after.items if t in tasks]
            if any(s != ENABLED for _, s in open_):
                assert len(open_) == 1, f"choice {sorted(tasks)}: {open_} open {where}"
        before = step.after
    event(f"deferred choices taken: {min(sum(choices), 3)}{'+' if sum(choices) >= 3 else ''}")
    if run.steps[-1].after.status == "completed":
        for b in range(len(blocks)):
            assert not chosen[b], f"chosen items {chosen[b]} never closed"
            assert completed[b] + region_cancelled[b] == choices[b]


# The minimal counter-example of finding 6b comes first (drawn often), then any spec with
# a deferred choice.
_CHOICE_BEFORE_END = ("xor", "human", "empty", (("dc", (None, None)), ("task",)))
_WITH_CHOICE = st.just(build_spec(_CHOICE_BEFORE_END)) | specs(require=("dc",))


@SETTINGS
@given(st.data())
def test_deferred_choice_runs_exactly_one_branch(data: st.DataObject) -> None:
    """6a. Per deferred choice taken, exactly one of its tasks runs and completes; the other
    offered tasks are closed in the same step without taking the token."""
    _, meta, run = _play(data, _WITH_CHOICE)
    _check_choices(run, meta, None)


@SETTINGS
@given(st.data())
def test_deferred_choice_losers_are_withdrawn(data: st.DataObject) -> None:
    """6b. ... and the log says so: the losers' items are cancelled as "withdrawn"."""
    _, meta, run = _play(data, _WITH_CHOICE)
    _check_choices(run, meta, "withdrawn")


# ------------------------------------------------------------------ property 7
MUTATIONS = {
    # block kind -> mutations that make it unsound
    "and": ("join:xor", "drop"),
    "xor": ("join:and", "drop"),
    "or": ("join:xor", "join:and", "drop"),
}


def _mutable(meta: SpecMeta) -> list[Any]:
    return [b for b in meta.blocks if b.kind in MUTATIONS and not b.in_region]


@settings(max_examples=150 * SCALE, deadline=None,
          suppress_health_check=[HealthCheck.filter_too_much])
@given(st.data())
def test_soundness_check_rejects_mutated_specs(data: st.DataObject) -> None:
    """7. Breaking one join of a sound spec gets it rejected: a join that no longer matches
    its split (AND->XOR leaves a token behind, XOR->AND deadlocks, OR->XOR/AND both) with a
    firing sequence; a branch that no longer flows into its join with a located problem."""
    spec, meta = data.draw(specs(kinds=tuple(k for k in BLOCK_KINDS if k != "task"))
                           .filter(lambda sm: bool(_mutable(sm[1]))), label="spec")
    block = data.draw(st.sampled_from(_mutable(meta)), label="block")
    options = [m for m in MUTATIONS[block.kind]
               if not (block.kind == "or" and m == "join:xor" and not block.several)]
    mutation = data.draw(st.sampled_from(options), label="mutation")
    bad = copy.deepcopy(spec)
    if mutation == "drop":
        src, dst = data.draw(st.sampled_from(block.in_flows), label="flow")
        flows = bad["flows"]
        assert any(f["from"] == src and f["to"] == dst for f in flows)
        bad["flows"] = [f for f in flows if not (f["from"] == src and f["to"] == dst)]
    else:
        join = next(t for t in bad["tasks"] if t["id"] == block.join)
        join["join"] = mutation.split(":")[1]
    try:
        net = compile_document(bad)
    except SpecError as exc:
        problems = exc.problems
    else:
        # The documented escape: a state space beyond the bound is accepted with a warning
        # (only problems actually met are reported). Never silently, though.
        assert any("soundness not decided" in w for w in net.warnings), \
            f"{mutation} of {block.kind} block at {block.join} accepted as sound"
        event("mutant accepted: soundness not decided within the state bound")
        return
    assert problems
    if mutation == "drop":
        assert any(p.path.startswith(("/tasks/", "/flows/")) for p in problems), problems
    else:
        assert any(p.path == "/" and " after " in p.problem for p in problems), problems
    for p in problems:
        assert p.path.startswith("/") and p.problem, p


# ------------------------------------------------------------------ the strategies
@settings(max_examples=50, deadline=None)
@given(specs(), st.data())
def test_strategies_are_well_formed(spec_meta: tuple[dict, SpecMeta], data: st.DataObject) -> None:
    """The generator's own invariants: unique ids, bounded size, data for every guard."""
    spec, meta = spec_meta
    ids = [t["id"] for t in spec["tasks"]] + [c["id"] for c in spec["conditions"]]
    assert len(ids) == len(set(ids))
    assert len(spec["tasks"]) <= 25 + 8  # routing tasks between two conditions aside
    values = data.draw(case_data(meta))
    assert set(values) == set(meta.fields)
    assert meta.loop_tasks <= {t["id"] for t in spec["tasks"]}
