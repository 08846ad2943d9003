"""The MAPE-K loop: monitor, analyze, plan and execute over the knowledge log.

Theory of operation
-------------------
`cycle()` runs when the observations changed since the last one (`Monitor.stamp()`:
the log grew, or history was imported): it takes a copy of the observations, and in a
worker thread -- never on the event loop that serves requests and commands; in a
server, in a worker process (mapek.offload), so that it does not take the GIL from
them either -- builds each task's history, looks for a dispatch window that beats
dispatching at once (mapek.timing), and estimates each finding's saving in the twin
(the real engine and runtime on a virtual clock, in that thread's own event loop).
The same thread asks
mapek.plan for routing (a slow person, routed around at the assignment that decides
who does the task), escalation (an earlier alert to a role that can act) and
capacity (a saturated role: advice, no change). Proposals become recommendations
with stable ids, one per (type, workflow, subject): a proposal for a subject that
already has an open recommendation of the same type updates it rather than adding
another; one whose change was rolled back or rejected is not proposed again; a
`ready_to_apply` recommendation the history no longer supports is rejected by the loop.

`apply` writes a new policy version (mapek.policy.PolicyBook, which the runtime
consults for new work items) and marks the recommendation applied; `rollback` makes a
new version that undoes that change alone (the task's part as it was before it; other
recommendations applied since keep theirs). After `verify_after` items of the task have
completed under the policy, the loop compares the realized effect with the estimate:
within `verify_tolerance` it is verified, worse it is rolled back and the change's
owners are notified. A dispatch window is judged by the mean time before vs after on
the same task; a routing change by the mean before vs the items the people kept did
after (the avoided still finish work assigned before the change); an escalation,
which claims no hours, by the task's breach share before vs after -- it must not get
worse beyond the tolerance. Advice (capacity, routing nothing can act on) is never
applied, so never verified. Auto-apply is off unless configured; when on, it applies
only reversible recommendations at or above `auto_apply_confidence`.

Every state change is a knowledge record (mapek.knowledge) written before it takes
effect in memory, so a restart folds the log back into the same state.

In a server, `run(every)` keeps the loop going: a cycle now and then for verification
and auto-apply, paced so that cycles take at most a tenth of the time (`PACE`: over a
year of history a cycle takes seconds, and on a busy server the log has always grown),
and the cycles that `refresh(within)` asks for, one at a time: a request waits at
most `within` for a cycle that began after it asked, and is answered with the
knowledge as it stands if that takes longer; the cycle goes on behind it. Requests that
ask while one cycle waits to begin share that cycle.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskGroup

from actors.ports import Notice

from .analyze import Analysis, TargetOf
from .escalation import SloTerms
from .knowledge import Audit, KnowledgeLog, Recommendation, Record, fold, record
from .monitor import Monitor, Observation
from .offload import Answers, analyze_elsewhere, plan_all, plan_elsewhere, timed_analysis
from .plan import (
    AssignedAt,
    EscalateTo,
    PlanConfig,
    Proposal,
    SloOf,
    subject,
)
from .policy import Change, PolicyBook, PolicyVersion
from .timing import TimingConfig, TwinRunner
from .verify import judge


class LoopSettings(msgspec.Struct, frozen=True):
    default_time_zone: str = "America/Los_Angeles"  # tasks nobody in roles.yaml does
    auto_apply: bool = False
    auto_apply_confidence: float = 0.9
    verify_after: int = 30  # items of the task completed under the policy
    verify_tolerance: float = 0.5  # the realized saving may fall short by this share
    timing: TimingConfig = TimingConfig()
    plan: PlanConfig = PlanConfig()  # routing, escalation, capacity


class NotFound(KeyError):
    pass


class Refused(ValueError):
    """An action the recommendation does not allow: its status (apply twice), it is
    advice with no change to apply (`field` "change"), or its change names a task the
    workflow does not have (`field` "change.task" or "change.assigned_at")."""

    def __init__(self, message: str, field: str = "status", problem: str | None = None,
                 ) -> None:
        super().__init__(message)
        self.field = field
        self.problem = problem


Notify = Callable[[Recommendation, str], list[Notice]]
# A background cycle waits at least this many times the last cycle's length after it.
PACE = 10.0
# Seconds an analysis is reused while only the log grew (the dashboard's refresh period),
# and at least this many times what it cost to compute: on a year's history one takes
# 0.7-2 s a workflow, and a Bottlenecks page left open asks for all five every 30 s.
ANALYSIS_KEPT = 30.0
ANALYSIS_FRESH = 10.0
# Closed items from which a running loop computes the analyses once after its start,
# and the seconds it waits at most for the Monitor's first fold to settle.
WARM_FROM = 50_000
WARM_WAIT = 60.0


class MapeK:
    def __init__(self, monitor: Monitor, knowledge: KnowledgeLog, book: PolicyBook, *,
                 twin: TwinRunner, now: Callable[[], float],
                 time_zone_of: Callable[[str | None], str | None] | None = None,
                 notify: Notify | None = None, target_of: TargetOf | None = None,
                 settings: LoopSettings | None = None, slo_of: SloOf | None = None,
                 escalate_to: EscalateTo | None = None,
                 assigned_at: AssignedAt | None = None,
                 has_task: Callable[[str, str], bool] | None = None,
                 offload: bool = False) -> None:
        self.monitor = monitor
        # A cycle's planning and the analyses run in a worker process (the server: see
        # mapek.offload), else in a worker thread; `twin` must then pickle.
        self.offload = offload
        self._worker_slots: dict[str, anyio.CapacityLimiter] = {}
        self.knowledge = knowledge
        self.book = book
        self.twin = twin
        self.now = now
        self.time_zone_of = time_zone_of or (lambda person: None)
        self.notify = notify
        self.target_of: TargetOf = target_of or (lambda workflow_id, task: None)
        # The SLO's terms for escalations; without them, the target alone (alerted at
        # the target, 95 % compliance).
        self.slo_of: SloOf = slo_of or self._terms_of_target
        self.escalate_to = escalate_to  # role -> role that hears early alerts
        self.assigned_at = assigned_at  # (workflow, task) -> the assignment deciding it
        # (workflow, task) -> is it a task of the workflow's current version? Imported
        # history may name tasks of another system; a policy for one would never act.
        self.has_task = has_task or (lambda workflow_id, task: True)
        # workflow -> (Monitor.stamp(), its analysis, when it was made: monotonic,
        # seconds it took); and the analyses being computed (set when done).
        self._analyses: dict[str, tuple[tuple[int, int, int], Analysis, float, float]] = {}
        self._analysing: dict[str, anyio.Event] = {}
        self._refreshing: set[str] = set()  # workflows redone in the background
        self.settings = settings or LoopSettings()
        self.recommendations: dict[str, Recommendation] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._lock = anyio.Lock()
        self.cycles = 0
        self.cycle_seconds = 0.0  # how long the last cycle took (wall clock)
        self.cycled_at: float | None = None  # self.now() when it ended
        self._runner: TaskGroup | None = None  # run()'s, for asked-for cycles
        self._asked: _Asked | None = None  # a cycle asked for that has not begun

    # ------------------------------------------------------------------ knowledge
    async def load(self) -> None:
        """Fold the knowledge log: recommendations and policy versions as they were."""
        k = fold(await self.knowledge.read_knowledge())
        self.recommendations = k.recommendations
        for v in k.policies:
            self.book._install(v)

    async def _write(self, records: list[Record], notices: list[Notice] | None = None,
                     ) -> None:
        await self.knowledge.append_knowledge(records, notices)

    def _unknown_task(self, change: Change) -> tuple[str, str] | None:
        """(field, name) of what `change` names that no current workflow version has."""
        if not self.has_task(change.workflow_id, change.task):
            return "change.task", f"{change.workflow_id}/{change.task}"
        if change.assigned_at is not None:
            wf, _, task = change.assigned_at.partition("/")
            if not self.has_task(wf, task):
                return "change.assigned_at", change.assigned_at
        return None

    def _next_id(self) -> str:
        n = max((int(r.id.split("_")[1]) for r in self.recommendations.values()
                 if re.fullmatch(r"rec_\d+", r.id)), default=0)
        return f"rec_{n + 1}"

    # ------------------------------------------------------------------- queries
    def for_workflow(self, workflow_id: str) -> list[Recommendation]:
        return sorted((r for r in self.recommendations.values()
                       if r.workflow_id == workflow_id),
                      key=lambda r: int(r.id.split("_")[1]) if r.id[4:].isdigit() else 0)

    def get(self, rid: str) -> Recommendation:
        r = self.recommendations.get(rid)
        if r is None:
            raise NotFound(rid)
        return r

    async def analysis(self, workflow_id: str) -> Analysis:
        """The Analyze stage for one workflow (SLOs, bottlenecks, dispatch and assignee
        effects, breach risk), computed in a worker thread (a worker process with
        `offload`).

        An analysis is kept while nothing changed. While only the log grew (on a live
        server it always has) it is kept for ANALYSIS_KEPT seconds, or ANALYSIS_FRESH
        times what it cost if that is longer; after that, with the loop running
        (`run`), the kept one is still answered at once and a new one is computed in
        the background for the next question -- nobody waits seconds for a page
        whose history moved by a few items (its `stamp` says which history it is).
        Imported history is always seen: an import (or nothing kept) is waited for.
        One computation per workflow at a time; whoever asks meanwhile waits for it."""
        await self.monitor.catch_up()
        stamp = self.monitor.stamp()
        kept = self._analyses.get(workflow_id)
        if kept is None or kept[0][2] != stamp[2]:  # nothing kept, or an import since
            return await self._analyse(workflow_id)
        made, cost = kept[2], kept[3]
        if kept[0] == stamp or (time.monotonic() - made
                                < max(ANALYSIS_KEPT, ANALYSIS_FRESH * cost)):
            return kept[1]
        if self._runner is None:  # no loop running to do it later: here, now
            return await self._analyse(workflow_id)
        if workflow_id not in self._refreshing:
            self._refreshing.add(workflow_id)
            self._runner.start_soon(self._analyse_reporting_failure, workflow_id)
        return kept[1]

    async def _analyse(self, workflow_id: str) -> Analysis:
        while (running := self._analysing.get(workflow_id)) is not None:
            await running.wait()
            kept = self._analyses.get(workflow_id)
            if kept is not None and kept[0][2] == self.monitor.stamp()[2]:
                return kept[1]  # (it failed, or an import came meanwhile: our own)
        done = self._analysing[workflow_id] = anyio.Event()
        try:
            stamp = self.monitor.stamp()
            obs = [o for o in self.monitor.closed[:] if o.workflow_id == workflow_id]
            obs += [o for o in list(self.monitor.open.values())
                    if o.workflow_id == workflow_id]
            attributes = dict(self.monitor.attributes)
            now = self.now()
            if self.offload:
                result, cost = await analyze_elsewhere(
                    obs, now, self._answers, attributes, default_zone="UTC",
                    worker=self._worker("analysis"))
            else:  # abandoned when cancelled, like a cycle: it writes nothing
                result, cost = await anyio.to_thread.run_sync(
                    timed_analysis, obs, self.target_of, now, self.time_zone_of, "UTC",
                    attributes, abandon_on_cancel=True)
            self._analyses[workflow_id] = (stamp, result, time.monotonic(), cost)
            return result
        finally:
            del self._analysing[workflow_id]
            done.set()

    async def _analyse_reporting_failure(self, workflow_id: str) -> None:
        try:
            await self._analyse(workflow_id)
        except Exception as exc:  # the next question tries again
            print(f"mapek: analysis of {workflow_id} failed: {exc!r}", file=sys.stderr,
                  flush=True)
        finally:
            self._refreshing.discard(workflow_id)

    # --------------------------------------------------------------------- cycle
    async def cycle(self, force: bool = False) -> bool:
        """One Monitor-Analyze-Plan(-Execute) pass if the history changed. -> ran?"""
        async with self._lock:
            return await self._cycle(force)

    async def _cycle(self, force: bool = False) -> bool:
        await self.monitor.catch_up()
        stamp = self.monitor.stamp()
        if stamp == self._stamp and not force:
            return False
        began = time.monotonic()
        closed = self.monitor.closed[:]  # copies: the monitor moves on meanwhile
        still_open = list(self.monitor.open.values())
        now = self.now()
        st = self.settings
        if self.offload:
            proposals = await plan_elsewhere(
                closed, still_open, now, self._answers, timing=st.timing, plan=st.plan,
                default_zone=st.default_time_zone, twin=self.twin,
                worker=self._worker("cycle"))
        else:
            # Abandoned when cancelled (a server shutting down does not wait out an
            # analysis of copies, which writes nothing).
            proposals = await anyio.to_thread.run_sync(
                self._analyze_and_plan, closed, still_open, now, abandon_on_cancel=True)
        await self._propose(proposals, now)
        await self._verify(closed, still_open, now)
        if self.settings.auto_apply:
            await self._auto_apply()
        self._stamp = stamp
        self.cycles += 1
        self.cycle_seconds = time.monotonic() - began
        self.cycled_at = self.now()
        return True

    async def run(self, every: float) -> None:
        """Cycle every `every` seconds at the least (PACE times the last cycle's length
        at the most), and run the cycles `refresh` asks for, until cancelled."""
        async with anyio.create_task_group() as tg:
            self._runner = tg
            tg.start_soon(self._warm)
            try:
                while True:
                    await anyio.sleep(max(every, PACE * self.cycle_seconds))
                    await self._cycle_reporting_failure(None)
            finally:
                self._runner = None

    async def _warm(self) -> None:
        """After a start over a large history, each workflow's analysis once, in the
        background: the first visit of the Bottlenecks page would otherwise wait for
        all of them (8 s on a half year); later visits get kept ones at once."""
        try:
            # A server's Monitor is folded by its own follower from the start: this
            # waits (at most WARM_WAIT) until that first fold has settled -- its
            # position still for a second -- instead of catching up itself, which
            # raced the follower for the first commands' rounds (read back from the
            # log instead of handed on). Imported history alone decides at once.
            # A mirror of a tail process (mapek.monitor, "Where the fold runs") races
            # nothing and its position stands still while the tail folds the next part
            # of a long log: one catch-up of its own takes all of it in.
            monitor, last = self.monitor, -1
            with anyio.move_on_after(WARM_WAIT):
                if monitor.mirrors:
                    await monitor.catch_up()
                else:
                    while monitor.pos != last or (monitor.pos == 0
                                                  and len(monitor.closed) < WARM_FROM):
                        last = monitor.pos
                        await anyio.sleep(1.0)
            closed = monitor.closed
            if len(closed) < WARM_FROM:
                return  # small: computed when asked, in well under a second
            for workflow_id in sorted({o.workflow_id for o in closed}):
                await self.analysis(workflow_id)
        except Exception as exc:  # a question asked later computes it then
            print(f"mapek: warming the analyses failed: {exc!r}", file=sys.stderr,
                  flush=True)

    async def refresh(self, within: float) -> bool:
        """A cycle over the history as it is now, waited for at most `within` seconds.
        -> whether it ended in time and did not fail (False: the knowledge as it was;
        a cycle still running goes on). Without `run`, the cycle runs here, however
        long it takes."""
        if self._runner is None:
            await self.cycle()
            return True
        with anyio.move_on_after(within):
            # (After a start the monitor first folds the whole log: seconds for years.)
            await self.monitor.catch_up()
            if self.monitor.stamp() == self._stamp:
                return True  # nothing new since the last cycle
            asked, runner = self._asked, self._runner
            if asked is None:
                if runner is None:  # run() ended meanwhile (shutting down)
                    return False
                asked = self._asked = _Asked()
                runner.start_soon(self._cycle_reporting_failure, asked)
            await asked.done.wait()
            return asked.ok
        return False

    async def _cycle_reporting_failure(self, asked: _Asked | None) -> None:
        try:
            async with self._lock:
                if asked is not None and self._asked is asked:
                    self._asked = None  # begun: whoever asks from now on needs another
                await self._cycle()
            if asked is not None:
                asked.ok = True
        except Exception as exc:  # a failed analysis must not stop the loop
            print(f"mapek: cycle failed: {exc!r}", file=sys.stderr, flush=True)
        finally:
            if asked is not None:
                asked.done.set()

    def _terms_of_target(self, workflow_id: str, task: str) -> SloTerms | None:
        target = self.target_of(workflow_id, task)
        return None if target is None else SloTerms(target, target)

    def _analyze_and_plan(self, closed: list[Observation], still_open: list[Observation],
                          now: float) -> list[Proposal]:
        """Worker thread: mapek.offload.plan_all with this loop's lookups."""
        st = self.settings
        return plan_all(closed, still_open, now, timing=st.timing, plan=st.plan,
                        default_zone=st.default_time_zone, twin=self.twin,
                        zone_of=self.time_zone_of, slo_of=self.slo_of,
                        escalate_to=self.escalate_to, assigned_at=self.assigned_at,
                        role_of=self.monitor.role_of)

    def _answers(self, obs: Sequence[Observation]) -> Answers:
        """What the planners would ask this loop about `obs`, answered in advance for a
        worker process (a worker thread calls this)."""
        return Answers.of(obs, zone_of=self.time_zone_of, role_of=self.monitor.role_of,
                          slo_of=self.slo_of, target_of=self.target_of,
                          assigned_at=self.assigned_at, escalate_to=self.escalate_to)

    def _worker(self, purpose: str) -> anyio.CapacityLimiter:
        """A worker process for cycles, one for analyses: the dashboard's analyses take
        turns with each other rather than each starting a process, and a person opening
        a page does not wait behind a background cycle (10-17 s on a half year)."""
        slot = self._worker_slots.get(purpose)
        if slot is None:
            slot = self._worker_slots[purpose] = anyio.CapacityLimiter(1)
        return slot

    async def _propose(self, proposals: list[Proposal], now: float) -> None:
        records: list[Record] = []
        seen: set[tuple[str, str, str]] = set()
        for p in proposals:
            if p.change is not None and (gone := self._unknown_task(p.change)) is not None:
                # History from elsewhere (an import) can show an effect on a task this
                # workflow does not have: worth knowing, but nothing here can act on it.
                p = msgspec.structs.replace(p, change=None, description=(
                    f"{p.description.rstrip('.')}. The workflow has no task {gone[1]!r} "
                    "(the history came from elsewhere), so no policy can make this "
                    "change: advice."))
            key = (p.type, p.workflow_id, p.subject)
            seen.add(key)
            same = [r for r in self.recommendations.values() if _key(r) == key]
            if any(r.status in ("applied", "verified") for r in same):
                continue  # a policy is in place; judge it by its verification first
            if any(r.change == p.change and r.status in ("rolled_back", "rejected")
                   for r in same):
                continue  # tried (or refused) already: do not propose it again
            open_rec = next((r for r in same if r.status == "ready_to_apply"), None)
            if open_rec is not None:
                rec = msgspec.structs.replace(
                    open_rec, task=p.task, description=p.description,
                    confidence=p.confidence, estimated_improvement=p.estimated_improvement,
                    estimated_improvement_hours=p.estimated_improvement_hours,
                    evidence=p.evidence, change=p.change, updated_at=now)
            else:
                rec = Recommendation(
                    self._next_id(), p.workflow_id, p.type, p.task, p.description,
                    p.confidence, p.estimated_improvement, p.estimated_improvement_hours,
                    "ready_to_apply", p.evidence, p.change, now, now)
            self.recommendations[rec.id] = rec
            records.append(record(now, "recommendation", rec.id, rec))
            if p.model is not None:
                records.append(record(now, "model", f"{p.workflow_id}/{p.subject}", p.model))
            records.append(record(now, "audit", rec.id, Audit(
                "updated" if open_rec is not None else "proposed", "mapek")))
        for r in list(self.recommendations.values()):
            if r.status == "ready_to_apply" and _key(r) not in seen:
                rec = msgspec.structs.replace(r, status="rejected", updated_at=now)
                self.recommendations[r.id] = rec
                records.append(record(now, "recommendation", r.id, rec))
                records.append(record(now, "audit", r.id, Audit(
                    "rejected", "mapek", "the history no longer supports it")))
        if records:
            await self._write(records)

    # ------------------------------------------------------------------- execute
    async def apply(self, rid: str, by: str) -> Recommendation:
        async with self._lock:
            return await self._apply(rid, by)

    async def _apply(self, rid: str, by: str) -> Recommendation:
        rec = self.get(rid)
        if rec.status != "ready_to_apply":
            raise Refused(f"recommendation {rid} is {rec.status}; only a ready_to_apply "
                          "one can be applied")
        if rec.change is None:
            raise Refused(f"recommendation {rid} is advice ({rec.type}); it changes no "
                          "policy, so there is nothing to apply", "change")
        gone = self._unknown_task(rec.change)
        if gone is not None:
            raise Refused(f"recommendation {rid} changes {gone[1]}, which is not a task of "
                          "the workflow's current version: no new work would ever follow "
                          "the policy", gone[0], "unknown task")
        now = self.now()
        version = self.book.apply(rec.change, now, f"{rid} applied by {by}", rid)  # PolicyError
        done = msgspec.structs.replace(rec, status="applied", applied_version=version.version,
                                       applied_at=now, updated_at=now)
        await self._write_version(version, rec, done, [
            record(now, "policy", str(version.version), version),
            record(now, "recommendation", rid, done),
            record(now, "audit", rid, Audit("applied", by, policy_version=version.version))])
        return done

    async def _write_version(self, version: PolicyVersion, before: Recommendation,
                             after: Recommendation, records: list[Record],
                             notices: list[Notice] | None = None) -> None:
        """Write a new policy version's records; `after` is the recommendation's state
        once they are. A write that fails takes the version back: what the runtime
        follows and what a restart folds from the log stay one (a version in force but
        not written made the next one's number skip, and the next start refuse it)."""
        try:
            await self._write(records, notices)
        except BaseException:
            self.book.withdraw(version)
            self.recommendations[before.id] = before
            raise
        self.recommendations[before.id] = after

    async def rollback(self, rid: str, by: str, note: str = "") -> Recommendation:
        async with self._lock:
            return await self._rollback(rid, by, note)

    async def _rollback(self, rid: str, by: str, note: str = "",
                        verification: dict[str, Any] | None = None) -> Recommendation:
        rec = self.get(rid)
        if (rec.status not in ("applied", "verified") or rec.applied_version is None
                or rec.change is None):
            raise Refused(f"recommendation {rid} is {rec.status}; only an applied one can "
                          "be rolled back")
        now = self.now()
        # Undo this change only: other recommendations applied since keep their policy.
        version = self.book.undo(rec.change, rec.applied_version - 1, now,
                                 f"{rid} rolled back by {by}", rid)
        done = msgspec.structs.replace(rec, status="rolled_back", updated_at=now,
                                       verification=verification or rec.verification)
        notices = self.notify(done, note) if self.notify is not None and by == "mapek" \
            else None
        await self._write_version(version, rec, done, [
            record(now, "policy", str(version.version), version),
            record(now, "recommendation", rid, done),
            record(now, "audit", rid, Audit("rolled_back", by, note, version.version))],
            notices)
        return done

    async def reject(self, rid: str, by: str, note: str = "") -> Recommendation:
        async with self._lock:
            rec = self.get(rid)
            if rec.status != "ready_to_apply":
                raise Refused(f"recommendation {rid} is {rec.status}; only a ready_to_apply "
                              "one can be rejected")
            now = self.now()
            done = msgspec.structs.replace(rec, status="rejected", updated_at=now)
            self.recommendations[rid] = done
            await self._write([record(now, "recommendation", rid, done),
                               record(now, "audit", rid, Audit("rejected", by, note))])
            return done

    async def _auto_apply(self) -> None:
        s = self.settings
        for rec in list(self.recommendations.values()):
            if (rec.status == "ready_to_apply" and rec.reversible and rec.change is not None
                    and rec.confidence >= s.auto_apply_confidence):
                try:
                    await self._apply(rec.id, "mapek (auto-apply)")
                except Refused:
                    continue  # its task left the workflow since: left for a person

    # -------------------------------------------------------------------- verify
    async def _verify(self, closed: list[Observation], still_open: list[Observation],
                      now: float) -> None:
        s = self.settings
        for rec in list(self.recommendations.values()):
            if rec.status != "applied" or rec.applied_at is None or rec.task is None:
                continue
            v = judge(rec, closed, still_open, now, s.verify_after, s.verify_tolerance)
            if v is None:
                continue  # not enough work under the policy yet
            if v.passed:
                done = msgspec.structs.replace(rec, status="verified", verification=v.details,
                                               updated_at=now)
                self.recommendations[rec.id] = done
                await self._write([record(now, "recommendation", rec.id, done),
                                   record(now, "audit", rec.id, Audit(
                                       "verified", "mapek", v.summary))])
            else:
                await self._rollback(rec.id, "mapek", v.summary, v.details)


class _Asked:
    """A cycle `refresh` asked for: set when it ended; `ok` unless it failed."""

    __slots__ = ("done", "ok")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.ok = False


def _key(r: Recommendation) -> tuple[str, str, str]:
    """What a recommendation is about: one open one per (type, workflow, subject)."""
    return (r.type, r.workflow_id, subject(r.task, r.evidence.get("role")))


__all__ = ["LoopSettings", "MapeK", "NotFound", "Refused"]
