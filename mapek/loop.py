"""The MAPE-K loop: monitor, analyze, plan and execute over the knowledge log.

Theory of operation
-------------------
`cycle()` runs when the event log has grown since the last one (the monitor's
position is the data stamp): it takes a copy of the observations, and in a worker
thread -- never on the event loop that serves requests and commands -- builds each
task's history, looks for a dispatch window that beats dispatching at once
(mapek.timing), and estimates each finding's saving in the twin (the real engine and
runtime on a virtual clock, in that thread's own event loop). Findings become
recommendations with stable ids: a finding for a task that already has an open
recommendation of the same type updates it rather than adding another; one whose
change was rolled back or rejected is not proposed again; a `ready_to_apply`
recommendation the history no longer supports is rejected by the loop.

`apply` writes a new policy version (mapek.policy.PolicyBook, which the runtime
consults for new work items) and marks the recommendation applied; `rollback` makes a
new version equal to the one before it. After `verify_after` items of the task have
completed under the policy, the loop compares the realized saving (mean time before
vs after, on the same task) with the estimate: within `verify_tolerance` it is
verified, worse it is rolled back and the change's owners are notified. Auto-apply
is off unless configured; when on, it applies only reversible recommendations at or
above `auto_apply_confidence`.

Every state change is a knowledge record (mapek.knowledge) written before it takes
effect in memory, so a restart folds the log back into the same state.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import msgspec
import numpy as np

from actors.ports import Notice

from .analyze import Analysis, TargetOf, analyze
from .knowledge import Audit, KnowledgeLog, Recommendation, Record, fold, record
from .monitor import Monitor, Observation
from .policy import Change, PolicyBook, clock_label, zone_label
from .timing import (
    TaskHistory,
    TimingConfig,
    TimingFinding,
    TwinRunner,
    find_window,
    fitted_responder,
    twin_saving,
)


class LoopSettings(msgspec.Struct, frozen=True):
    default_time_zone: str = "America/Los_Angeles"  # tasks nobody in roles.yaml does
    auto_apply: bool = False
    auto_apply_confidence: float = 0.9
    verify_after: int = 30  # items of the task completed under the policy
    verify_tolerance: float = 0.5  # the realized saving may fall short by this share
    timing: TimingConfig = TimingConfig()


class NotFound(KeyError):
    pass


class Refused(ValueError):
    """An action the recommendation's status does not allow (e.g. apply twice)."""


Notify = Callable[[Recommendation, str], list[Notice]]


