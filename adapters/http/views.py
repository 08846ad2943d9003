"""Cases and their logs as the API shows them.

The API keeps the tutorial's names for events (TaskEnabled, TaskCompleted, ...)
while the engine's log says WorkItemEnabled, WorkItemCompleted: the log is the
engine's, the vocabulary at the API is the user's.
"""

from __future__ import annotations

from typing import Any

from engine import Case
from engine.net import KIND_NAME

from .bodies import CaseView, HistoryEvent, WorkItemView
from .codec import iso, stamp

API_NAME = {
    "WorkItemEnabled": "TaskEnabled",
    "WorkItemStarted": "TaskStarted",
    "WorkItemCompleted": "TaskCompleted",
    "WorkItemCancelled": "TaskCancelled",
    "WorkItemFailed": "TaskFailed",
    "WorkItemRetried": "TaskRetried",
    "WorkItemReassigned": "TaskReassigned",
    "TaskFired": "TaskRouted",  # an empty (routing) task fired
    "CaseHandedOn": "WorkflowEntered",
}


def case_view(case: Case) -> CaseView:
    tasks = case.net.tasks
    items = []
    for it in case.work_items():
        t = tasks[it.task]
        items.append(WorkItemView(it.id, t.id, KIND_NAME[t.kind], it.state, t.role, it.by,
                                  stamp(it.enabled_at), iso(it.due)))
    return CaseView(case.case_id, case.net.workflow_id, case.net.version, case.status,
                    case.enabled_tasks(), items, stamp(case.created_at),
                    iso(case.closed_at), case.data)


def history_events(events: list[Any]) -> tuple[list[HistoryEvent], str]:
    """-> (the events as the API names them, the workflow the case is in now)."""
    out: list[HistoryEvent] = []
    task_of: dict[int, str] = {}
    workflow = ""
    at = 0.0
    for seq, e in enumerate(events, 1):
        name = type(e).__name__
        at = getattr(e, "at", at)  # a TimerSet is set when the event before it happened
        h = HistoryEvent(seq, API_NAME.get(name, name), stamp(at))
        item = getattr(e, "item", None)
        if item is not None:
            h.item = item
            if name == "WorkItemEnabled":
                task_of[item] = e.task
            h.task = task_of.get(item)
        if name in ("CaseCreated", "CaseHandedOn"):
            workflow = h.workflow_id = e.workflow_id
            h.data = e.data if name == "CaseCreated" else e.defaults
        elif name == "SlaBreached":
            h.task = e.task  # the task, or the workflow for a stay in it (item 0)
        elif name == "TaskFired":
            h.task = e.task
            h.data = e.output
        elif name == "WorkItemCompleted":
            h.result, h.by, h.data = e.result, e.by, e.output
        elif name in ("WorkItemStarted", "WorkItemRetried", "WorkItemReassigned"):
            h.by = e.by
        elif name == "TimerSet":
            h.due = iso(e.due)
        elif name == "CaseCompleted":
            h.workflow_id = e.hand_on_to
        reason = getattr(e, "reason", None)
        if reason is not None:
            h.reason = reason
        out.append(h)
    return out, workflow
