"""Policies: what the MAPE-K loop may change in how work is dispatched and routed.

Theory of operation
-------------------
A `PolicyVersion` is the whole policy at one moment: a list of `TaskPolicy` entries,
one per (workflow, task) that deviates from the default (dispatch at once, route to
anyone of the role, escalate per slos.yaml). Versions are immutable and numbered;
applying a change makes a new version from the current one plus the change, rolling
back one change makes a new version from the current one with that change's part of
its task as it was before the change (`undo`; `restore` brings back a whole earlier
version). Nothing is edited in place, so the history is the audit trail, and the
knowledge log stores each version as it is made.

`PolicyBook` is what the runtime consults, through the ports actors/ defines:
`hold_until` (actors.ports.DispatchPolicy), `rule` (actors.ports.RoutingPolicy) and
`escalation` (actors.ports.EscalationPolicy, read by the SLA policy when it arms a
task's deadline). Each is a dict lookup for tasks without a policy, so the hot path
pays nothing for the loop's existence.

Routing acts where a person is chosen. A human task is offered to its role; the only
choice of a person the runtime makes is an assignment task (`assign_least_loaded`),
and its choice decides who works *later* tasks: the SDR a lead is assigned to owns
the deal and works its SDR tasks. So a routing policy for a measured task names the
assignment that decides its performer (`assigned_at`, "workflow/Task"), and the book
indexes every routing policy under the assignment it acts through: `rule` asked by
that assignment returns the merged rule (avoided by any policy: avoided). A policy
without `assigned_at` acts on the task itself (an assignment task's own rule).

An `Escalation` moves a task's alert earlier for new work items: the SLA breach is
raised `after_hours` from enabling (its `alert` says so) and the people of `to_role`
hear of it with the usual recipients.

A `DispatchWindow` holds new work until a daily window opens in a time zone (2pm to
4pm Pacific on weekdays), unless that would mean waiting longer than `max_wait_hours`:
a hold is only worth it when the faster response in the window repays the wait, and
the planner chose `max_wait_hours` so that it does.

`Change` is the machine-readable part of a recommendation: what `apply` does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from actors.ports import EscalationRule, RoutingRule

WEEKDAYS = (0, 1, 2, 3, 4)
_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class PolicyError(ValueError):
    """A change that cannot be applied (unknown time zone, empty window, ...)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class DispatchWindow(msgspec.Struct, frozen=True):
    start_hour: int  # local hour the window opens, 0..23
    hours: int  # how long it stays open
    time_zone: str  # IANA name, e.g. America/Los_Angeles
    weekdays: tuple[int, ...] = WEEKDAYS  # Monday = 0
    max_wait_hours: float = 24.0  # never hold longer than this: dispatch at once instead

    def check(self) -> None:
        if not 0 <= self.start_hour <= 23:
            raise PolicyError("start_hour must be 0..23", "change.window.start_hour")
        if not 1 <= self.hours <= 24:
            raise PolicyError("hours must be 1..24", "change.window.hours")
        if not self.weekdays or any(not 0 <= d <= 6 for d in self.weekdays):
            raise PolicyError("weekdays must be 0 (Monday) .. 6", "change.window.weekdays")
        if not self.max_wait_hours > 0:
            raise PolicyError("max_wait_hours must be positive",
                              "change.window.max_wait_hours")
        _zone(self.time_zone)

    def release(self, at: float) -> float | None:
        """When an item enabled at `at` may be dispatched: None means now (inside the
        window, or the next opening is further than `max_wait_hours`)."""
        tz = _zone(self.time_zone)
        local = datetime.fromtimestamp(at, tz)
        if local.weekday() in self.weekdays and self._inside(local.hour):
            return None
        for days in range(8):
            d = (local + timedelta(days=days)).date()
            opening = datetime(d.year, d.month, d.day, self.start_hour, tzinfo=tz)
            if opening.weekday() in self.weekdays and opening.timestamp() > at:
                until = opening.timestamp()
                return until if until - at <= self.max_wait_hours * 3600.0 else None
        return None

    def _inside(self, hour: int) -> bool:
        return (hour - self.start_hour) % 24 < self.hours

    def describe(self) -> str:
        """'2pm to 4pm PT on weekdays', in words a sales manager reads."""
        days = ("weekdays" if tuple(sorted(self.weekdays)) == WEEKDAYS else
                ", ".join(_DAY_NAMES[d] for d in sorted(self.weekdays)))
        end = clock_label((self.start_hour + self.hours) % 24)
        return f"{clock_label(self.start_hour)} to {end} {zone_label(self.time_zone)} on {days}"


