"""Events: the source of truth for a case. State is a fold over them.

Every event is a small frozen msgspec Struct, tagged with its class name so a log of
mixed events encodes and decodes as one union. Events record outcomes, not inputs:
which conditions a firing consumed and produced is written down, so replaying a log
never re-evaluates a guard and always rebuilds the identical state.

Conditions inside events are the compiled net's integer indices (the case is pinned
to one net version, so they are stable); tasks are named by their spec ids.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "EVENT_TYPES",
    "CaseCancelled",
    "CaseCompleted",
    "CaseCreated",
    "CaseFailed",
    "CaseHandedOn",
    "Event",
    "SlaBreached",
    "SlaResolved",
    "TaskFired",
    "TimerFired",
    "TimerSet",
    "TokensAdded",
    "TokensRemoved",
    "WorkItemCancelled",
    "WorkItemCompleted",
    "WorkItemEnabled",
    "WorkItemFailed",
    "WorkItemHeld",
    "WorkItemReassigned",
    "WorkItemRetried",
    "WorkItemStarted",
    "decode_events",
    "encode_events",
]


class _Event(msgspec.Struct, frozen=True, tag=True, gc=False, omit_defaults=True):
    pass


class CaseCreated(_Event):
    case_id: str
    workflow_id: str
    version: int
    data: dict[str, Any]
    at: float


class CaseHandedOn(_Event):
    """The same case continues in the next workflow (one id, one history)."""

    workflow_id: str
    version: int
    at: float
    defaults: dict[str, Any] | None = None  # data defaults the next workflow declares


class WorkItemEnabled(_Event):
    item: int
    task: str
    at: float
    parent: int = -1  # for an instance of a multiple-instance task
    data: dict[str, Any] | None = None  # per-instance data


class WorkItemHeld(_Event):
    """A dispatch policy holds an enabled item until `until`: nobody may take it up
    earlier (it is not in anyone's worklist and an automatic action waits)."""

    item: int
    at: float
    until: float
    policy: int = 0  # the policy version that decided the hold (audit)


class WorkItemStarted(_Event):
    item: int
    at: float
    consumed: tuple[int, ...] = ()
    by: str | None = None


class WorkItemCompleted(_Event):
    item: int
    at: float
    result: str | None = None
    output: dict[str, Any] | None = None  # what is merged into the case data
    consumed: tuple[int, ...] = ()  # non-empty when completed straight from enabled
    produced: tuple[int, ...] = ()
    by: str | None = None


class WorkItemCancelled(_Event):
    item: int
    at: float
    reason: str = "cancelled"
    consumed: tuple[int, ...] = ()  # an offered item cancelled takes its thread with it


class WorkItemFailed(_Event):
    item: int
    at: float
    reason: str = "failed"


class WorkItemRetried(_Event):
    """A failed item is taken up again (an incident resolved): it is STARTED once more."""

    item: int
    at: float
    by: str | None = None


class WorkItemReassigned(_Event):
    """A started item passes to another holder (YAWL's reallocation): the work goes on
    where it is, only who holds it changes -- e.g. an automatic action handing its item
    over to another system, whose callback completes it."""

    item: int
    at: float
    by: str | None = None


class TaskFired(_Event):
    """An empty (routing) task fired: no work item, no person."""

    task: str
    at: float
    consumed: tuple[int, ...] = ()
    produced: tuple[int, ...] = ()
    output: dict[str, Any] | None = None  # the task's output mapping, merged into data


class TokensRemoved(_Event):
    conditions: tuple[int, ...]
    at: float
    reason: str = "cancelled"
    absorbed_by: str | None = None  # a partial join that swallowed late arrivals


class TokensAdded(_Event):
    conditions: tuple[int, ...]
    at: float
    reason: str = "signal"


class TimerSet(_Event):
    item: int
    due: float


class TimerFired(_Event):
    item: int
    at: float


class SlaBreached(_Event):
    """Work ran past its SLO's alert threshold: a work item (`item` > 0, `task` its
    task) or, with `item` 0, the case's stay in its current workflow (`task` is then
    the workflow id). It changes nothing in the net -- the work goes on -- and is raised
    at most once per item (or workflow stay) until it is resolved."""

    item: int
    at: float
    task: str
    target: float  # seconds: what good looks like
    alert: float  # seconds: the threshold that was crossed


class SlaResolved(_Event):
    """The breached work ended (completed or cancelled; for item 0, the case left the
    workflow): the breach's resolution time."""

    item: int
    at: float


class CaseCompleted(_Event):
    at: float
    hand_on_to: str | None = None


class CaseCancelled(_Event):
    at: float
    reason: str = "cancelled"


class CaseFailed(_Event):
    at: float
    reason: str


Event = (
    CaseCreated
    | CaseHandedOn
    | WorkItemEnabled
    | WorkItemStarted
    | WorkItemCompleted
    | WorkItemCancelled
    | WorkItemFailed
    | WorkItemRetried
    | WorkItemReassigned
    | WorkItemHeld
    | TaskFired
    | TokensRemoved
    | TokensAdded
    | TimerSet
    | TimerFired
    | SlaBreached
    | SlaResolved
    | CaseCompleted
    | CaseCancelled
    | CaseFailed
)

EVENT_TYPES: tuple[type[_Event], ...] = Event.__args__  # type: ignore[attr-defined]

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[Event])  # type: ignore[valid-type]


def encode_events(events: list[Any]) -> bytes:
    return _encoder.encode(events)


def decode_events(blob: bytes) -> list[Any]:
    return _decoder.decode(blob)
