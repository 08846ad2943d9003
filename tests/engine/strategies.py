"""Hypothesis strategies for the engine's property tests.

* `trees()` draws the *shape* of a block-structured workflow (a small tree of blocks);
  `build_spec(tree)` turns a shape into a spec dict plus a `SpecMeta` describing what
  the tests need to know about it (guard fields, loops, deferred choices, joins, ...).
  `shapes()` filters the shapes (state space small enough for the soundness check to
  decide; optionally `require` some block kinds); `specs()` also builds them.
  Block-structured nets built this way are sound by construction: every split is
  closed by the matching join, every loop has an exit, every cancellation region is
  wiped and refilled by the task that cancels it.
* `case_data(meta)` draws case data driving the XOR/OR guards.
* `runs(net, meta, data)` draws a random admissible run: repeatedly one of the open
  work items is picked, sometimes started first, then completed with a random
  result (`'again'` sends a loop back; each loop goes back at most `LOOP_BOUND`
  times) and sometimes an output that changes a guard field, until the case is no
  longer active or `STEP_BOUND` steps were taken. Every step's events and a snapshot
  of the case after it are recorded.

Blocks (a block has one entry node and one exit node, each a task or a condition):

  task     one human task
  seq      2-3 blocks in sequence
  and      AND-split task, 2-3 parallel blocks, AND-join task
  xor      XOR-split task (guards `xN == i`, branch 0 the default), XOR-join task
  or       OR-split task (guards `oN_i == 1`, branch 0 the default, sometimes guarded
           too), 2-3 blocks, OR-join task
  loop     body block, then a human task with an XOR split: `result == 'again'` goes
           back to the body's entry, the default leaves
  dc       deferred choice: a condition feeding 2-3 human tasks (each optionally
           followed by a block), all continuing to one shared condition
  cancel   AND-split task to a human task `a` and a block B; `a` cancels B's tasks
           and conditions (including B's exit condition) and then puts a token on
           both inputs of the AND-join, so the join always fires exactly once

Two conditions in a row get an empty routing task between them (a flow cannot
join two conditions).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import hypothesis.strategies as st

from engine import ENABLED, Case, Net

MAX_DEPTH = 3  # composite blocks nest at most this deep
MAX_TASKS = 25  # tasks drawn by a tree (routing tasks inserted between conditions aside)
LOOP_BOUND = 2  # a loop task answers 'again' at most this many times in a run
STEP_BOUND = 300  # commands per run
# Shapes whose estimated state space is larger are not drawn: the soundness check
# explores at most 20 000 states (DEFAULT_STATE_BOUND) and would only warn.
STATE_ESTIMATE_BOUND = 12_000

BLOCK_KINDS = ("task", "seq", "and", "xor", "or", "loop", "dc", "cancel")
_OVERHEAD = {"seq": 0, "and": 2, "xor": 2, "or": 2, "loop": 1, "dc": 0, "cancel": 3}
_MIN_SIZE = {"task": 1, "seq": 2, "and": 4, "xor": 4, "or": 4, "loop": 2, "dc": 2,
             "cancel": 4}
TASK: tuple[Any, ...] = ("task",)
_KIND = st.sampled_from(("human", "empty"))  # split/join tasks: a person or pure routing


# ----------------------------------------------------------------------- shapes
def tree_size(tree: tuple[Any, ...]) -> int:
    """Tasks a shape will have (not counting routing tasks between two conditions)."""
    kind = tree[0]
    if kind == "task":
        return 1
    if kind == "loop":
        return 1 + tree_size(tree[1])
    if kind == "dc":
        return sum(1 + (tree_size(s) if s is not None else 0) for s in tree[1])
    if kind == "cancel":
        return 3 + tree_size(tree[3])
    return _OVERHEAD[kind] + sum(tree_size(c) for c in tree[-1])


def state_estimate(tree: tuple[Any, ...]) -> int:
    """Roughly the markings a shape can reach (an upper bound up to a few routing states)."""
    kind, est = tree[0], state_estimate
    if kind == "task":
        return 1
    if kind == "seq":
        return sum(est(c) for c in tree[1])
    if kind == "loop":
        return est(tree[1]) + 1
    if kind == "dc":
        return 1 + sum(est(s) for s in tree[1] if s is not None)
    if kind == "cancel":
        return 1 + 2 * (est(tree[3]) + 1)
    if kind == "xor":
        return 1 + sum(est(c) + 1 for c in tree[-1])
    # and: each branch somewhere inside or done; or: also possibly not taken
    return 1 + math.prod(est(c) + (1 if kind == "and" else 2) for c in tree[-1])


@st.composite
def trees(draw: Any, depth: int = MAX_DEPTH, budget: int = MAX_TASKS,
          kinds: tuple[str, ...] = BLOCK_KINDS) -> tuple[Any, ...]:
    """The shape of a block: nested tuples, ("task",) the leaf; at most `budget` tasks."""
    if depth <= 0 or budget < 2:
        return TASK
    kind = draw(st.sampled_from([k for k in kinds if _MIN_SIZE[k] <= budget]))
    if kind == "task":
        return TASK
    sub = depth - 1
    if kind == "loop":
        return ("loop", draw(trees(sub, budget - 1, kinds)))
    if kind == "cancel":
        return ("cancel", draw(_KIND), draw(_KIND), draw(trees(sub, budget - 3, kinds)))
    per_child = 2 if kind == "dc" else 1  # a deferred-choice branch needs its task
    room = budget - _OVERHEAD[kind]
    n = draw(st.integers(2, max(2, min(3, room // per_child))))
    children: list[Any] = []
    for i in range(n):
        reserve = n - 1 - i
        if kind == "dc":
            left = room - reserve - 1  # this branch's own task
            sub_tree = draw(st.none() | trees(sub, left, kinds)) if left >= 1 else None
            children.append(sub_tree)
            room -= 1 + (tree_size(sub_tree) if sub_tree is not None else 0)
        else:
            child = draw(trees(sub, room - reserve, kinds))
            children.append(child)
            room -= tree_size(child)
    if kind == "seq":
        return ("seq", tuple(children))
    if kind == "dc":
        return ("dc", tuple(children))
    if kind == "or":
        return ("or", draw(_KIND), draw(_KIND), draw(st.booleans()), tuple(children))
    return (kind, draw(_KIND), draw(_KIND), tuple(children))


# ------------------------------------------------------------------------ specs
@dataclass
class JoinBlock:
    """An AND/XOR/OR block (or a cancellation block, kind "cancel")."""

    kind: str
    split: str
    join: str
    in_flows: list[tuple[str, str]]  # (branch exit, join): one flow per branch
    in_region: bool  # inside a cancellation region (then mutations may stay sound)
    several: bool = False  # the split can start more than one branch (AND; OR with 2+ guards)


@dataclass
class DeferredChoice:
    condition: str
    tasks: tuple[str, ...]


@dataclass
class SpecMeta:
    fields: dict[str, tuple[int, ...]] = field(default_factory=dict)  # guard field -> values
    loop_tasks: set[str] = field(default_factory=set)
    choices: list[DeferredChoice] = field(default_factory=list)
    blocks: list[JoinBlock] = field(default_factory=list)
    or_joins: list[str] = field(default_factory=list)
    width: int = 1  # most threads (tokens + running items) the structure allows at once
    tree: tuple[Any, ...] = TASK


class _Builder:
    def __init__(self) -> None:
        self.tasks: list[dict[str, Any]] = []
        self.conditions: list[str] = []
        self.cond_set = {"start", "end"}
        self.flows: list[dict[str, Any]] = []
        self.meta = SpecMeta()
        self.n = 0
        self.regions: list[tuple[dict[str, Any], int, int, int, int, str]] = []

    def _id(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def task(self, prefix: str, kind: str = "human", **kw: Any) -> str:
        tid = self._id(prefix)
        spec: dict[str, Any] = {"id": tid, "kind": kind}
        spec.update({k: v for k, v in kw.items() if v is not None})
        self.tasks.append(spec)
        return tid

    def cond(self, prefix: str) -> str:
        cid = self._id(prefix)
        self.conditions.append(cid)
        self.cond_set.add(cid)
        return cid

    def flow(self, src: str, dst: str, when: str | None = None, default: bool = False) -> None:
        f: dict[str, Any] = {"from": src, "to": dst}
        if when is not None:
            f["when"] = when
        if default:
            f["default"] = True
        self.flows.append(f)

    def connect(self, src: str, dst: str, when: str | None = None,
                default: bool = False) -> str:
        """Flow src -> dst; between two conditions put an empty routing task.

        Returns the node that flows into dst (src, or the routing task)."""
        if src in self.cond_set and dst in self.cond_set:
            r = self.task("Route", "empty")
            self.flow(src, r)
            self.flow(r, dst, when, default)
            return r
        self.flow(src, dst, when, default)
        return src

    # A block returns (entry, exit, width).
    def block(self, tree: tuple[Any, ...], region: bool) -> tuple[str, str, int]:
        kind = tree[0]
        if kind == "task":
            t = self.task("T")
            return t, t, 1
        if kind == "seq":
            parts = [self.block(c, region) for c in tree[1]]
            for (_, a_exit, _), (b_entry, _, _) in itertools.pairwise(parts):
                self.connect(a_exit, b_entry)
            return parts[0][0], parts[-1][1], max(w for _, _, w in parts)
        if kind == "loop":
            entry, exit_, w = self.block(tree[1], region)
            loop = self.task("Loop", "human", split="xor")
            self.connect(exit_, loop)
            self.flow(loop, entry, when="result == 'again'")
            self.meta.loop_tasks.add(loop)
            return entry, loop, w
        if kind == "dc":
            c_in, c_out = self.cond("Cin"), self.cond("Cout")
            choice = []
            width = 1
            for sub in tree[1]:
                t = self.task("Dc")
                choice.append(t)
                self.flow(c_in, t)
                exit_ = t
                if sub is not None:
                    entry, exit_, w = self.block(sub, region)
                    width = max(width, w)
                    self.connect(t, entry)
                self.connect(exit_, c_out)
            self.meta.choices.append(DeferredChoice(c_in, tuple(choice)))
            return c_in, c_out, width
        if kind == "cancel":
            _, sk, jk, body = tree
            s = self.task("CanS", sk)
            a = self.task("CanA")
            j = self.task("CanJ", jk, join="and")
            t0, c0 = len(self.tasks), len(self.conditions)
            entry, exit_, w = self.block(body, True)
            t1, c1 = len(self.tasks), len(self.conditions)
            self.connect(s, a)
            self.connect(s, entry)
            self.flow(a, j)
            if exit_ in self.cond_set:
                c_b = exit_
            else:
                c_b = self.cond("Cb")
                self.flow(exit_, c_b)
            self.flow(a, c_b)
            self.flow(c_b, j)
            a_spec = next(t for t in self.tasks if t["id"] == a)
            self.regions.append((a_spec, t0, t1, c0, c1, c_b))
            self.meta.blocks.append(JoinBlock("cancel", s, j, [(a, j), (c_b, j)], region))
            return s, j, 1 + w
        _, sk, jk = tree[:3]
        children = tree[-1]
        n = self._id("")  # a number for this block's guard fields
        split = self.task(kind.capitalize() + "S", sk, split=None if kind == "and" else kind)
        join = self.task(kind.capitalize() + "J", jk, join=kind)
        in_flows = []
        widths = []
        for i, child in enumerate(children):
            entry, exit_, w = self.block(child, region)
            widths.append(w)
            if kind == "and" or (i == 0 and not (kind == "or" and tree[3])):
                self.connect(split, entry)
            elif kind == "xor":
                self.connect(split, entry, when=f"x{n} == {i}")
            else:
                f = f"o{n}_{i}"
                self.meta.fields[f] = (0, 1)
                self.connect(split, entry, when=f"{f} == 1", default=i == 0)
            in_flows.append((self.connect(exit_, join), join))
        if kind == "xor":
            self.meta.fields[f"x{n}"] = (0, 1, 2, 3)
        if kind == "or":
            self.meta.or_joins.append(join)
        # An OR split takes every flow whose guard holds, its default only when none does:
        # with one guarded flow (and an unguarded default) it never runs two branches.
        several = kind == "and" or (kind == "or" and len(children) - (not tree[3]) >= 2)
        self.meta.blocks.append(JoinBlock(kind, split, join, in_flows, region, several))
        width = max(widths) if kind == "xor" else sum(widths)
        return split, join, width

    def finish(self, tree: tuple[Any, ...]) -> tuple[dict[str, Any], SpecMeta]:
        entry, exit_, width = self.block(tree, False)
        self.connect("start", entry)
        self.connect(exit_, "end")
        task_ids = {t["id"] for t in self.tasks}
        for a_spec, t0, t1, c0, c1, c_b in self.regions:
            region_tasks = [t["id"] for t in self.tasks[t0:t1]]
            inside = set(region_tasks)
            region_conds = list(self.conditions[c0:c1])
            for f in self.flows:  # implicit conditions in front of the region's tasks
                if f["to"] in inside and f["from"] in task_ids:
                    region_conds.append(f"{f['from']}->{f['to']}")
            if c_b not in region_conds:
                region_conds.append(c_b)
            a_spec["cancels"] = region_tasks + region_conds
        self.meta.width = width
        self.meta.tree = tree
        spec = {
            "id": "generated",
            "name": "generated block-structured workflow",
            "version": 1,
            "conditions": [{"id": c} for c in self.conditions],
            "tasks": self.tasks,
            "flows": self.flows,
        }
        return spec, self.meta


def build_spec(tree: tuple[Any, ...]) -> tuple[dict[str, Any], SpecMeta]:
    """A spec dict (the file format) for a block shape, and what the tests need to know."""
    return _Builder().finish(tree)


def contains(tree: tuple[Any, ...], kind: str) -> bool:
    """Whether a shape has a block of this kind somewhere."""
    if tree is None or tree[0] == "task":
        return kind == "task" and tree is not None
    if tree[0] == kind:
        return True
    if tree[0] == "loop":
        return contains(tree[1], kind)
    if tree[0] == "cancel":
        return contains(tree[3], kind)
    return any(contains(c, kind) for c in tree[-1])


def nested_or_in_loop(tree: tuple[Any, ...] | None, in_loop: bool = False,
                      in_or: bool = False) -> bool:
    """An OR block inside an OR block inside a loop: the known limit of the engine's
    OR-join test (each join can see the other's loop-back as a token still to come and
    both wait: a vicious circle). Excluded from generation; pinned as an expected
    failure in test_properties.py."""
    if tree is None or tree[0] == "task":
        return False
    kind = tree[0]
    if kind == "or" and in_loop and in_or:
        return True
    if kind == "loop":
        return nested_or_in_loop(tree[1], True, in_or)
    if kind == "cancel":
        return nested_or_in_loop(tree[3], in_loop, in_or)
    return any(nested_or_in_loop(c, in_loop, in_or or kind == "or") for c in tree[-1])


def shapes(kinds: tuple[str, ...] = BLOCK_KINDS, depth: int = MAX_DEPTH,
           budget: int = MAX_TASKS, require: tuple[str, ...] = (),
           ) -> st.SearchStrategy[tuple[Any, ...]]:
    """Block shapes small enough for the soundness check to explore completely.

    With `require`, only shapes having a block of each of those kinds (drawn more often)."""
    kinds = (*kinds, *[k for k in require for _ in range(4)])
    return trees(depth, budget, kinds).filter(
        lambda t: state_estimate(t) <= STATE_ESTIMATE_BOUND
        and not nested_or_in_loop(t)
        and all(contains(t, k) for k in require))


def specs(kinds: tuple[str, ...] = BLOCK_KINDS, depth: int = MAX_DEPTH,
          budget: int = MAX_TASKS, require: tuple[str, ...] = (),
          ) -> st.SearchStrategy[tuple[dict[str, Any], SpecMeta]]:
    """(spec dict, SpecMeta) of a random block-structured (sound) workflow."""
    return shapes(kinds, depth, budget, require).map(build_spec)


def case_data(meta: SpecMeta) -> st.SearchStrategy[dict[str, Any]]:
    """Case data giving every guard field a value (so every guard can be decided)."""
    return st.fixed_dictionaries({f: st.sampled_from(v) for f, v in sorted(meta.fields.items())})


# ------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class Snapshot:
    tokens: tuple[int, ...]
    marked: int
    status: str
    data: dict[str, Any]
    items: frozenset[tuple[int, str, str]]  # (item id, task id, state)

    @classmethod
    def of(cls, case: Case) -> Snapshot:
        tasks = case.net.tasks
        return cls(tuple(case.tokens), case.marked, case.status, dict(case.data),
                   frozenset((i.id, tasks[i.task].id, i.state) for i in case.work_items()))


@dataclass
class Step:
    command: str  # "create", "start <item> (<task>)", "complete <item> (<task>) ..."
    events: list[Any]
    after: Snapshot
    # The Case method called and its arguments after the item: to drive it again.
    call: tuple[Any, ...] = ()


@dataclass
class Run:
    net: Net
    case: Case
    steps: list[Step]

    @property
    def events(self) -> list[Any]:
        return [e for s in self.steps for e in s.events]


@st.composite
def runs(draw: Any, net: Net, meta: SpecMeta, data: dict[str, Any],
         max_steps: int = STEP_BOUND) -> Run:
    """Play a random admissible run of a case of `net` (drawing every choice)."""
    case, events = Case.create(net, "case-1", data, at=0.0)
    steps = [Step("create", events, Snapshot.of(case))]
    agains: Counter[str] = Counter()
    outputs = [(f, v) for f in sorted(meta.fields) for v in meta.fields[f]]
    at = 0.0
    while case.status == "active" and len(steps) <= max_steps:
        items = sorted(case.work_items(), key=lambda i: i.id)
        if not items:
            break  # a silent deadlock: the tests say so
        item = draw(st.sampled_from(items))
        # One draw for the rest of the step (fewer choices, so longer runs fit hypothesis'
        # budget): bit 0 start first, bit 1 result 'again', bits 2-3 == 3: set a guard field.
        how = draw(st.integers(0, 15))
        task = net.tasks[item.task].id
        at += 1.0
        if item.state == ENABLED and how & 1:
            events = case.start(item.id, at, by="tester")
            steps.append(Step(f"start {item.id} ({task})", events, Snapshot.of(case),
                              ("start", item.id, at, "tester")))
            continue
        result = "again" if how & 2 else "ok"
        if task in meta.loop_tasks:
            if agains[task] >= LOOP_BOUND:
                result = "ok"
            elif result == "again":
                agains[task] += 1
        output = None
        if outputs and how >> 2 == 3:
            f, v = draw(st.sampled_from(outputs))
            output = {f: v}
        events = case.complete(item.id, at, result=result, output=output, by="tester")
        steps.append(Step(f"complete {item.id} ({task}) result={result} output={output}",
                          events, Snapshot.of(case),
                          ("complete", item.id, at, result, output, "tester")))
    return Run(net, case, steps)