class Escalation(msgspec.Struct, frozen=True):
    after_hours: float  # alert this early (before the SLO's own alert threshold)
    to_role: str  # whom the alert goes to

    def check(self) -> None:
        if not (self.after_hours > 0 and math.isfinite(self.after_hours)):
            raise PolicyError("after_hours must be a positive number of hours",
                              "change.escalation.after_hours")
        if not self.to_role:
            raise PolicyError("to_role names the role that hears the alert",
                              "change.escalation.to_role")


class TaskPolicy(msgspec.Struct, frozen=True):
    workflow_id: str
    task: str
    dispatch: DispatchWindow | None = None
    prefer: tuple[str, ...] = ()
    avoid: tuple[str, ...] = ()
    escalation: Escalation | None = None
    assigned_at: str | None = None  # "workflow/Task": the assignment prefer/avoid act at

    def is_default(self) -> bool:
        return (self.dispatch is None and not self.prefer and not self.avoid
                and self.escalation is None)


class Change(msgspec.Struct, frozen=True, omit_defaults=True):
    """One policy change for one task. `kind` says which part of its TaskPolicy it sets;
    a part set to nothing (window None, empty prefer/avoid) restores the default."""

    kind: Literal["dispatch_window", "routing", "escalation"]
    workflow_id: str
    task: str
    window: DispatchWindow | None = None
    prefer: tuple[str, ...] = ()
    avoid: tuple[str, ...] = ()
    escalation: Escalation | None = None
    assigned_at: str | None = None  # routing: "workflow/Task" of the deciding assignment

    def check(self) -> None:
        if self.window is not None:
            self.window.check()
        if set(self.prefer) & set(self.avoid):
            raise PolicyError("a person cannot be both preferred and avoided",
                              "change.prefer")
        if self.assigned_at is not None and _point(self.assigned_at) is None:
            raise PolicyError("assigned_at names an assignment task as 'workflow/Task'",
                              "change.assigned_at")
        if self.escalation is not None:
            self.escalation.check()

    def applied_to(self, cur: TaskPolicy) -> TaskPolicy:
        if self.kind == "dispatch_window":
            return msgspec.structs.replace(cur, dispatch=self.window)
        if self.kind == "routing":
            routed = bool(self.prefer or self.avoid)
            return msgspec.structs.replace(cur, prefer=self.prefer, avoid=self.avoid,
                                           assigned_at=self.assigned_at if routed else None)
        return msgspec.structs.replace(cur, escalation=self.escalation)

    def undone_on(self, cur: TaskPolicy, before: TaskPolicy) -> TaskPolicy:
        """`cur` with the part this change sets as it was in `before` (the task's policy
        when the change was applied); the parts other changes set stay as they are."""
        if self.kind == "dispatch_window":
            return msgspec.structs.replace(cur, dispatch=before.dispatch)
        if self.kind == "routing":
            return msgspec.structs.replace(cur, prefer=before.prefer, avoid=before.avoid,
                                           assigned_at=before.assigned_at)
        return msgspec.structs.replace(cur, escalation=before.escalation)


class PolicyVersion(msgspec.Struct, frozen=True):
    version: int
    at: float
    reason: str
    tasks: tuple[TaskPolicy, ...] = ()
    recommendation: str | None = None  # the recommendation that caused it, if any
    based_on: int = 0  # the version it was made from (a rollback names its target)


