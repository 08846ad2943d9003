"""The loop's heavy work -- a cycle's planning, an analysis -- in a process of its own.

Why a process. A worker thread keeps the event loop free only of waiting: under one
GIL, Python in a thread takes the interpreter from the loop as much as the loop takes
it back. Serving a half year of history (1.25M events), a cycle's 10-17 s of planning
in a thread (building item frames, routing and assignee effects: Python over 365,000
observations) halved the commands the server answered meanwhile -- 16 clients creating
and receiving leads: 90-94 commands/s at a median of 100-110 ms, against 180-215/s
at 40 ms between cycles (bench/README, "The loop's work beside the commands") -- and a
cycle comes every ~10x its length. In a process it runs on the other core.

How. The server answers in advance every question the planners would ask it -- a
person's time zone, a task's role, its SLO terms and target, the assignment that
decides it, the role an escalation goes to -- for the people and tasks of the history
at hand (`Answers.of`), and the history goes over msgpack-encoded (`pack`: one msgspec
call, in a worker thread; pickling 365,000 structs one by one would cost seconds on
the event loop). The worker (anyio.to_process: a long-lived process -- at most one
for cycles and one for analyses, MapeK's choice -- killed if the caller is
cancelled) decodes it and runs the very functions the thread runs (`plan_all`,
`mapek.analyze.analyze`) with lookups over the answers; the result -- a few dozen
proposals, or one analysis -- comes back pickled.
"""

from __future__ import annotations

import signal
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import anyio.to_process
import anyio.to_thread
import msgspec

from .analyze import Analysis, TargetOf, analyze
from .escalation import SloTerms
from .monitor import Observation, RoleOf
from .plan import (
    AssignedAt,
    EscalateTo,
    PlanConfig,
    Proposal,
    SloOf,
    plan_effects,
    timing_proposal,
)
from .timing import (
    TaskHistory,
    TimingConfig,
    TwinRunner,
    find_window,
    fitted_responder,
    twin_saving,
)

ZoneOf = Callable[["str | None"], "str | None"]  # person -> IANA zone (None: unknown)

# ---------------------------------------------------------------- the work itself
def plan_all(closed: list[Observation], still_open: list[Observation], now: float, *,
             timing: TimingConfig, plan: PlanConfig, default_zone: str, twin: TwinRunner,
             zone_of: ZoneOf, slo_of: SloOf | None, escalate_to: EscalateTo | None,
             assigned_at: AssignedAt | None, role_of: RoleOf | None) -> list[Proposal]:
    """Timing findings with their twin estimates, then the routing, escalation and
    capacity planners over the same history."""
    out = _timing(closed, still_open, now, timing, default_zone, twin, zone_of)
    out += plan_effects([*closed, *still_open], now,
                        zone_of=lambda p: zone_of(p) or default_zone, slo_of=slo_of,
                        escalate_to=escalate_to, assigned_at=assigned_at, role_of=role_of,
                        cfg=plan)
    return out


def _timing(closed: list[Observation], still_open: list[Observation], now: float,
            cfg: TimingConfig, default_zone: str, twin: TwinRunner, zone_of: ZoneOf,
            ) -> list[Proposal]:
    groups: dict[tuple[str, str], list[Observation]] = defaultdict(list)
    for o in closed:
        if o.outcome == "completed":
            groups[(o.workflow_id, o.task)].append(o)
    for o in still_open:
        groups[(o.workflow_id, o.task)].append(o)
    out = []
    for (wf, task), obs in sorted(groups.items()):
        if sum(o.closed_at is not None for o in obs) < cfg.min_sample:
            continue
        tz = _time_zone(obs, default_zone, zone_of)
        history = TaskHistory.from_items(
            wf, task, tz, [(o.case_id, o.enabled_at, o.dispatched_at, o.closed_at)
                           for o in obs], now, cfg.max_items)
        finding = find_window(history, cfg)
        if finding is None:
            continue
        est = anyio.run(twin_saving, twin, list(history.enabled[-cfg.twin_arrivals:]),
                        fitted_responder(history, cfg.seed), finding.window)
        p = timing_proposal(finding, msgspec.to_builtins(est))
        if p is not None:
            out.append(p)
    return out


def _time_zone(obs: Sequence[Observation], default_zone: str, zone_of: ZoneOf) -> str:
    """The zone of the people who do the task (most of them), else the default."""
    zones: dict[str, int] = defaultdict(int)
    for o in obs:  # work by nobody known (customers, imports) counts for the default
        tz = zone_of(o.by) if o.by else None
        zones[tz or default_zone] += 1
    return max(sorted(zones), key=zones.__getitem__)


def timed_analysis(obs: list[Observation], target_of: TargetOf, now: float,
                   zone_of: ZoneOf, default_zone: str,
                   attributes: dict[str, dict[str, Any]]) -> tuple[Analysis, float]:
    """`mapek.analyze.analyze`, and the seconds it took: its own cost, not the wait for
    a worker or the packing (MapeK keeps an analysis for a multiple of it)."""
    began = time.monotonic()
    result = analyze(obs, target_of, now, lambda p: zone_of(p) or default_zone,
                     attributes=attributes)
    return result, time.monotonic() - began


