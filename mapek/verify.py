"""Verify: did an applied policy do what its recommendation said?

Theory of operation
-------------------
After `verify_after` work items of the task have run under a policy, the realized
effect is measured on the live history and set against the estimate:

- a dispatch window: the task's mean hours (enabled -> closed) over the latest items
  closed before the change against the items enabled since; the saving must reach the
  estimate less the tolerance.
- a routing change: the same, but after the change only the items the people kept
  did count. Work assigned before the change still reaches the avoided people for a
  while (a lead assigned last week is a deal this week); what the policy promises is
  the steady state in which the others do all of it -- and the risk it runs is that
  the others slow down under the extra load, which these items show. The avoided
  people's share of the new items is reported, so one sees the routing take hold.
- an escalation claims no hours (what a role does with an earlier alert cannot be
  seen in history), only that the task breaches less: its breach share over mature
  items (enabled at least a target ago, each outcome known) before against after must
  not get worse by more than the tolerance (relative).

None while too few items have run under the policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np

from .knowledge import Recommendation
from .monitor import Observation


class Verdict(msgspec.Struct, frozen=True):
    passed: bool
    details: dict[str, Any]
    summary: str  # the audit note (and the rollback notification's reason)


def judge(rec: Recommendation, closed: Sequence[Observation],
          still_open: Sequence[Observation], now: float, verify_after: int,
          tolerance: float) -> Verdict | None:
    kind = rec.change.kind if rec.change is not None else None
    if kind == "escalation":
        return _escalation(rec, closed, still_open, now, verify_after, tolerance)
    avoid = set(rec.change.avoid) if rec.change is not None and kind == "routing" else set()
    return _saving(rec, closed, now, verify_after, tolerance, avoid)


def _saving(rec: Recommendation, closed: Sequence[Observation], now: float,
            verify_after: int, tolerance: float, avoid: set[str]) -> Verdict | None:
    assert rec.applied_at is not None
    mine = [o for o in closed if o.outcome == "completed"
            and (o.workflow_id, o.task) == (rec.workflow_id, rec.task)]
    new = [o for o in mine if o.enabled_at >= rec.applied_at]
    after = [o.hours(now) for o in new if o.by not in avoid]
    if len(after) < verify_after:
        return None
    before = sorted((o for o in mine if o.closed_at is not None
                     and o.closed_at <= rec.applied_at), key=lambda o: o.enabled_at)
    before_h = [o.hours(now) for o in before[-max(len(after), verify_after):]]
    if len(before_h) < verify_after:
        return None
    realized = float(np.mean(before_h) - np.mean(after))
    estimate = rec.estimated_improvement_hours or 0.0
    details: dict[str, Any] = {
        "items_before": len(before_h), "items_after": len(after),
        "mean_hours_before": round(float(np.mean(before_h)), 3),
        "mean_hours_after": round(float(np.mean(after)), 3),
        "realized_saving_hours": round(realized, 3), "estimated_saving_hours": estimate,
        "tolerance": tolerance, "measured_at": now}
    if avoid:
        details["avoided_share_after"] = round(
            sum(o.by in avoid for o in new) / len(new), 3)
        details["avoided_share_before"] = round(
            sum(o.by in avoid for o in before[-len(before_h):]) / len(before_h), 3)
    if realized >= estimate * (1.0 - tolerance):
        return Verdict(True, details, f"realized {realized:.2f}h vs estimated "
                                      f"{estimate:.2f}h")
    return Verdict(False, details, f"realized {realized:.2f}h saved against an estimate "
                                   f"of {estimate:.2f}h (tolerance {tolerance:.0%})")


def _escalation(rec: Recommendation, closed: Sequence[Observation],
                still_open: Sequence[Observation], now: float, verify_after: int,
                tolerance: float) -> Verdict | None:
    assert rec.applied_at is not None
    target = float(rec.evidence.get("target_hours") or 0.0)
    if target <= 0:
        return None
    key = (rec.workflow_id, rec.task)
    cut = now - target * 3600.0  # enabled by then: the outcome is known now

    def outcomes(items: Sequence[Observation]) -> list[tuple[float, bool]]:
        out = []
        for o in items:
            if (o.workflow_id, o.task) != key or o.enabled_at > cut:
                continue
            breach = o.hours(now) > target
            if o.outcome == "completed" or breach:  # a cancellation in time says nothing
                out.append((o.enabled_at, breach))
        return out

    known = sorted(outcomes(closed) + outcomes(still_open))
    after = [b for t, b in known if t >= rec.applied_at]
    if len(after) < verify_after:
        return None
    before = [b for t, b in known if t < rec.applied_at][-max(len(after), verify_after):]
    if len(before) < verify_after:
        return None
    share_before, share_after = float(np.mean(before)), float(np.mean(after))
    details = {"items_before": len(before), "items_after": len(after),
               "breach_share_before": round(share_before, 4),
               "breach_share_after": round(share_after, 4),
               "realized_reduction": round(share_before - share_after, 4),
               "target_hours": target, "tolerance": tolerance, "measured_at": now}
    if share_after <= share_before * (1.0 + tolerance):
        return Verdict(True, details, f"breach share {share_after:.0%} after vs "
                                      f"{share_before:.0%} before")
    return Verdict(False, details, f"breach share rose to {share_after:.0%} from "
                                   f"{share_before:.0%} (tolerance {tolerance:.0%})")


__all__ = ["Verdict", "judge"]
