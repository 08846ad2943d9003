"""The SQLite event store on real files: appends and loads, optimistic concurrency,
group commit, snapshots, projections and durability settings -- with the writer in a
thread and in a process of its own.

(No `__init__.py` in tests/adapters: under pytest's default import mode it would make
this directory the top-level package `adapters` and shadow the real one.)
"""

from __future__ import annotations

import json
import pathlib
import sqlite3
from typing import Any

import aiosqlite
import anyio
import msgspec
import pytest

from actors import Runtime, VirtualClock
from actors.ports import Append, AppendConflict, SpecRow
from actors.projection import case_row, changes
from adapters.sqlite_schema import SCHEMA_VERSION, NewerSchema
from adapters.sqlite_store import SQLiteStore
from engine import Case, CaseSnapshot, compile_document, replay

# Every test here runs with each of the store's writers (the `writer` fixture).
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("writer")]

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEAL = compile_document((ROOT / "specs" / "deal-approval-gate.json").read_text())
LOOP = compile_document({
    "id": "loop", "name": "Loop", "version": 1,
    "tasks": [{"id": "Step", "split": "xor"}],
    "flows": [{"from": "start", "to": "Step"},
              {"from": "Step", "to": "Step", "when": "result == 'again'"},
              {"from": "Step", "to": "end"}],
})
DEAL_DATA = {"deal_name": "TechCorp Enterprise Analytics", "customer_name": "TechCorp",
             "deal_acv": 600000}



def append_of(case: Case, events: list[Any], now: float, *, snapshot: bool = False,
              first_seq: int | None = None) -> Append:
    """The Append the runtime would make for `events`, just applied to `case`."""
    upserts, deletes, phases = changes(case, events)
    return Append(case.case_id, case.version - len(events) + 1 if first_seq is None
                  else first_seq, events, case_row(case, now), upserts, deletes,
                  msgspec.msgpack.encode(case.snapshot()) if snapshot else None, phases)


def new_case(case_id: str, net=DEAL, data: dict[str, Any] | None = None,
             ) -> tuple[Case, Append]:
    case, events = Case.create(net, case_id, DEAL_DATA if data is None else data, 0.0)
    return case, append_of(case, events, 0.0)


def fork(case: Case) -> Case:
    """An independent copy of a case (another writer's view of the same state)."""
    return Case.restore(case.net, case.snapshot())


def raw_rows(path: str, case_id: str) -> list[tuple[int, int]]:
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT first_seq, last_seq FROM events WHERE case_id = ?"
                           " ORDER BY first_seq", (case_id,)).fetchall()
    finally:
        con.close()


# ------------------------------------------------------------- append + load
async def test_append_then_load_returns_the_log_and_projections(db: str) -> None:
    async with SQLiteStore(db) as store:
        assert await store.load("d1") is None and not await store.case_exists("d1")
        case, a = new_case("d1")
        await store.append(a)
        ev = case.complete("SendToFinance", 5.0, "approved")
        await store.append(append_of(case, ev, 5.0))
        stored = await store.load("d1")
        assert stored is not None
        assert (stored.snapshot, stored.snapshot_seq) == (None, 0)
        assert stored.events == a.events + ev == await store.events("d1")
        assert await store.case_exists("d1")
        assert await store.count_events() == case.version
        open_items = {(r.item, r.task, r.kind, r.role, r.state)
                      for r in await store.open_items()}
        assert open_items == {(i.id, case.net.tasks[i.task].id, "human",
                               case.net.tasks[i.task].role, i.state)
                              for i in case.work_items()}
        assert [(t.case_id, t.item, t.due) for t in await store.pending_timers()] == \
            [("d1", i, d) for i, d in case.pending_timers()]
        assert await store.ping()
    async with SQLiteStore(db) as store:  # durable across a reopen
        assert (await store.load("d1")).events == a.events + ev  # type: ignore[union-attr]
        con = sqlite3.connect(db)
        row = con.execute("SELECT state, seq, updated_at FROM cases WHERE case_id='d1'"
                          ).fetchone()
        con.close()
        assert row == ("active", case.version, 5.0)


async def test_read_events_tails_every_case_in_commit_order(db: str) -> None:
    async with SQLiteStore(db) as store:
        cases = {}
        for cid in ("a", "b"):
            cases[cid], a = new_case(cid)
            await store.append(a)
        ev = cases["a"].complete("SendToLegal", 1.0, "approved")
        await store.append(append_of(cases["a"], ev, 1.0))
        tail = await store.read_events()
        assert [(c, f) for _, c, f, _ in tail] == [("a", 1), ("b", 1), ("a", 8)]
        assert [p for p, *_ in tail] == sorted(p for p, *_ in tail)
        assert tail[2][3] == ev
        assert await store.read_events(after_pos=tail[1][0]) == tail[2:]


