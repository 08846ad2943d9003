"""Soundness by bounded state-space exploration.

A workflow net is sound when (1) from every reachable state the case can still
complete, (2) when it completes nothing is left behind, and (3) every task can fire
in some run (no dead tasks). We explore the reachable markings breadth first,
treating each task as one atomic firing and every guard as free to go either way (a
spec must be sound whatever the data says), with the runtime's own enabling rule
(`engine.net.is_enabled`), cancellation regions and partial-join memory. Trigger
conditions are the environment: always able to deliver a token.

Breadth first means the firing sequence reported for a problem is a shortest one.
If the state space is larger than the bound the net is accepted with a warning, and
only problems actually seen (a real deadlock, a real leftover token) are reported.

The bound is on states and on work: a state costs a look at every task and a copy
of the marking per firing, so a wide net's 20,000 states are far more work than a
narrow one's (100 parallel tasks: 400 million steps, 31 s of a server that checks at
registration). Past WORK_BOUND steps the exploration stops likewise: accepted, with a
warning that names the work bound.
The largest spec the property tests generate takes about 1.4 million.
"""

from __future__ import annotations

from collections import deque
from itertools import combinations

from .errors import Problem
from .net import (
    AND,
    CANCEL_REMAINING,
    EMPTY,
    IMPLICIT,
    PARTIAL,
    XOR,
    Net,
    Task,
    consumption,
    is_enabled,
)

__all__ = ["WORK_BOUND", "Verdict", "check"]

_MAX_TOKENS = 64  # more tokens than this on one condition: treat the net as unbounded
# Steps of exploration (a task looked at, a condition copied) before giving up: one or
# two seconds of CPU, seven times what the largest generated spec of the tests takes.
WORK_BOUND = 10_000_000

State = tuple[tuple[int, ...], tuple[tuple[int, int], ...]]


class Verdict:
    __slots__ = ("complete", "problems", "states", "warnings")

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.warnings: list[str] = []
        self.states = 0
        self.complete = True


def _outcomes(t: Task) -> list[tuple[int, ...]]:
    # A timer that cancels on timeout withdraws the thread: the task may end producing
    # nothing, and the net must still be able to complete.
    dies = [()] if t.timer is not None and t.timer.on_timeout == "cancel" else []
    return _split_outcomes(t) + dies


def _split_outcomes(t: Task) -> list[tuple[int, ...]]:
    if t.split == AND or (not t.routes and t.default < 0):
        return [t.postset]
    options = [c for c, _ in t.routes]
    if t.split == XOR:
        singles = [(c,) for c in options]
        return [*singles, (t.default,)] if t.default >= 0 else singles
    subsets = [s for k in range(1, len(options) + 1) for s in combinations(options, k)]
    return [*subsets, (t.default,)] if t.default >= 0 else subsets