class MapeK:
    def __init__(self, monitor: Monitor, knowledge: KnowledgeLog, book: PolicyBook, *,
                 twin: TwinRunner, now: Callable[[], float],
                 time_zone_of: Callable[[str | None], str | None] | None = None,
                 notify: Notify | None = None, target_of: TargetOf | None = None,
                 settings: LoopSettings | None = None) -> None:
        self.monitor = monitor
        self.knowledge = knowledge
        self.book = book
        self.twin = twin
        self.now = now
        self.time_zone_of = time_zone_of or (lambda person: None)
        self.notify = notify
        self.target_of: TargetOf = target_of or (lambda workflow_id, task: None)
        self._analyses: dict[str, tuple[tuple[int, int], Analysis]] = {}
        self.settings = settings or LoopSettings()
        self.recommendations: dict[str, Recommendation] = {}
        self._stamp: tuple[int, int] | None = None
        self._lock = anyio.Lock()
        self.cycles = 0

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
        effects, breach risk), computed in a worker thread and kept until the log moves."""
        await self.monitor.catch_up()
        stamp = (self.monitor.pos, len(self.monitor.closed))
        kept = self._analyses.get(workflow_id)
        if kept is not None and kept[0] == stamp:
            return kept[1]
        obs = [o for o in self.monitor.closed[:] if o.workflow_id == workflow_id]
        obs += [o for o in list(self.monitor.open.values()) if o.workflow_id == workflow_id]
        attributes = dict(self.monitor.attributes)
        zone = self.time_zone_of
        result = await anyio.to_thread.run_sync(lambda: analyze(
            obs, self.target_of, self.now(), lambda p: zone(p) or "UTC",
            attributes=attributes))
        self._analyses[workflow_id] = (stamp, result)
        return result

    # --------------------------------------------------------------------- cycle
    async def cycle(self, force: bool = False) -> bool:
        """One Monitor-Analyze-Plan(-Execute) pass if the history changed. -> ran?"""
        async with self._lock:
            await self.monitor.catch_up()
            stamp = (self.monitor.pos, len(self.monitor.closed))
            if stamp == self._stamp and not force:
                return False
            closed = self.monitor.closed[:]  # copies: the monitor moves on meanwhile
            still_open = list(self.monitor.open.values())
            now = self.now()
            findings = await anyio.to_thread.run_sync(
                self._analyze_and_plan, closed, still_open, now)
            await self._propose(findings, now)
            await self._verify(closed, now)
            if self.settings.auto_apply:
                await self._auto_apply()
            self._stamp = stamp
            self.cycles += 1
            return True

    def _analyze_and_plan(self, closed: list[Observation], still_open: list[Observation],
                          now: float) -> list[tuple[TimingFinding, dict[str, Any]]]:
        """Worker thread: findings with their twin estimates."""
        groups: dict[tuple[str, str], list[Observation]] = defaultdict(list)
        for o in closed:
            if o.outcome == "completed":
                groups[(o.workflow_id, o.task)].append(o)
        for o in still_open:
            groups[(o.workflow_id, o.task)].append(o)
        cfg = self.settings.timing
        out = []
        for (wf, task), obs in sorted(groups.items()):
            if sum(o.closed_at is not None for o in obs) < cfg.min_sample:
                continue
            tz = self._time_zone(obs)
            history = TaskHistory.from_items(
                wf, task, tz, [(o.case_id, o.enabled_at, o.dispatched_at, o.closed_at)
                               for o in obs], now)
            finding = find_window(history, cfg)
            if finding is None:
                continue
            est = anyio.run(twin_saving, self.twin, list(history.enabled),
                            fitted_responder(history, cfg.seed), finding.window)
            out.append((finding, msgspec.to_builtins(est)))
        return out

    def _time_zone(self, obs: Sequence[Observation]) -> str:
        """The zone of the people who do the task (most of them), else the default."""
        zones: dict[str, int] = defaultdict(int)
        for o in obs:  # work by nobody known (customers, imports) counts for the default
            tz = self.time_zone_of(o.by) if o.by else None
            zones[tz or self.settings.default_time_zone] += 1
        return max(sorted(zones), key=zones.__getitem__)

    async def _propose(self, findings: list[tuple[TimingFinding, dict[str, Any]]],
                       now: float) -> None:
        records: list[Record] = []
        seen: set[tuple[str, str]] = set()
        for f, est in findings:
            key = (f.workflow_id, f.task)
            seen.add(key)
            change = Change("dispatch_window", f.workflow_id, f.task, window=f.window)
            same = [r for r in self.recommendations.values()
                    if r.type == "timing_optimization" and (r.workflow_id, r.task) == key]
            if any(r.status in ("applied", "verified") for r in same):
                continue  # a window is in place; judge it by its verification first
            if any(r.change == change and r.status in ("rolled_back", "rejected")
                   for r in same):
                continue  # tried (or refused) already: do not propose it again
            saving = float(est["saving_hours"])
            if saving <= 0:
                continue  # the twin does not confirm the finding
            evidence = _timing_evidence(f, est)
            days = f.window.describe().split(" on ", 1)[1]
            desc = (f"Send new {_words(f.task)} work at {clock_label(f.window.start_hour)} "
                    f"{zone_label(f.window.time_zone)} on {days} (holding it at most "
                    f"{f.window.max_wait_hours:g}h) for {saving:.1f}h faster response")
            open_rec = next((r for r in same if r.status == "ready_to_apply"), None)
            if open_rec is not None:
                rec = msgspec.structs.replace(
                    open_rec, description=desc, confidence=round(f.confidence, 3),
                    estimated_improvement=f"{saving:.1f} hours saved per deal",
                    estimated_improvement_hours=round(saving, 2), evidence=evidence,
                    change=change, updated_at=now)
            else:
                rec = Recommendation(
                    self._next_id(), f.workflow_id, "timing_optimization", f.task, desc,
                    round(f.confidence, 3), f"{saving:.1f} hours saved per deal",
                    round(saving, 2), "ready_to_apply", evidence, change, now, now)
            self.recommendations[rec.id] = rec
            records.append(record(now, "recommendation", rec.id, rec))
            records.append(record(now, "model", f"{f.workflow_id}/{f.task}", f))
            records.append(record(now, "audit", rec.id, Audit(
                "updated" if open_rec is not None else "proposed", "mapek")))
        for r in list(self.recommendations.values()):
            if (r.type == "timing_optimization" and r.status == "ready_to_apply"
                    and (r.workflow_id, r.task) not in seen):
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
                          "policy")
        now = self.now()
        version = self.book.apply(rec.change, now, f"{rid} applied by {by}", rid)  # PolicyError
        done = msgspec.structs.replace(rec, status="applied", applied_version=version.version,
                                       applied_at=now, updated_at=now)
        self.recommendations[rid] = done
        await self._write([record(now, "policy", str(version.version), version),
                           record(now, "recommendation", rid, done),
                           record(now, "audit", rid, Audit("applied", by,
                                                           policy_version=version.version))])
        return done

    async def rollback(self, rid: str, by: str, note: str = "") -> Recommendation:
        async with self._lock:
            return await self._rollback(rid, by, note)

    async def _rollback(self, rid: str, by: str, note: str = "",
                        verification: dict[str, Any] | None = None) -> Recommendation:
        rec = self.get(rid)
        if rec.status not in ("applied", "verified") or rec.applied_version is None:
            raise Refused(f"recommendation {rid} is {rec.status}; only an applied one can "
                          "be rolled back")
        now = self.now()
        version = self.book.restore(rec.applied_version - 1, now,
                                    f"{rid} rolled back by {by}", rid)
        done = msgspec.structs.replace(rec, status="rolled_back", updated_at=now,
                                       verification=verification or rec.verification)
        self.recommendations[rid] = done
        notices = self.notify(done, note) if self.notify is not None and by == "mapek" \
            else None
        await self._write([record(now, "policy", str(version.version), version),
                           record(now, "recommendation", rid, done),
                           record(now, "audit", rid, Audit("rolled_back", by, note,
                                                           version.version))], notices)
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
                await self._apply(rec.id, "mapek (auto-apply)")

    # -------------------------------------------------------------------- verify
    async def _verify(self, closed: list[Observation], now: float) -> None:
        s = self.settings
        for rec in list(self.recommendations.values()):
            if rec.status != "applied" or rec.applied_at is None or rec.task is None:
                continue
            mine = [o for o in closed if o.outcome == "completed"
                    and (o.workflow_id, o.task) == (rec.workflow_id, rec.task)]
            after = [o.hours(now) for o in mine if o.enabled_at >= rec.applied_at]
            if len(after) < s.verify_after:
                continue
            before = sorted((o for o in mine if o.closed_at is not None
                             and o.closed_at <= rec.applied_at), key=lambda o: o.enabled_at)
            before_h = [o.hours(now) for o in before[-max(len(after), s.verify_after):]]
            if len(before_h) < s.verify_after:
                continue
            realized = float(np.mean(before_h) - np.mean(after))
            estimate = rec.estimated_improvement_hours or 0.0
            verdict = {"items_before": len(before_h), "items_after": len(after),
                       "mean_hours_before": round(float(np.mean(before_h)), 3),
                       "mean_hours_after": round(float(np.mean(after)), 3),
                       "realized_saving_hours": round(realized, 3),
                       "estimated_saving_hours": estimate,
                       "tolerance": s.verify_tolerance, "measured_at": now}
            if realized >= estimate * (1.0 - s.verify_tolerance):
                done = msgspec.structs.replace(rec, status="verified", verification=verdict,
                                               updated_at=now)
                self.recommendations[rec.id] = done
                await self._write([record(now, "recommendation", rec.id, done),
                                   record(now, "audit", rec.id, Audit(
                                       "verified", "mapek",
                                       f"realized {realized:.2f}h vs estimated "
                                       f"{estimate:.2f}h"))])
            else:
                await self._rollback(rec.id, "mapek",
                                     f"realized {realized:.2f}h saved against an estimate "
                                     f"of {estimate:.2f}h (tolerance "
                                     f"{s.verify_tolerance:.0%})", verdict)


def _timing_evidence(f: TimingFinding, est: dict[str, Any]) -> dict[str, Any]:
    return {
        "method": "split-half counterfactual: one half of the cases chose the window, the "
                  "other measured it (bootstrap); saving estimated in the twin with common "
                  "random numbers",
        "sample_size": f.n, "choosing_half": f.n_choose, "measuring_half": f.n_measure,
        "baseline_hours": round(f.baseline_hours, 3),
        "saving_hours_measured": round(f.saving_hours, 3),
        "saving_interval_90": [round(f.interval[0], 3), round(f.interval[1], 3)],
        "confidence": round(f.confidence, 3),
        "confidence_means": f"P(saving > {f.threshold_hours:.2f}h) over the bootstrap",
        "held_share": round(f.held_share, 3),
        "window_median_response_hours": round(f.window_median_hours, 3),
        "elsewhere_median_response_hours": round(f.elsewhere_median_hours, 3),
        "twin": {k: round(v, 3) if isinstance(v, float) else v for k, v in est.items()},
        "time_zone": f.window.time_zone,
    }


def _words(task: str) -> str:
    """'SendForSignature' -> '"Send For Signature"': the task as people read it."""
    return '"' + re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", task).replace("_", " ") + '"'


__all__ = ["LoopSettings", "MapeK", "NotFound", "Refused"]