async def test_a_read_sees_every_commit_before_it_while_other_reads_run(db: str) -> None:
    """Reads share one connection. Each must be one statement run to its end in one
    call: a cursor left open between calls kept the connection's read transaction
    open, and a read made meanwhile saw the database as it was before the latest
    commit -- the HTTP API answered "not found" for a case it had just created."""
    async with SQLiteStore(db) as store:
        stop = anyio.Event()

        async def polling() -> None:  # what the server's pollers do all the time
            while not stop.is_set():
                await store.open_items()
                await store.pending_timers()

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(polling)
            for i in range(150):
                _, a = new_case(f"c{i}")
                await store.append(a)  # durable now
                assert await store.events(f"c{i}") == a.events, f"case c{i}: stale read"
                assert await store.case_exists(f"c{i}")
            stop.set()


async def test_specs_are_saved_once_per_version(db: str) -> None:
    async with SQLiteStore(db) as store:
        doc = (ROOT / "specs" / "deal-approval-gate.json").read_text()
        row = SpecRow("deal-approval-gate", 1, "abc", doc, 1.0)
        await store.save_spec(row)
        await store.save_spec(row)
        await store.save_spec(SpecRow("deal-approval-gate", 2, "def", doc, 2.0))
        got = await store.specs()
        assert [(s.workflow_id, s.version) for s in got] == [("deal-approval-gate", 1),
                                                             ("deal-approval-gate", 2)]
        assert json.loads(got[0].document)["id"] == "deal-approval-gate"


# ---------------------------------------------------- optimistic concurrency
@pytest.mark.parametrize("together", [True, False], ids=["same-round", "one-after-other"])
async def test_same_case_and_first_seq_one_commits_the_other_conflicts(db: str,
                                                                       together: bool) -> None:
    async with SQLiteStore(db) as store:
        case, a = new_case("d1")
        await store.append(a)
        mine, theirs = fork(case), fork(case)
        first = mine.version + 1
        a1 = append_of(mine, mine.complete("SendToFinance", 1.0, "approved"), 1.0)
        a2 = append_of(theirs, theirs.complete("SendToLegal", 2.0, "rejected"), 2.0)
        assert a1.first_seq == a2.first_seq == first
        outcome: dict[str, BaseException | None] = {}

        async def put(name: str, ap: Append) -> None:
            try:
                await store.append(ap)
                outcome[name] = None
            except AppendConflict as exc:
                outcome[name] = exc

        if together:
            async with anyio.create_task_group() as tg:
                tg.start_soon(put, "a1", a1)
                tg.start_soon(put, "a2", a2)
        else:
            await put("a1", a1)
            await put("a2", a2)
        assert outcome["a1"] is None, "the first append queued wins"
        err = outcome["a2"]
        assert isinstance(err, AppendConflict)
        assert (err.case_id, err.seq) == ("d1", first)
        log = await store.events("d1")
        assert log == a.events + a1.events
        assert replay(log, DEAL).data == mine.data


async def test_a_round_mixing_good_and_conflicting_appends_fails_only_the_conflicts(
        db: str) -> None:
    async with SQLiteStore(db) as store:
        cases = {}
        for i in range(10):
            cases[i], a = new_case(f"c{i}")
            await store.append(a)
        before_rows = await store.open_items()
        good = []
        for i in range(8):
            c = cases[i]
            good.append(append_of(c, c.complete("SendToFinance", 10.0, "approved"), 10.0))
        # conflicts: c8 created again (event 1 is taken); c0 written twice at one number
        dup_create = new_case("c8", data={**DEAL_DATA, "deal_acv": 1000})[1]
        rival = new_case("c0")[0]  # c0 as stored, before good[0]
        rival_append = append_of(rival, rival.complete("SendToLegal", 11.0, "rejected"),
                                 11.0, snapshot=True)
        batch = [*good[:4], dup_create, *good[4:], rival_append]
        results: dict[int, BaseException | None] = {}

        async def put(k: int, ap: Append) -> None:
            try:
                await store.append(ap)
                results[k] = None
            except AppendConflict as exc:
                results[k] = exc

        commits0 = store.commits
        async with anyio.create_task_group() as tg:
            for k, ap in enumerate(batch):
                tg.start_soon(put, k, ap)
        assert store.commits - commits0 == 1, "precondition: all of it in one round"
        failed = sorted(k for k, r in results.items() if r is not None)
        assert failed == [4, 9]
        for i in range(8):
            assert await store.events(f"c{i}") == \
                new_case(f"c{i}")[1].events + good[i].events
        assert (await store.load("c8")).events[0].data["deal_acv"] == 600000  # type: ignore
        assert (await store.load("c0")).snapshot is None  # type: ignore[union-attr]
        # the conflicting appends left no projection rows behind
        after_rows = await store.open_items()
        for cid in ("c8", "c9"):
            assert [r for r in after_rows if r.case_id == cid] == \
                [r for r in before_rows if r.case_id == cid]
        c0_open = {r.task for r in await store.open_items() if r.case_id == "c0"}
        assert "SendToLegal" in c0_open and "SendToFinance" not in c0_open


