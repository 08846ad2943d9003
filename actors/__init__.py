"""caseloop's runtime: one lightweight actor per live case (anyio), timers, actions.

Imports the engine only; stores, clocks and policies come in through `actors.ports`.
"""

from .actions import ActionContext, ActionRegistry, Incident, RetryPolicy, placeholder_actions
from .clock import VirtualClock
from .ports import Append, AppendConflict, Clock, EventStore
from .runtime import ActorFault, CaseExists, CaseNotFound, Runtime, WorkflowNotFound

__all__ = [
    "ActionContext",
    "ActionRegistry",
    "ActorFault",
    "Append",
    "AppendConflict",
    "CaseExists",
    "CaseNotFound",
    "Clock",
    "EventStore",
    "Incident",
    "RetryPolicy",
    "Runtime",
    "VirtualClock",
    "WorkflowNotFound",
    "placeholder_actions",
]