# ------------------------------------------------------- the server's answers, in advance
class Answers(msgspec.Struct, frozen=True):
    """What the planners and analyzers ask the server, answered for the people and
    tasks of one history; a question about anything else is answered "unknown"."""

    zones: dict[str, str]  # person -> zone
    roles: list[tuple[str, str, str]]  # (workflow, task, role it is offered to)
    terms: list[tuple[str, str, SloTerms]]
    targets: list[tuple[str, str, float]]  # SLO target, hours
    assignments: list[tuple[str, str, str]]  # (workflow, task, "workflow/Assign")
    escalations: dict[str, str]  # role -> the role that hears early alerts

    @classmethod
    def of(cls, obs: Sequence[Observation], *, zone_of: ZoneOf,
           role_of: RoleOf | None = None, slo_of: SloOf | None = None,
           target_of: TargetOf | None = None, assigned_at: AssignedAt | None = None,
           escalate_to: EscalateTo | None = None) -> Answers:
        people = {o.by for o in obs if o.by}
        tasks = sorted({(o.workflow_id, o.task) for o in obs})

        def table(ask: Callable[[str, str], Any] | None) -> list[tuple[str, str, Any]]:
            if ask is None:
                return []
            return [(wf, t, v) for wf, t in tasks if (v := ask(wf, t)) is not None]

        roles = table(role_of)
        named = {o.role for o in obs if o.role} | {r for _, _, r in roles}
        return cls(zones={p: z for p in people if (z := zone_of(p))},
                   roles=roles, terms=table(slo_of), targets=table(target_of),
                   assignments=table(assigned_at),
                   escalations={} if escalate_to is None else {
                       r: to for r in named if (to := escalate_to(r)) is not None})

    def zone_of(self, person: str | None) -> str | None:
        return None if person is None else self.zones.get(person)

    @staticmethod
    def lookup(rows: list[tuple[str, str, Any]]) -> Callable[[str, str], Any]:
        """One of the (workflow, task) tables as the question it answers."""
        found = {(wf, t): v for wf, t, v in rows}
        return lambda wf, t: found.get((wf, t))


class _History(msgspec.Struct, frozen=True):
    closed: list[Observation]
    still_open: list[Observation]
    answers: Answers
    attributes: dict[str, dict[str, Any]] = {}


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(_History).decode
Ask = Callable[[Sequence[Observation]], Answers]  # the server's answers for a history


async def _pack(closed: list[Observation], still_open: list[Observation], ask: Ask,
                attributes: dict[str, dict[str, Any]] | None = None) -> bytes:
    """The history and the server's answers about it, encoded in a worker thread: a
    pass over the observations and one msgspec call (~0.2 s for a half year), which
    would hold the event loop if done on it."""
    def pack() -> bytes:
        return _encode(_History(closed, still_open, ask([*closed, *still_open]),
                                attributes or {}))
    return await anyio.to_thread.run_sync(pack)


# ------------------------------------------------------------ in the worker process
def _deaf_to_ctrl_c() -> None:
    """The worker shares the server's process group, so a Ctrl-C in the terminal
    reaches it too: as a KeyboardInterrupt it would be sent back to the server (anyio
    returns whatever the call raised) -- at once if busy, as a stray answer to the next
    call if idle -- and escape the loop's `except Exception`. The server stops it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _plan_in_worker(packed: bytes, now: float, timing: TimingConfig, plan: PlanConfig,
                    default_zone: str, twin: TwinRunner) -> list[Proposal]:
    _deaf_to_ctrl_c()
    h = _decode(packed)
    a = h.answers
    return plan_all(h.closed, h.still_open, now, timing=timing, plan=plan,
                    default_zone=default_zone, twin=twin, zone_of=a.zone_of,
                    slo_of=a.lookup(a.terms), escalate_to=a.escalations.get,
                    assigned_at=a.lookup(a.assignments), role_of=a.lookup(a.roles))


def _analyze_in_worker(packed: bytes, now: float, default_zone: str,
                       ) -> tuple[Analysis, float]:
    _deaf_to_ctrl_c()
    h = _decode(packed)
    a = h.answers
    return timed_analysis([*h.closed, *h.still_open], a.lookup(a.targets), now, a.zone_of,
                          default_zone, h.attributes)


def _interrupted() -> RuntimeError:
    # A worker interrupted before it could ignore Ctrl-C (while starting): a failed
    # cycle or analysis, not the server's own interrupt.
    return RuntimeError("the MAPE-K worker process was interrupted (SIGINT)")


# ---------------------------------------------------------------- from the server
async def plan_elsewhere(closed: list[Observation], still_open: list[Observation],
                         now: float, ask: Ask, *, timing: TimingConfig, plan: PlanConfig,
                         default_zone: str, twin: TwinRunner,
                         worker: anyio.CapacityLimiter) -> list[Proposal]:
    """`plan_all` in a worker process (`worker`: how many may run at once). `twin`
    must pickle: a module's function."""
    packed = await _pack(closed, still_open, ask)
    try:
        return await anyio.to_process.run_sync(
            _plan_in_worker, packed, now, timing, plan, default_zone, twin,
            cancellable=True, limiter=worker)
    except KeyboardInterrupt as exc:
        raise _interrupted() from exc


async def analyze_elsewhere(observations: list[Observation], now: float, ask: Ask,
                            attributes: dict[str, dict[str, Any]], *, default_zone: str,
                            worker: anyio.CapacityLimiter) -> tuple[Analysis, float]:
    """`timed_analysis` in a worker process."""
    packed = await _pack(observations, [], ask, attributes)
    try:
        return await anyio.to_process.run_sync(
            _analyze_in_worker, packed, now, default_zone, cancellable=True,
            limiter=worker)
    except KeyboardInterrupt as exc:
        raise _interrupted() from exc