async def test_an_append_overlapping_stored_events_is_refused(db: str) -> None:
    """The port's contract: refuse an append if the case already has an event with
    number `first_seq` -- also when that event is inside an earlier multi-event
    append, not only at its start."""
    async with SQLiteStore(db) as store:
        case, a = new_case("d1")
        await store.append(a)
        assert len(a.events) > 2  # events 1..n in one append
        stale = fork(case)
        ev = stale.complete("SendToFinance", 1.0, "approved")
        with pytest.raises(AppendConflict):
            await store.append(append_of(stale, ev, 1.0, first_seq=2))
        assert raw_rows(db, "d1") == [(1, len(a.events))]
        assert await store.events("d1") == a.events


# ------------------------------------------------------------- group commit
async def test_group_commit_batches_appends_from_concurrent_cases(db: str) -> None:
    async with SQLiteStore(db) as store:
        async with Runtime(store, VirtualClock(0.0)) as rt:
            rt.add_net(LOOP)
            async with anyio.create_task_group() as tg:
                for i in range(100):
                    tg.start_soon(rt.create, "loop", f"c{i}", {})
            for _ in range(3):
                async with anyio.create_task_group() as tg:
                    for i in range(100):
                        tg.start_soon(rt.complete, f"c{i}", "Step", "again")
        assert store.appends_committed == 400
        assert store.appends_committed / store.commits > 10, \
            f"mean batch {store.appends_committed / store.commits:.1f}"
        for i in (0, 57, 99):
            case = replay(await store.events(f"c{i}"), LOOP)
            assert case.enabled_tasks() == ["Step"] and case.version > 0


# ---------------------------------------------------------------- snapshots
async def test_load_after_a_snapshot_returns_it_and_only_the_later_events(db: str) -> None:
    async with SQLiteStore(db) as store:
        case, a = new_case("d1")
        await store.append(a)
        ev2 = case.complete("SendToFinance", 1.0, "approved")
        await store.append(append_of(case, ev2, 1.0, snapshot=True))
        snap_version = case.version
        snap_bytes = msgspec.msgpack.encode(case.snapshot())
        ev3 = case.complete("SendToLegal", 2.0, "approved")
        await store.append(append_of(case, ev3, 2.0))
        ev4 = case.complete("ExecutiveCheck", 3.0, "approved")
        await store.append(append_of(case, ev4, 3.0))
        stored = await store.load("d1")
        assert stored is not None
        assert stored.snapshot == snap_bytes and stored.snapshot_seq == snap_version
        assert stored.events == ev3 + ev4
        restored = Case.restore(DEAL, msgspec.msgpack.decode(stored.snapshot,
                                                              type=CaseSnapshot))
        for e in stored.events:
            restored.apply(e)
        full = replay(await store.events("d1"), DEAL)
        assert restored.snapshot() == full.snapshot() == case.snapshot()
        # a later snapshot replaces the earlier one
        ev5 = case.complete("SendToSalesManager", 4.0, "approved")
        await store.append(append_of(case, ev5, 4.0, snapshot=True))
        stored = await store.load("d1")
        assert stored is not None
        assert (stored.snapshot_seq, stored.events) == (case.version, [])
        assert await store.events("d1") == a.events + ev2 + ev3 + ev4 + ev5


# ---------------------------------------------------------------- durability
async def _synchronous_of_every_connection(store: SQLiteStore) -> list[int]:
    found = []
    for value in vars(store).values():
        if isinstance(value, sqlite3.Connection):
            found.append(value.execute("PRAGMA synchronous").fetchone()[0])
        elif isinstance(value, aiosqlite.Connection):
            async with value.execute("PRAGMA synchronous") as cur:
                found.append((await cur.fetchone())[0])
    return found


@pytest.mark.parametrize(("durability", "level"), [("normal", 1), ("full", 2)])
async def test_durability_sets_synchronous_on_the_stores_connections(
        db: str, durability: str, level: int) -> None:
    async with SQLiteStore(db, durability=durability) as store:  # type: ignore[arg-type]
        assert store.durability == durability
        levels = await _synchronous_of_every_connection(store)
        assert levels and set(levels) == {level}, levels
        async with Runtime(store, VirtualClock(0.0)) as rt:
            rt.add_net(DEAL)
            await rt.create("deal-approval-gate", "d1", DEAL_DATA)
            await rt.complete("d1", "SendToFinance", "approved")
            expected = (await rt.get("d1")).snapshot()
    con = sqlite3.connect(db)  # WAL is a property of the file
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    async with SQLiteStore(db, durability=durability) as store:  # type: ignore[arg-type]
        assert replay(await store.events("d1"), DEAL).snapshot() == expected


async def test_a_database_of_a_later_schema_is_refused_and_left_as_it_is(db: str) -> None:
    """An upgrade rolled back: the older caseloop must not write tables whose meaning
    changed under it (it used to open the file and serve it as its own)."""
    async with SQLiteStore(db) as store:
        _, batch = new_case("c1", LOOP, {})
        await store.append(batch)
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    for writer in ("thread", "process"):
        with pytest.raises(NewerSchema, match=f"version {SCHEMA_VERSION + 1}, newer"):
            async with SQLiteStore(db, writer=writer):  # type: ignore[arg-type]
                pass
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 1
