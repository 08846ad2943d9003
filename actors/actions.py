"""Automatic tasks: named async action handlers, run outside the case actor.

A handler gets an `ActionContext` (the case id, the work item, the task's params and
a copy of the case data) and returns the completion output (a dict, optionally with
a "result" key). It runs with a timeout and a retry policy (exponential backoff with
jitter, on the runtime's clock); its result comes back to the case as an ordinary
completion message. After the last attempt the work item fails and an incident is
recorded. The jitter's randomness is injected, so a simulation is repeatable.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec


class ActionContext(msgspec.Struct):
    case_id: str
    item: int
    task: str
    action: str
    params: dict[str, Any]
    data: dict[str, Any]
    attempt: int
    now: float
    workflow_id: str = ""


class _AwaitCallback:
    """What a handler returns when it handed the work to another system (an
    e-signature service, a billing system): the work item stays open, claimed by the
    action, until the system's callback completes it (a signal to the case)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "AWAIT_CALLBACK"


AWAIT_CALLBACK: Any = _AwaitCallback()
AWAITING = "awaiting:"  # prefix of the claim of an item whose callback is awaited

Handler = Callable[[ActionContext], Awaitable[dict[str, Any] | None]]


class RetryPolicy(msgspec.Struct, frozen=True):
    attempts: int = 4  # tries in all
    timeout: float = 30.0  # seconds per try
    base_delay: float = 1.0  # first backoff, doubled each retry
    max_delay: float = 300.0
    jitter: float = 0.25  # +- fraction of the delay

    def delay(self, attempt: int, rng: random.Random) -> float:
        d = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return max(0.0, d * (1 + self.jitter * (2 * rng.random() - 1)))


class Incident(msgspec.Struct):
    case_id: str
    item: int
    task: str
    action: str
    attempts: int
    error: str
    at: float


class ActionRegistry:
    def __init__(self, retry: RetryPolicy | None = None, seed: int | None = None) -> None:
        self._handlers: dict[str, Handler] = {}
        self._delays: dict[str, float] = {}
        self._callbacks: set[str] = set()  # actions that hand work to another system
        self.retry = retry or RetryPolicy()
        self.rng = random.Random(seed)

    def register(self, name: str, handler: Handler, *, delay: float | None = None,
                 callback: bool = False) -> None:
        """`delay`: seconds the runtime waits (on its clock) before running the
        handler -- a deployment's setting, overriding the spec's `params.delay`.
        `callback`: the handler hands the work to another system (AWAIT_CALLBACK), whose
        callback completes the item -- and may arrive before the hand-over is written."""
        self._handlers[name] = handler
        if delay is None:
            self._delays.pop(name, None)
        else:
            self._delays[name] = delay
        if callback:
            self._callbacks.add(name)
        else:
            self._callbacks.discard(name)

    def awaits_callback(self, name: str | None) -> bool:
        return name in self._callbacks

    def delay(self, name: str) -> float | None:
        return self._delays.get(name)

    def action(self, name: str) -> Callable[[Handler], Handler]:
        """Decorator form of `register`."""
        def deco(fn: Handler) -> Handler:
            self.register(name, fn)
            return fn
        return deco

    def get(self, name: str) -> Handler | None:
        return self._handlers.get(name)

    def names(self) -> list[str]:
        return sorted(self._handlers)


# --- placeholders -------------------------------------------------------------------
# The pipeline's real actions (ICP scoring, least-loaded assignment, e-signature and
# invoicing webhooks) belong to the pipeline issue. Until then these PLACEHOLDERS let
# the runtime drive the five specs end to end; each says what it stands in for.


async def _placeholder_complete(ctx: ActionContext) -> dict[str, Any]:
    """PLACEHOLDER: completes at once with no output."""
    return {}


async def _placeholder_icp_score(ctx: ActionContext) -> dict[str, Any]:
    """PLACEHOLDER for ICP scoring: a rough size-and-intent score, not the ICP profile."""
    d = ctx.data
    size = d.get("company_size") or 0
    score = 20 + (40 if size >= 5000 else 25 if size >= 500 else 10 if size >= 100 else 0)
    score += 12 if d.get("use_case") else 0
    return {"lead_score": min(100, score)}


PLACEHOLDER_ACTIONS = (
    "icp_score", "assign_least_loaded", "archive_lead", "record_approvals",
    "prepare_contract", "e_signature", "setup_procurement", "send_invoice",
    "book_revenue", "setup_billing",
)


async def _placeholder_signed(ctx: ActionContext) -> dict[str, Any]:
    """PLACEHOLDER for the e-signature service: the customer signs at once (the task
    lists its results: signed, declined, expired)."""
    return {"result": "signed"}


def placeholder_actions(registry: ActionRegistry | None = None) -> ActionRegistry:
    reg = registry or ActionRegistry()
    for name in PLACEHOLDER_ACTIONS:
        reg.register(name, _placeholder_icp_score if name == "icp_score"
                     else _placeholder_signed if name == "e_signature"
                     else _placeholder_complete)
    return reg
