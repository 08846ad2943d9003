"""Events -> projection rows, computed where the net is known (the actor), so stores
stay dumb: they write the rows they are given in the same transaction as the events."""

from __future__ import annotations

from typing import Any

from engine import Case
from engine.events import (
    EVENT_TYPES,
    CaseCancelled,
    CaseCompleted,
    CaseCreated,
    CaseFailed,
    CaseHandedOn,
    SlaBreached,
    SlaResolved,
)
from engine.net import KIND_NAME

from .ports import CaseRow, ItemRow, PhaseChange

_CLOSED = {CaseCompleted: "completed", CaseCancelled: "cancelled", CaseFailed: "failed"}
# The events whose `item` names a work item whose row they change: every event type
# with an `item` field but the SLA records, which leave their item's row as it is.
# A set of types, tested once per event, rather than a getattr with a default.
_ITEM_EVENTS = frozenset(t for t in EVENT_TYPES if "item" in t.__struct_fields__) - {
    SlaBreached, SlaResolved}
_OPENS = (CaseCreated, CaseHandedOn)


def case_row(case: Case, now: float) -> CaseRow:
    return CaseRow(case.case_id, case.net.workflow_id, case.net.version, case.status,
                   case.created_at, now, case.closed_at, case.version)


def changes(case: Case, events: list[Any],
            ) -> tuple[list[ItemRow], list[int], list[PhaseChange] | None]:
    """The projection rows a command's events imply, in one pass over them: work items
    to upsert (the open ones they touched) and to delete (the closed), and the phases
    the case entered or left (None: none)."""
    touched: dict[int, None] = {}
    phases = None
    for e in events:
        t = type(e)
        if t in _ITEM_EVENTS:
            touched[e.item] = None
        elif t in _OPENS:
            (phases := phases or []).append(PhaseChange("open", e.at, e.workflow_id,
                                                        e.version))
        elif t in _CLOSED:
            (phases := phases or []).append(PhaseChange("close", e.at,
                                                        outcome=_CLOSED[t]))
    upserts: list[ItemRow] = []
    deletes: list[int] = []
    if touched:
        items = case.items
        tasks = case.net.tasks
        case_id = case.case_id
        for iid in touched:
            it = items.get(iid)
            if it is None:
                deletes.append(iid)
                continue
            k = tasks[it.task]
            upserts.append(ItemRow(case_id, iid, k.id, KIND_NAME[k.kind], k.role, it.state,
                                   it.enabled_at, it.due, it.by, it.held_until))
    return upserts, deletes, phases
