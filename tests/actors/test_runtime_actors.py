"""The case actors: ordering, concurrency, activation, passivation, restarts, conflicts.

Every test runs the real Runtime over a real SQLite file in tmp_path, on a VirtualClock.
"""

from __future__ import annotations

import sqlite3
import sys
from typing import Any

import anyio
import msgspec
import pytest
from actors_kit import (
    DEAL_600K,
    HUMAN_APPROVALS,
    completed_tasks,
    net_of,
    replayed,
    running,
    spec_net,
    state,
    yields,
)

from actors import (
    ActorFault,
    AppendConflict,
    CaseExists,
    CaseNotFound,
    VirtualClock,
    placeholder_actions,
)
from engine import AlreadyDone, Case, CaseSnapshot, EngineError, NotEnabled, replay
from engine.events import CaseCreated, WorkItemCompleted, encode_events

pytestmark = pytest.mark.anyio

# One human task in a loop: every completion with result "again" offers it anew.
LOOP = net_of({
    "id": "loop", "name": "Loop", "version": 1,
    "tasks": [{"id": "Step", "split": "xor"}],
    "flows": [{"from": "start", "to": "Step"},
              {"from": "Step", "to": "Step", "when": "result == 'again'"},
              {"from": "Step", "to": "end"}],
})
DEAL = spec_net("deal-approval-gate")


def step(i: int, seen: list[tuple[int, int]]):
    """A command completing the loop's Step once, recording (i, version on entry)."""
    def command(c: Case) -> list[Any]:
        seen.append((i, c.version))
        return c.complete("Step", 1.0, "again", {"n": i})
    return command


# ------------------------------------------------------------------- ordering
@pytest.mark.parametrize("resident", [True, False], ids=["resident", "activating"])
async def test_messages_to_one_case_are_handled_one_at_a_time_in_arrival_order(
        db: str, resident: bool) -> None:
    async with running(db, nets=[LOOP]) as (_, rt):
        await rt.create("loop", "L", {})
    # A fresh runtime: in the "activating" run every message arrives while the case is
    # being activated from the store and must wait for that one activation.
    async with running(db, nets=[LOOP]) as (store, rt):
        if resident:
            await rt.get("L")
        seen: list[tuple[int, int]] = []
        acked: list[int] = []

        async def send(i: int) -> None:
            await rt.tell("L", step(i, seen))
            acked.append(i)

        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(send, i)
        assert [i for i, _ in seen] == list(range(40)), "handled out of arrival order"
        versions = [v for _, v in seen]
        per_step = versions[1] - versions[0]
        assert per_step > 0
        # one at a time: each command saw the state its predecessor left
        assert versions == [versions[0] + k * per_step for k in range(40)]
        assert sorted(acked) == list(range(40))
        log = await store.events("L")
        outs = [e.output["n"] for e in log if type(e) is WorkItemCompleted]
        assert outs == list(range(40)), "appends committed out of order"
        assert (await rt.get("L")).data["n"] == 39


async def test_different_cases_are_handled_concurrently(db: str) -> None:
    """Messages to 60 cases in flight together share commits: no case waits for the
    others one by one (a global one-at-a-time runtime would commit each alone)."""
    async with running(db, nets=[LOOP]) as (store, rt):
        async with anyio.create_task_group() as tg:
            for i in range(60):
                tg.start_soon(rt.create, "loop", f"c{i}", {})
        commits0 = store.commits
        seen: list[tuple[int, int]] = []
        async with anyio.create_task_group() as tg:
            for i in range(60):
                tg.start_soon(rt.tell, f"c{i}", step(i, seen))
        assert store.commits - commits0 <= 6
        for i in range(60):
            assert (await rt.get(f"c{i}")).data == {"n": i}


# ----------------------------------------------------------------- activation
async def test_activation_loads_snapshot_plus_later_events(db: str) -> None:
    async with running(db, nets=[DEAL], snapshot_every=3) as (store, rt):
        await rt.create("deal-approval-gate", "d1", DEAL_600K)
        await rt.complete("d1", "SendToFinance", "approved")
        await rt.start("d1", "SendToLegal", by="ann")
        await rt.complete("d1", "SendToLegal", "approved")
        before = state(await rt.get("d1"))
        stored = await store.load("d1")
        assert stored is not None and stored.snapshot is not None
        assert 0 < stored.snapshot_seq <= before["version"]
        assert stored.snapshot_seq + len(stored.events) == before["version"]
        snap = msgspec.msgpack.decode(stored.snapshot, type=CaseSnapshot)
        assert snap.version == stored.snapshot_seq
    async with running(db, nets=[DEAL], actions=placeholder_actions(),
                       snapshot_every=3) as (store, rt):
        assert rt.resident == 0
        case = await rt.get("d1")
        assert rt.resident == 1
        assert state(case) == before
        assert state(case) == state(replayed(await store.events("d1"), [DEAL]))
        # and it goes on from there
        await rt.complete("d1", "SendToSalesManager", "approved")
        await rt.complete("d1", "ExecutiveCheck", "approved")
        await rt.wait_idle()
        assert (await rt.get("d1")).status == "completed"


