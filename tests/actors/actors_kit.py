"""Shared helpers for the runtime tests (real SQLite files, virtual clock, no mocks)."""

from __future__ import annotations

import contextlib
import functools
import pathlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

import anyio

from actors import ActionRegistry, Runtime, VirtualClock
from adapters.sqlite_store import SQLiteStore
from engine import Case, Net, compile_document, replay
from engine.events import WorkItemCompleted, WorkItemEnabled

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
PIPELINE = ("lead-qualification", "deal-approval-gate", "contract-processing",
            "pricing-exception", "revenue-recognition")
HUMAN_APPROVALS = ("SendToSalesManager", "SendToLegal", "SendToFinance", "ExecutiveCheck")

DEAL_600K = {"deal_name": "TechCorp Enterprise Analytics", "customer_name": "TechCorp",
             "deal_acv": 600000, "discount_percent": 0}
TECHCORP_LEAD = {
    "company_name": "TechCorp", "contact_name": "John Smith",
    "contact_email": "john.smith@techcorp.com", "company_size": 5000,
    "industry": "IT Consulting", "location": "San Francisco, CA",
    "use_case": "Enterprise Analytics"}


@functools.cache
def spec_net(workflow_id: str) -> Net:
    """A shipped spec, compiled once per test session."""
    return compile_document((SPECS / f"{workflow_id}.json").read_text())


def pipeline_nets() -> list[Net]:
    return [spec_net(w) for w in PIPELINE]


def net_of(spec: dict[str, Any]) -> Net:
    return compile_document(spec)


def nets_lookup(nets: Iterable[Net]):
    table = {(n.workflow_id, n.version): n for n in nets}
    return lambda w, v: table[(w, v)]


@contextlib.asynccontextmanager
async def running(path: str, clock: VirtualClock | None = None, nets: Iterable[Net] = (),
                  actions: ActionRegistry | None = None, *, durability: str = "normal",
                  **rt_kwargs: Any) -> AsyncIterator[tuple[SQLiteStore, Runtime]]:
    """A store on a real SQLite file and a Runtime over it, with the nets registered."""
    clock = clock or VirtualClock(0.0)
    async with SQLiteStore(path, durability=durability) as store:  # type: ignore[arg-type]
        rt = Runtime(store, clock, actions, **rt_kwargs)
        for n in nets:
            rt.add_net(n)
        try:
            async with rt:
                yield store, rt
        except BaseExceptionGroup as group:  # the runtime's task group wraps failures
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise


def state(case: Case) -> dict[str, Any]:
    """Everything observable about a case (status, data, tokens, items, version)."""
    return {
        "case_id": case.case_id,
        "workflow": (case.net.workflow_id, case.net.version),
        "status": case.status,
        "data": dict(case.data),
        "tokens": case.tokens_by_condition(),
        "items": sorted((i.id, case.net.tasks[i.task].id, i.state, i.parent, i.due, i.by)
                        for i in case.work_items()),
        "enabled": sorted(case.enabled_tasks()),
        "version": case.version,
    }


def item_tasks(events: Iterable[Any]) -> dict[int, str]:
    """Work item id -> task id, from the WorkItemEnabled events of a log."""
    return {e.item: e.task for e in events if type(e) is WorkItemEnabled}


def completed_tasks(events: list[Any]) -> list[str]:
    """The tasks whose work items completed, in log order."""
    tasks = item_tasks(events)
    return [tasks[e.item] for e in events if type(e) is WorkItemCompleted]


def replayed(events: list[Any], nets: Iterable[Net]) -> Case:
    return replay(events, nets_lookup(nets))


async def yields(n: int = 10) -> None:
    for _ in range(n):
        await anyio.sleep(0)


async def run_clock(rt: Runtime, clock: VirtualClock, *, until: float | None = None,
                    max_steps: int = 200) -> None:
    """Let the runtime go quiet, then jump to the next deadline, until nobody sleeps
    (or the next deadline is beyond `until`)."""
    for _ in range(max_steps):
        await rt.wait_idle()
        nxt = clock.next_deadline()
        if nxt is None or (until is not None and nxt > until):
            return
        clock.advance_to_next()
    raise AssertionError("the simulation did not go quiet")