class PolicyBook:
    """The current policy and its history; the runtime's dispatch, routing and escalation
    port."""

    def __init__(self, history: Iterable[PolicyVersion] = ()) -> None:
        self.history: list[PolicyVersion] = [PolicyVersion(0, 0.0, "default: no policy")]
        self._index: dict[tuple[str, str], TaskPolicy] = {}
        self._rules: dict[tuple[str, str], RoutingRule] = {}  # by assignment point
        self._escalations: dict[tuple[str, str], EscalationRule] = {}
        for v in history:
            self._install(v)

    @property
    def current(self) -> PolicyVersion:
        return self.history[-1]

    def _install(self, v: PolicyVersion) -> None:
        if v.version == 0:
            return  # the default is always there
        if v.version != self.current.version + 1:
            raise ValueError(f"policy version {v.version} after {self.current.version}")
        self.history.append(v)
        self._follow(v)

    def withdraw(self, v: PolicyVersion) -> None:
        """Take back the version just made (its record could not be written): the one
        before is in force again, and the next version gets its number."""
        if self.history[-1] is not v or v.version == 0:
            raise ValueError(f"policy version {v.version} is not the last one made")
        self.history.pop()
        self._follow(self.current)

    def _follow(self, v: PolicyVersion) -> None:
        """What the runtime consults, from version `v`."""
        self._index = {(t.workflow_id, t.task): t for t in v.tasks}
        self._rules = _rules_by_assignment(v.tasks)
        self._escalations = {
            (t.workflow_id, t.task): EscalationRule(t.escalation.after_hours * 3600.0,
                                                    t.escalation.to_role, v.version)
            for t in v.tasks if t.escalation is not None}

    def version(self, n: int) -> PolicyVersion:
        if not 0 <= n < len(self.history):
            raise KeyError(n)
        return self.history[n]

    def task_policy(self, workflow_id: str, task: str) -> TaskPolicy:
        return self._index.get((workflow_id, task)) or TaskPolicy(workflow_id, task)

    # ------------------------------------------------------------- new versions
    def apply(self, change: Change, at: float, reason: str,
              recommendation: str | None = None) -> PolicyVersion:
        change.check()
        key = (change.workflow_id, change.task)
        return self._with(key, change.applied_to(self._task_in(self.current, key)), at,
                          reason, recommendation, self.current.version)

    def undo(self, change: Change, applied_to: int, at: float, reason: str,
             recommendation: str | None = None) -> PolicyVersion:
        """A rollback of one change that was applied to version `applied_to`: a new
        version equal to the current one except that the part of the task the change set
        is as it was in `applied_to`. Changes applied since, to other tasks or other
        parts, stay in place (restoring the whole of `applied_to` would drop them)."""
        key = (change.workflow_id, change.task)
        before = self._task_in(self.version(applied_to), key)
        return self._with(key, change.undone_on(self._task_in(self.current, key), before),
                          at, reason, recommendation, applied_to)

    @staticmethod
    def _task_in(v: PolicyVersion, key: tuple[str, str]) -> TaskPolicy:
        return next((t for t in v.tasks if (t.workflow_id, t.task) == key), None) \
            or TaskPolicy(*key)

    def _with(self, key: tuple[str, str], new: TaskPolicy, at: float, reason: str,
              recommendation: str | None, based_on: int) -> PolicyVersion:
        """The next version: the current one with `key`'s policy replaced by `new`."""
        tasks = {(t.workflow_id, t.task): t for t in self.current.tasks}
        if new.is_default():
            tasks.pop(key, None)
        else:
            tasks[key] = new
        v = PolicyVersion(self.current.version + 1, at, reason,
                          tuple(tasks[k] for k in sorted(tasks)), recommendation, based_on)
        self._install(v)
        return v

    def restore(self, version: int, at: float, reason: str,
                recommendation: str | None = None) -> PolicyVersion:
        """A new version with the content of an earlier one (a rollback)."""
        old = self.version(version)
        v = PolicyVersion(self.current.version + 1, at, reason, old.tasks, recommendation,
                          version)
        self._install(v)
        return v

    # ------------------------------------------------------------ runtime ports
    def hold_until(self, workflow_id: str, task: str, at: float) -> tuple[float, int] | None:
        p = self._index.get((workflow_id, task))
        if p is None or p.dispatch is None:
            return None
        until = p.dispatch.release(at)
        return None if until is None else (until, self.current.version)

    def rule(self, workflow_id: str, task: str) -> RoutingRule | None:
        return self._rules.get((workflow_id, task))

    def escalation(self, workflow_id: str, task: str) -> EscalationRule | None:
        return self._escalations.get((workflow_id, task))


def _point(name: str) -> tuple[str, str] | None:
    """'workflow/Task' -> (workflow, Task); None if it is not of that shape."""
    wf, sep, task = name.partition("/")
    return (wf, task) if sep and wf and task and "/" not in task else None


def _rules_by_assignment(tasks: Iterable[TaskPolicy]) -> dict[tuple[str, str], RoutingRule]:
    """Every routing policy under the assignment it acts through, merged: a person any
    policy avoids is avoided, and is preferred by none."""
    prefer: dict[tuple[str, str], set[str]] = {}
    avoid: dict[tuple[str, str], set[str]] = {}
    for t in tasks:
        if not (t.prefer or t.avoid):
            continue
        at = (_point(t.assigned_at) if t.assigned_at else None) or (t.workflow_id, t.task)
        prefer.setdefault(at, set()).update(t.prefer)
        avoid.setdefault(at, set()).update(t.avoid)
    return {at: RoutingRule(prefer=tuple(sorted(prefer[at] - avoid[at])),
                            avoid=tuple(sorted(avoid[at]))) for at in prefer}


_ZONES: dict[str, ZoneInfo] = {}
_LABELS = {"America/Los_Angeles": "PT", "America/Denver": "MT", "America/Chicago": "CT",
           "America/New_York": "ET", "Europe/London": "UK time", "UTC": "UTC"}


def _zone(name: str) -> ZoneInfo:
    z = _ZONES.get(name)
    if z is None:
        try:
            z = _ZONES[name] = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise PolicyError(f"unknown time zone {name!r}", "change.window.time_zone"
                              ) from None
    return z


def zone_label(name: str) -> str:
    return _LABELS.get(name, name)


def clock_label(hour: int) -> str:
    if hour == 0:
        return "midnight"
    if hour == 12:
        return "noon"
    return f"{hour % 12}{'am' if hour < 12 else 'pm'}"