async def test_unknown_case_and_duplicate_create(db: str) -> None:
    async with running(db, nets=[LOOP]) as (_, rt):
        with pytest.raises(CaseNotFound):
            await rt.get("nope")
        with pytest.raises(CaseNotFound):
            await rt.complete("nope", "Step")
        await rt.create("loop", "L", {})
        with pytest.raises(CaseExists):  # resident
            await rt.create("loop", "L", {})
    async with running(db, nets=[LOOP]) as (store, rt):
        with pytest.raises(CaseExists):  # passivated: the store refuses event 1
            await rt.create("loop", "L", {})
        assert len(await store.events("L")) > 0
        assert (await rt.get("L")).enabled_tasks() == ["Step"]


# ---------------------------------------------------------------- passivation
async def test_passivating_most_cases_gives_their_slots_back(db: str) -> None:
    """A dict's table does not shrink as entries are removed: after most resident cases
    were passivated, the table is made anew (bench/memory.py: ~60 B a case held)."""
    clock = VirtualClock(0.0)
    async with running(db, clock, [LOOP], idle_timeout=60) as (_, rt):
        async with anyio.create_task_group() as tg:
            for i in range(2000):
                tg.start_soon(rt.create, "loop", f"c{i}", {})
        full = sys.getsizeof(rt._resident)
        clock.advance_to(50)
        await rt.get("c7")  # used since: stays
        clock.advance_to(91)
        await rt.wait_idle()
        await yields()
        assert rt.resident == 1
        assert sys.getsizeof(rt._resident) < full / 10
        await rt.tell("c7", step(1, []))
        await rt.tell("c8", step(2, []))  # comes back from its log
        assert rt.resident == 2 and (await rt.get("c8")).data == {"n": 2}


async def test_idle_cases_are_passivated_on_the_virtual_clock(db: str) -> None:
    clock = VirtualClock(0.0)
    async with running(db, clock, [LOOP], idle_timeout=60) as (_, rt):
        for i in range(3):
            await rt.create("loop", f"c{i}", {})
        assert rt.resident == 3
        kept = await rt.get("c2")

        async def at(t: float) -> None:
            clock.advance_to(t)
            await rt.wait_idle()
            await yields()

        await at(45)
        await rt.tell("c2", step(0, []))  # c2 used at t=45
        await at(61)
        assert rt.resident == 3, "nothing has been idle for 60 s yet"
        await at(91)
        assert rt.resident == 1, "c0 and c1 idle since t=0 must be passivated"
        assert await rt.get("c2") is kept, "the recently used case stays resident"
        await at(200)
        assert rt.resident == 0
        # a passivated case comes back from its log on its next message
        again = await rt.get("c2")
        assert again is not kept and state(again) == state(kept)
        await rt.tell("c0", step(7, []))
        assert (await rt.get("c0")).data == {"n": 7}


async def test_resident_cap_passivates_least_recently_used(db: str) -> None:
    async with running(db, nets=[LOOP], resident_cap=3) as (_, rt):
        objs = {}
        for i in range(5):
            objs[i] = await rt.create("loop", f"c{i}", {})
        assert rt.resident == 3
        await rt.tell("c2", step(2, []))  # c2 is now the most recently used
        objs[5] = await rt.create("loop", "c5", {})  # evicts c3, the least recent
        assert rt.resident == 3
        for i in (2, 4, 5):
            assert await rt.get(f"c{i}") is objs[i], f"c{i} should still be resident"
        back = await rt.get("c3")
        assert back is not objs[3], "c3 should have been passivated"
        assert state(back) == state(objs[3])
        assert rt.resident == 3


async def test_resident_cap_passivation_with_commits_in_flight_is_invisible(db: str) -> None:
    """A small resident cap under concurrent load must not turn into errors: a case
    evicted while its append is still being committed must not be re-activated from a
    log that lacks that append (stale state -> spurious AppendConflict to a sender
    that raced nobody)."""
    async with running(db, nets=[DEAL], actions=placeholder_actions(),
                       resident_cap=2) as (_, rt):
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(rt.create, "deal-approval-gate", f"d{i}", DEAL_600K)
        errors: list[str] = []

        async def approve(cid: str, task: str) -> None:
            try:
                await rt.complete(cid, task, "approved")
            except Exception as exc:
                errors.append(f"{cid} {task}: {exc!r}")

        async with anyio.create_task_group() as tg:
            for task in HUMAN_APPROVALS:
                for i in range(20):
                    tg.start_soon(approve, f"d{i}", task)
        await rt.wait_idle()
        assert errors == []
        for i in range(20):
            assert (await rt.get(f"d{i}")).status == "completed"