def check(net: Net, state_bound: int = 20_000, work_bound: int = WORK_BOUND) -> Verdict:
    v = Verdict()
    tasks = net.tasks
    ncond = len(net.cond_ids)
    trig = net.transient_mask | net.persistent_mask
    outcomes = [_outcomes(t) for t in tasks]
    partials = [t for t in tasks if t.join == PARTIAL]
    end, mode = net.end, net.completion

    init_tokens = [0] * ncond
    init_tokens[net.start] = 1
    init: State = (tuple(init_tokens), ())

    def marked_of(tokens: tuple[int, ...]) -> int:
        m = 0
        for c, n in enumerate(tokens):
            if n:
                m |= 1 << c
        return m

    def is_final(tokens: tuple[int, ...]) -> bool:
        if not tokens[end]:
            return False
        if mode == CANCEL_REMAINING:
            return True
        return mode == IMPLICIT or (tokens[end] == 1 and sum(tokens) == 1)

    def successors(state: State) -> list[tuple[State, int]]:
        tokens, seen_t = state
        seen = dict(seen_t)
        marked = marked_of(tokens) | trig
        out = []
        enabled = [t for t in tasks if is_enabled(t, marked, 0, seen.get(t.idx, 0))]
        # The runtime fires enabled empty (routing) tasks at once, before any person or
        # action can act; so does the exploration.
        eager = [t for t in enabled if t.kind == EMPTY]
        for t in eager or enabled:
            consumed = consumption(t, marked)
            for produced in outcomes[t.idx]:
                nt = list(tokens)
                for c in consumed:
                    if not trig >> c & 1:
                        nt[c] -= 1
                for u in t.cancel_tasks:  # as the runtime does: offered items go with their tokens
                    ut = tasks[u]
                    um = marked_of(tuple(nt)) | trig
                    if u != t.idx and is_enabled(ut, um, 0, ns_seen(seen, u)):
                        for c in consumption(ut, um):
                            if not trig >> c & 1:
                                nt[c] -= 1
                for c in t.cancel_conds:
                    nt[c] = 0
                for c in produced:
                    nt[c] += 1
                ns = dict(seen)
                if t.join == PARTIAL and not (t.cancel_mask or t.cancel_tasks):
                    m = 0
                    for c in consumed:
                        m |= 1 << c
                    if m != t.preset_mask:
                        ns[t.idx] = m
                    else:
                        ns.pop(t.idx, None)
                _absorb(nt, ns)
                out.append(((tuple(nt), tuple(sorted(ns.items()))), t.idx))
        return out

    def ns_seen(seen: dict[int, int], u: int) -> int:
        return seen.get(u, 0)

    def _absorb(nt: list[int], ns: dict[int, int]) -> None:
        changed = True
        while changed:
            changed = False
            for p in partials:
                s = ns.get(p.idx)
                if not s:
                    continue
                for c in p.preset:
                    if nt[c] and not s >> c & 1:
                        nt[c] -= 1
                        s |= 1 << c
                        changed = True
                if s == p.preset_mask:
                    ns.pop(p.idx)
                else:
                    ns[p.idx] = s

    parent: dict[State, tuple[State | None, int]] = {init: (None, -1)}
    edges: dict[State, list[State]] = {}
    fired: set[int] = set()
    todo = deque([init])
    finals: list[State] = []
    bad_seen = 0
    work = 0

    def trace(s: State) -> str:
        path = []
        cur: State | None = s
        while cur is not None:
            prev, ti = parent[cur]
            if ti >= 0:
                path.append(tasks[ti].id)
            cur = prev
        return " -> ".join(reversed(path)) or "(start)"

    def describe(tokens: tuple[int, ...]) -> str:
        return ", ".join(f"{net.cond_ids[c]}" + (f"x{n}" if n > 1 else "")
                         for c, n in enumerate(tokens) if n) or "nothing"

    while todo:
        s = todo.popleft()
        tokens = s[0]
        if is_final(tokens):
            finals.append(s)
            edges[s] = []
            continue
        if tokens[end] and mode != IMPLICIT:
            if bad_seen < 3:
                v.problems.append(Problem("/", f"improper completion: after {trace(s)} the end "
                                          f"is reached with tokens left on {describe(tokens)}"))
            bad_seen += 1
            edges[s] = []
            continue
        nxt = successors(s)
        work += len(tasks) + len(nxt) * ncond
        if work > work_bound:
            v.complete = False
            v.warnings.append(f"soundness not decided: more than {work_bound} steps of work "
                              f"to explore the reachable states (the net is wide); checked "
                              f"the {len(parent)} explored")
            break
        if not nxt:
            if mode == IMPLICIT:
                finals.append(s)
            elif bad_seen < 3:
                v.problems.append(Problem("/", f"deadlock: after {trace(s)} nothing can fire; "
                                          f"tokens on {describe(tokens)}"))
                bad_seen += 1
            else:
                bad_seen += 1
            edges[s] = []
            continue
        edges[s] = []
        for ns, ti in nxt:
            fired.add(ti)
            edges[s].append(ns)
            if ns not in parent:
                if max(ns[0]) > _MAX_TOKENS or len(parent) >= state_bound:
                    v.complete = False
                    continue
                parent[ns] = (s, ti)
                todo.append(ns)
    v.states = len(parent)

    if not v.complete:
        v.warnings = v.warnings or [f"soundness not decided: more than {state_bound} "
                                    "reachable states (or an unbounded condition); checked "
                                    "what was explored"]
        return v
    # Option to complete: every state must reach a final one (backwards closure).
    back: dict[State, list[State]] = {}
    for s, succ in edges.items():
        for ns in succ:
            back.setdefault(ns, []).append(s)
    good = set(finals)
    stack = list(finals)
    while stack:
        x = stack.pop()
        for p in back.get(x, ()):
            if p not in good:
                good.add(p)
                stack.append(p)
    if not bad_seen:
        for s in parent:
            if s not in good:
                v.problems.append(Problem("/", f"no option to complete: after {trace(s)} the "
                                          f"case can never reach the end (tokens on "
                                          f"{describe(s[0])})"))
                break
    for t in tasks:
        if t.idx not in fired:
            v.problems.append(Problem(f"/tasks/{t.idx}", f"dead task: {t.id!r} can never fire"))
    return v
