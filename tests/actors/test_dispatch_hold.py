"""Dispatch holds: a policy (actors.ports.DispatchPolicy) consulted in the command that
enables an item may hold it until a window opens. Until then nobody starts or
completes it, worklists do not show it and an automatic action waits; the hold is an
event (WorkItemHeld) and survives replay, snapshots and a restart.

Real parts: the SQLite store on a file, the virtual clock, mapek.policy.PolicyBook."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from actors_kit import net_of, running

from actors import ActionRegistry, VirtualClock
from engine import NotEnabled, replay
from engine.case import Case
from engine.events import WorkItemHeld
from mapek.policy import Change, DispatchWindow, PolicyBook

PT = ZoneInfo("America/Los_Angeles")
FRI_10AM = datetime(2026, 11, 20, 10, tzinfo=PT).timestamp()
FRI_2PM = datetime(2026, 11, 20, 14, tzinfo=PT).timestamp()
pytestmark = pytest.mark.anyio
WINDOW = DispatchWindow(14, 2, "America/Los_Angeles", max_wait_hours=6)

HUMAN = net_of({"id": "hold-human", "tasks": [{"id": "Sign", "role": "sales_manager"}],
                "flows": [{"from": "start", "to": "Sign"}, {"from": "Sign", "to": "end"}]})
AUTO = net_of({"id": "hold-auto",
               "tasks": [{"id": "Send", "kind": "automatic", "action": "send_it"}],
               "flows": [{"from": "start", "to": "Send"}, {"from": "Send", "to": "end"}]})


def book_for(workflow_id: str, task: str) -> PolicyBook:
    book = PolicyBook()
    book.apply(Change("dispatch_window", workflow_id, task, window=WINDOW), 0.0, "test")
    return book


async def test_a_held_item_is_refused_before_its_window_and_hidden_from_worklists(
        tmp_path) -> None:
    clock = VirtualClock(FRI_10AM)
    book = book_for("hold-human", "Sign")
    async with running(str(tmp_path / "db"), clock, [HUMAN], dispatch=book) as (store, rt):
        case = await rt.create("hold-human", "c1", {})
        item = case.work_items()[0]
        assert item.held_until == FRI_2PM
        with pytest.raises(NotEnabled, match="held by the dispatch policy"):
            await rt.complete("c1", item.id, by="bob")
        assert await store.worklist(roles=["sales_manager"], now=clock.now()) == []
        clock.advance_to(FRI_2PM)
        rows = await store.worklist(roles=["sales_manager"], now=clock.now())
        assert [r.task for r, _ in rows] == ["Sign"]
        case = await rt.complete("c1", item.id, by="bob")
        assert case.status == "completed"
        events = await store.events("c1")
    held = [e for e in events if type(e) is WorkItemHeld]
    assert [(e.until, e.policy) for e in held] == [(FRI_2PM, 1)]
    assert replay(events, HUMAN).status == "completed"


async def test_inside_the_window_or_beyond_the_longest_wait_nothing_is_held(tmp_path) -> None:
    book = book_for("hold-human", "Sign")
    for start in (FRI_2PM + 600, FRI_2PM + 3 * 3600):  # inside; after (Monday is > 6h)
        clock = VirtualClock(start)
        async with running(str(tmp_path / f"db{start}"), clock, [HUMAN],
                           dispatch=book) as (_, rt):
            case = await rt.create("hold-human", "c1", {})
            assert case.work_items()[0].held_until is None


async def test_an_automatic_action_waits_for_the_window_even_across_a_restart(tmp_path) -> None:
    ran: list[float] = []
    clock = VirtualClock(FRI_10AM)

    async def send_it(ctx) -> dict:
        ran.append(clock.now())
        return {}

    actions = ActionRegistry()
    actions.register("send_it", send_it)
    book = book_for("hold-auto", "Send")
    path = str(tmp_path / "db")
    async with running(path, clock, [AUTO], actions, dispatch=book) as (_, rt):
        await rt.create("hold-auto", "c1", {})
        await rt.wait_idle()
        assert ran == []  # still held
    async with running(path, clock, [AUTO], actions, dispatch=book) as (_, rt):
        await rt.wait_idle()
        assert ran == []
        clock.advance_to(FRI_2PM)
        await rt.wait_idle()
        assert ran == [FRI_2PM]
        assert (await rt.get("c1")).status == "completed"


def test_a_hold_survives_a_snapshot() -> None:
    case, _ = Case.create(HUMAN, "c1", {}, FRI_10AM)
    item = case.work_items()[0].id
    case.hold(item, FRI_10AM, FRI_2PM, 3)
    again = Case.restore(HUMAN, case.snapshot())
    assert again.work_item(item).held_until == FRI_2PM
    with pytest.raises(NotEnabled):
        again.start(item, FRI_2PM - 1, "bob")
    assert again.start(item, FRI_2PM, "bob")