# -------------------------------------------------------- faults and restarts
def _complete_then_raise(c: Case) -> list[Any]:
    c.complete("SendToFinance", 5.0, "approved")  # applied in memory...
    raise RuntimeError("boom")  # ...then the handler fails


def _mutate_data_then_raise(c: Case) -> list[Any]:
    c.data["deal_acv"] = -1  # scribbles on the resident state
    c.items.clear()
    raise ValueError("bad handler")


def _raise_at_once(c: Case) -> list[Any]:
    raise KeyError("nothing")


@pytest.mark.parametrize("handler", [_raise_at_once, _complete_then_raise,
                                     _mutate_data_then_raise])
async def test_handler_failure_faults_sender_and_restarts_case_from_log(db: str,
                                                                        handler) -> None:
    async with running(db, nets=[DEAL], snapshot_every=3) as (store, rt):
        await rt.create("deal-approval-gate", "d1", DEAL_600K)
        await rt.complete("d1", "SendToLegal", "approved")
        old = await rt.get("d1")
        before = state(old)
        log_before = await store.events("d1")
        with pytest.raises(ActorFault) as info:
            await rt.tell("d1", handler)
        assert info.value.__cause__ is not None
        case = await rt.get("d1")
        assert case is not old, "the faulty actor must be rebuilt, not reused"
        assert state(case) == before
        assert await store.events("d1") == log_before, "nothing of the failed command is logged"
        # the case is not corrupted: it carries on normally
        await rt.complete("d1", "SendToFinance", "approved")
        assert "SendToFinance" not in (await rt.get("d1")).enabled_tasks()


def _step_then_raise(c: Case) -> list[Any]:
    c.complete("Step", 1.0, "again", {"n": 2})  # applied in memory...
    raise RuntimeError("boom")  # ...then the handler fails


async def test_a_case_dropped_with_an_append_in_flight_waits_for_it_before_reloading(
        db: str) -> None:
    """A failing command drops the case from memory while an earlier command's append
    for it is still on its way to COMMIT. The next command must build on that append:
    reloaded before it settled, the case would miss it, and the two valid commands'
    appends would meet at the same number -- one of them refused as a conflict."""
    async with running(db, nets=[LOOP]) as (store, rt):
        await rt.create("loop", "c", {})
        commit = store.append
        appends: list[int] = []
        in_flight, release, second_append = anyio.Event(), anyio.Event(), anyio.Event()

        async def append(batch: Any) -> None:  # the store's own append, the first held
            appends.append(batch.first_seq)
            if len(appends) == 1:
                in_flight.set()
                await release.wait()
            else:
                second_append.set()
            await commit(batch)

        store.append = append  # type: ignore[method-assign]
        seen: list[tuple[int, int]] = []
        outcome: dict[int, Any] = {}

        async def send(i: int) -> None:
            try:
                outcome[i] = (await rt.tell("c", step(i, seen))).version
            except Exception as exc:
                outcome[i] = exc

        async with anyio.create_task_group() as tg:
            tg.start_soon(send, 1)
            await in_flight.wait()
            with pytest.raises(ActorFault):
                await rt.tell("c", _step_then_raise)
            tg.start_soon(send, 3)
            with anyio.move_on_after(0.5):
                await second_append.wait()  # (it must not come before the first settles)
            assert appends == [appends[0]], "the next command ran on a reload that " \
                "missed the append in flight"
            release.set()
        assert all(isinstance(v, int) for v in outcome.values()), outcome
        log = await store.events("c")
        assert [e.output for e in log if type(e) is WorkItemCompleted] == [{"n": 1}, {"n": 3}]
        assert [i for i, _ in seen] == [1, 3] and outcome[3] == len(log)
        assert state(await rt.get("c")) == state(replay(log, LOOP))


async def test_engine_refusal_leaves_case_unchanged_and_resident(db: str) -> None:
    async with running(db, nets=[DEAL]) as (_, rt):
        await rt.create("deal-approval-gate", "d1", DEAL_600K)
        await rt.complete("d1", "SendToLegal", "approved")
        case = await rt.get("d1")
        before = state(case)
        with pytest.raises(AlreadyDone):
            await rt.complete("d1", "SendToLegal", "approved")
        with pytest.raises(EngineError):
            await rt.complete("d1", "NoSuchTask")
        assert await rt.get("d1") is case and state(case) == before


