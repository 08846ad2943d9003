"""caseloop's engine: a pure workflow state machine (no I/O, no clock, no asyncio).

    from engine import compile_document, Case

    net = compile_document(open("specs/deal-approval-gate.json").read())
    case, events = Case.create(net, "deal_1", {"deal_acv": 600_000, ...}, at=0.0)
    case.enabled_tasks()          # ['SendToSalesManager', 'SendToLegal', ...]
    events = case.complete("SendToLegal", at=60.0, result="approved")

Every command returns the events it caused; `replay(events, net)` rebuilds the case.
"""

from .case import ENABLED, FAILED, STARTED, Case, CaseSnapshot, WorkItem, replay
from .compiler import compile, compile_document
from .errors import (
    AlreadyDone,
    CaseClosed,
    ChecklistIncomplete,
    DataInvalid,
    EngineError,
    GuardFailed,
    InsufficientAuthority,
    NotEnabled,
    Problem,
    ProtectedField,
    SpecError,
    UnknownResult,
    UnknownTask,
)
from .events import EVENT_TYPES, Event, decode_events, encode_events
from .guards import Guard, GuardError, compile_guard
from .net import Net
from .soundness import Verdict, check
from .spec import WorkflowSpec, decode_spec, parse_duration

__all__ = [
    "ENABLED",
    "EVENT_TYPES",
    "FAILED",
    "STARTED",
    "AlreadyDone",
    "Case",
    "CaseClosed",
    "CaseSnapshot",
    "ChecklistIncomplete",
    "DataInvalid",
    "EngineError",
    "Event",
    "Guard",
    "GuardError",
    "GuardFailed",
    "InsufficientAuthority",
    "Net",
    "NotEnabled",
    "Problem",
    "ProtectedField",
    "SpecError",
    "UnknownResult",
    "UnknownTask",
    "Verdict",
    "WorkItem",
    "WorkflowSpec",
    "check",
    "compile",
    "compile_document",
    "compile_guard",
    "decode_events",
    "decode_spec",
    "encode_events",
    "parse_duration",
    "replay",
]
