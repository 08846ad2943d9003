"""Escalation: alert earlier, to someone who can act, when a task's SLO breaches can be
seen coming.

Theory of operation
-------------------
A work item breaches its task's SLO when it takes longer than the target from being
offered. An escalation raises the alert at a checkpoint before that, for the items
still open then, and tells a role that can act on them (the performers' manager, or a
role that may do the work itself). It is worth proposing when two things hold:

1. The task breaches more often than its compliance target allows. Among mature items
   (enabled at least a target ago, so each outcome is known: closed within or over
   the target, or still open past it -- a breach), k of n breached. The confidence is
   1 - p of the exact one-sided binomial test against the allowed share
   1 - compliance_target: for a task that meets its SLO, P(confidence >= c) <= 1 - c.
2. The breaches can be told apart early. An alert at checkpoint t (a quarter, half or
   three quarters of the target) flags the items still open at t -- every breach among
   them. It helps when most flagged items do go on to breach (precision >=
   `min_precision`) and it flags a minority of the work (<= `max_flagged`): an alert on
   most items is a blanket notice, and a task that nearly always breaches needs
   capacity or another target, not an escalation. The precision's confidence is the
   one-sided binomial test against `min_precision`, Bonferroni-corrected for the
   checkpoints tried; the earliest checkpoint that passes wins (the most lead time).

The recommendation's confidence is the smaller of the two. What an earlier alert does
to the breach rate depends on what the role does with it, which history cannot show,
so no hours are claimed: the estimate is what the alert is -- how much earlier at-risk
work is seen, how many alerts a week, how many of them real. After apply the loop
compares the breach share before and after (mapek.loop); worse beyond tolerance is
rolled back.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np

from .analyze import MAX_ITEMS, ItemFrame
from .stats import CLAIM, MIN_SAMPLE, Estimate, wilson


class SloTerms(msgspec.Struct, frozen=True):
    """A task's SLO as the planner uses it (slos.yaml: adapters.slas.SlaBook.terms)."""

    target_hours: float
    alert_hours: float
    compliance_target: float = 0.95


class EscalationConfig(msgspec.Struct, frozen=True):
    min_sample: int = 100  # mature items with a known outcome below which nothing is said
    checkpoints: tuple[float, ...] = (0.25, 0.5, 0.75)  # shares of the target
    min_precision: float = 0.5  # at least one flagged item in two goes on to breach
    max_flagged: float = 0.5  # flag at most half the work
    claim: float = CLAIM


_DEFAULT = EscalationConfig()


class EscalationFinding(msgspec.Struct):
    workflow_id: str
    task: str
    role: str | None  # the task's role
    to_role: str  # whom the earlier alert reaches
    terms: SloTerms
    n: int  # mature items with a known outcome
    breaches: int
    breach_share: Estimate  # Wilson interval
    breach_confidence: float  # 1 - p: breaching more than the compliance target allows
    after_hours: float  # the checkpoint: alert when still open this long
    flagged: int  # items still open at the checkpoint
    flagged_share: float
    precision: Estimate  # breaches / flagged, Wilson interval
    precision_confidence: float  # 1 - p (Bonferroni over checkpoints): precision > minimum
    confidence: float
    alerts_per_week: float
    span_days: float


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), exactly (log-space sum of the pmf)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    j = np.arange(k, n + 1, dtype=float)
    lg = np.vectorize(math.lgamma)
    log_pmf = (math.lgamma(n + 1) - lg(j + 1) - lg(n - j + 1)
               + j * math.log(p) + (n - j) * math.log1p(-p))
    top = float(log_pmf.max())
    return min(1.0, math.exp(top) * float(np.exp(log_pmf - top).sum()))


def find_escalation(frame: ItemFrame, workflow_id: str, task: str, terms: SloTerms,
                    to_role: str, role: str | None = None,
                    cfg: EscalationConfig = _DEFAULT) -> EscalationFinding | None:
    """The earliest useful alert for a task that breaches its SLO, or None."""
    target = terms.target_hours
    idx = frame.of(workflow_id, task)
    if idx.size == 0 or target <= 0:
        return None
    enabled = frame.enabled[idx]
    mature = enabled <= frame.now - target * 3600.0
    idx, enabled = idx[mature], enabled[mature]
    closed = frame.closed[idx]
    is_open = np.isnan(closed)
    hours = (np.where(is_open, frame.now, closed) - enabled) / 3600.0
    breach = hours > target
    # A cancelled item within target says nothing about how long it would have taken.
    known = frame.completed[idx] | breach
    order = np.argsort(enabled[known], kind="stable")[-MAX_ITEMS:]  # the latest
    hours, breach = hours[known][order], breach[known][order]
    enabled = enabled[known][order]
    n, k = int(hours.size), int(breach.sum())
    if n < max(cfg.min_sample, MIN_SAMPLE) or k == 0:
        return None
    allowed = 1.0 - terms.compliance_target
    rate_conf = 1.0 - binomial_tail(k, n, allowed)
    if k / n <= allowed or rate_conf < cfg.claim:
        return None
    tries = [f * target for f in cfg.checkpoints if f * target < min(target, terms.alert_hours)]
    for after in tries:
        flagged = hours > after
        m = int(flagged.sum())  # every breach is flagged: it was open at `after`
        if m < MIN_SAMPLE or m / n > cfg.max_flagged or k / m < cfg.min_precision:
            continue
        p = min(1.0, binomial_tail(k, m, cfg.min_precision) * len(tries))
        if 1.0 - p < cfg.claim:
            continue
        share, precision = wilson(k, n), wilson(k, m)
        assert share is not None and precision is not None
        span = max(float(enabled.max() - enabled.min()) / 86400.0, 1.0)
        return EscalationFinding(
            workflow_id, task, role, to_role, terms, n, k,
            msgspec.structs.replace(share, confidence=rate_conf), rate_conf, after, m,
            m / n, msgspec.structs.replace(precision, confidence=1.0 - p), 1.0 - p,
            min(rate_conf, 1.0 - p), m / span * 7.0, span)
    return None


__all__ = ["EscalationConfig", "EscalationFinding", "SloTerms", "binomial_tail",
           "find_escalation"]