@pytest.mark.parametrize("resident", [True, False], ids=["resident", "activating"])
@pytest.mark.parametrize("by_item", [False, True], ids=["task-ref", "item-ref"])
async def test_concurrent_duplicate_completions_exactly_one_wins(db: str, resident: bool,
                                                                 by_item: bool) -> None:
    async with running(db, nets=[DEAL]) as (_, rt):
        c = await rt.create("deal-approval-gate", "d1", DEAL_600K)
        ref: int | str = "SendToFinance"
        if by_item:
            ref = next(i.id for i in c.work_items()
                       if c.net.tasks[i.task].id == "SendToFinance")
    async with running(db, nets=[DEAL]) as (store, rt):
        if resident:
            await rt.get("d1")
        ok: list[int] = []
        refused: list[BaseException] = []

        async def complete(i: int) -> None:
            try:
                await rt.complete("d1", ref, "approved", {"who": i})
                ok.append(i)
            except EngineError as exc:
                refused.append(exc)

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(complete, i)
        assert len(ok) == 1
        assert len(refused) == 19
        assert all(isinstance(e, AlreadyDone | NotEnabled) for e in refused)
        log = await store.events("d1")
        assert completed_tasks(log).count("SendToFinance") == 1
        assert (await rt.get("d1")).data["who"] == ok[0]


def _foreign_append(path: str, case_id: str, first_seq: int, events: list[Any]) -> None:
    """Another writer gets in first: an events row written straight into the file."""
    con = sqlite3.connect(path)
    with con:
        con.execute("INSERT INTO events (case_id, first_seq, last_seq, at, body)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (case_id, first_seq, first_seq + len(events) - 1, 0.0,
                     encode_events(events)))
    con.close()


async def test_failed_append_drops_actor_and_next_read_rebuilds_from_log(db: str) -> None:
    async with running(db, nets=[DEAL]) as (store, rt):
        await rt.create("deal-approval-gate", "d1", DEAL_600K)
        resident = await rt.get("d1")
        # the other writer completes SendToFinance as event version+1...
        other = replay(await store.events("d1"), DEAL)
        foreign = other.complete("SendToFinance", 3.0, "approved", by="elsewhere")
        _foreign_append(db, "d1", resident.version + 1, foreign)
        # ...so our append of a different completion at the same number conflicts
        with pytest.raises(AppendConflict):
            await rt.complete("d1", "SendToLegal", "approved")
        rebuilt = await rt.get("d1")
        assert rebuilt is not resident
        assert state(rebuilt) == state(other), "the next read must come from the log"
        assert "SendToLegal" in rebuilt.enabled_tasks()
        assert "SendToFinance" not in rebuilt.enabled_tasks()
        await rt.complete("d1", "SendToLegal", "approved")  # and it goes on
        assert completed_tasks(await store.events("d1")) == ["SendToFinance", "SendToLegal"]


async def test_duplicate_create_racing_a_message_cannot_corrupt_the_log(db: str) -> None:
    """A create for an id that exists (passivated) must not let a concurrent message
    act on the would-be new case: the message's events would be appended to the
    existing case's log."""
    async with running(db, nets=[DEAL]) as (_, rt):
        await rt.create("deal-approval-gate", "X", {**DEAL_600K, "deal_acv": 30000})
    async with running(db, nets=[DEAL]) as (store, rt):
        outcome: dict[str, str] = {}

        async def create() -> None:
            try:
                await rt.create("deal-approval-gate", "X", DEAL_600K)
                outcome["create"] = "ok"
            except CaseExists:
                outcome["create"] = "exists"

        async def message() -> None:
            try:  # SendToLegal exists only in the phantom 600K case
                await rt.complete("X", "SendToLegal", "approved")
                outcome["message"] = "ok"
            except Exception as exc:
                outcome["message"] = type(exc).__name__

        async with anyio.create_task_group() as tg:
            tg.start_soon(create)
            tg.start_soon(message)
        assert outcome["create"] == "exists"
        log = await store.events("X")
        assert type(log[0]) is CaseCreated and log[0].data["deal_acv"] == 30000
        replayed(log, [DEAL])  # the log must still fit the net (no foreign events)
        assert outcome["message"] != "ok", "a message to the phantom case was acknowledged"
    async with running(db, nets=[DEAL]) as (_, rt):
        case = await rt.get("X")
        assert "SendToLegal" not in case.enabled_tasks()
