"""Events -> projection rows, computed where the net is known (the actor), so stores
stay dumb: they write the rows they are given in the same transaction as the events."""

from __future__ import annotations

from typing import Any

from engine import Case
from engine.events import (
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
_NOT_ITEM_CHANGES = (SlaBreached, SlaResolved)


def case_row(case: Case, now: float) -> CaseRow:
    return CaseRow(case.case_id, case.net.workflow_id, case.net.version, case.status,
                   case.created_at, now, case.closed_at, case.version)


def item_changes(case: Case, events: list[Any]) -> tuple[list[ItemRow], list[int]]:
    """Rows for the work items these events touched: upsert the open, delete the closed."""
    touched: dict[int, None] = {}
    for e in events:
        if type(e) in _NOT_ITEM_CHANGES:
            continue  # an SLA record leaves its item's row as it is
        item = getattr(e, "item", None)
        if item is not None:
            touched[item] = None
    upserts, deletes = [], []
    tasks = case.net.tasks
    for iid in touched:
        it = case.items.get(iid)
        if it is None:
            deletes.append(iid)
            continue
        t = tasks[it.task]
        upserts.append(ItemRow(case.case_id, iid, t.id, KIND_NAME[t.kind], t.role, it.state,
                               it.enabled_at, it.due, it.by, it.held_until))
    return upserts, deletes


def phase_changes(events: list[Any]) -> list[PhaseChange] | None:
    """The workflows these events entered and left, in order (None if none)."""
    out = None
    for e in events:
        t = type(e)
        if t is CaseCreated or t is CaseHandedOn:
            (out := out or []).append(PhaseChange("open", e.at, e.workflow_id, e.version))
        elif t in _CLOSED:
            (out := out or []).append(PhaseChange("close", e.at, outcome=_CLOSED[t]))
    return out
