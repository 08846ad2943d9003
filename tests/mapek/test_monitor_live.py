"""The Monitor following the SQLite store live (`follow()`): the appends the store hands
on as they commit fold into exactly what reading the log back gives, whatever the
store could not hand on (a round written piecewise, more than the follower's queue
holds, another writer's appends) is read from the log, and a follower that is gone
is no longer fed.

The oracle is test_monitor_sightings' FullFold: the Monitor's fold as it was before
sightings, over the engine's own events decoded in full from the log. Everything runs
on real SQLite files.
"""

from __future__ import annotations

import gc
import pathlib
import random
import shutil
import sqlite3
import tempfile
from collections.abc import AsyncIterator
from itertools import pairwise
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_monitor_sightings import LOG, FullFold, assert_same, role_of

from actors.ports import Append, AppendConflict, CaseRow
from adapters.sqlite_store import SQLiteStore
from engine.events import CaseCreated, WorkItemCompleted, WorkItemEnabled, encode_events
from mapek.monitor import Monitor


def appended(case_id: str, first_seq: int, events: list[Any]) -> Append:
    row = CaseRow(case_id, "wf", 1, "active", 0.0, 0.0, None, first_seq + len(events) - 1)
    return Append(case_id, first_seq, events, row, [], [])


class Writer:
    """Appends cases' events in order, each case's log continued where it ends."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.ends: dict[str, int] = {}

    def next(self, case_id: str, events: list[Any]) -> Append:
        first = self.ends.get(case_id, 0) + 1
        self.ends[case_id] = first + len(events) - 1
        return appended(case_id, first, events)

    async def burst(self, batch: list[tuple[str, list[Any]]]) -> None:
        """Appends queued together: one round (written inline or in the writer's
        thread, by its size), as concurrent actors would."""
        async with anyio.create_task_group() as tg:
            for case_id, events in batch:
                tg.start_soon(self.store.append, self.next(case_id, events))


async def oracle(store: SQLiteStore) -> tuple[FullFold, int]:
    full, pos = FullFold(role_of), 0
    while rows := await store.read_events(pos, 5000):
        for pos, case_id, _first, events in rows:  # noqa: B007 -- pos carries on
            full.observe(case_id, events)
    return full, pos


async def replayed(store: SQLiteStore, rows: list[Any], rng: random.Random,
                   ) -> AsyncIterator[int]:
    """Append `rows` (as `read_events` gives them) again, in bursts of random size, as
    concurrent actors would; after about one burst in five, yield how many are in."""
    i = 0
    while i < len(rows):
        n = rng.choice((1, 3, 16, 17, 60, 250))
        async with anyio.create_task_group() as tg:
            for _pos, case_id, first, events in rows[i:i + n]:
                tg.start_soon(store.append, appended(case_id, first, events))
        i += n
        if rng.random() < 0.2:
            yield i


def bursts(log: list[Any], sizes: list[int]) -> list[list[Any]]:
    out, i = [], 0
    for n in sizes:
        if i >= len(log):
            break
        out.append(log[i:i + n])
        i += n
    if i < len(log):
        out.append(log[i:])
    return out


# ------------------------------------------------------------------ random logs
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(LOG, st.lists(st.integers(1, 40), min_size=1, max_size=8),
       st.lists(st.booleans(), max_size=8))
def test_any_log_handed_on_live_folds_as_the_log_read_in_full(
        log: list[tuple[str, list[Any]]], sizes: list[int], catch_ups: list[bool]) -> None:
    async def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            async with SQLiteStore(str(pathlib.Path(tmp) / "s.db")) as store:
                monitor = Monitor(store, role_of=role_of)
                writer = Writer(store)
                for i, batch in enumerate(bursts(log, sizes)):
                    await writer.burst(batch)
                    if i < len(catch_ups) and catch_ups[i]:  # mid-way, now and then
                        await monitor.catch_up()
                await monitor.catch_up()
                full, pos = await oracle(store)
        assert monitor.pos == pos
        assert_same(monitor, full)
        # Nothing was read back: every append came handed on.
        assert (monitor.appends_handed_on, monitor.appends_read) == (len(log), 0)

    anyio.run(run)


# ------------------------------------------------------------------ gaps
@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"



def deal(case_id: str, n: int) -> list[list[Any]]:
    """A case's appends: created, then n items each enabled and completed."""
    appends: list[list[Any]] = [[CaseCreated(case_id, "wf", 1, {"deal_acv": n * 1000.0}, 0.0)]]
    for item in range(1, n + 1):
        appends.append([WorkItemEnabled(item, "Approve", float(item))])
        appends.append([WorkItemCompleted(item, item + 0.5, "ok",
                                          {"segment": "mid"} if item == n else None,
                                          by="ana")])
    return appends


def interleaved(cases: int, items: int) -> list[tuple[str, list[Any]]]:
    per_case = {f"c{i}": deal(f"c{i}", items) for i in range(cases)}
    out = []
    for step in range(2 * items + 1):
        out += [(cid, appends[step]) for cid, appends in per_case.items()]
    return out


@pytest.mark.anyio
@pytest.mark.usefixtures("writer")
async def test_more_than_the_queue_holds_is_read_back_from_the_log(
        tmp_path: pathlib.Path) -> None:
    log = interleaved(cases=12, items=6)
    async with SQLiteStore(str(tmp_path / "s.db")) as store:
        monitor = Monitor(store, role_of=role_of, live_limit=20)
        writer = Writer(store)
        for batch in bursts(log, [7] * 40):
            await writer.burst(batch)
        await monitor.catch_up()
        full, pos = await oracle(store)
        assert monitor.pos == pos == len(log)
        assert_same(monitor, full)
        # The oldest rounds were dropped and read back; the newest came handed on.
        assert monitor.appends_read >= len(log) - 20 and monitor.appends_handed_on > 0
        assert monitor.appends_read + monitor.appends_handed_on == len(log)

        # Caught up, it follows live again.
        more = interleaved(cases=3, items=1)
        more = [(f"x{cid}", events) for cid, events in more]
        await writer.burst(more)
        handed_on = monitor.appends_handed_on
        await monitor.catch_up()
        assert monitor.appends_handed_on == handed_on + len(more)
        full, pos = await oracle(store)
        assert monitor.pos == pos
        assert_same(monitor, full)


@pytest.mark.anyio
@pytest.mark.usefixtures("writer")
async def test_a_round_written_append_by_append_is_read_back_and_the_refused_one_is_not_seen(
        tmp_path: pathlib.Path) -> None:
    async with SQLiteStore(str(tmp_path / "s.db")) as store:
        monitor = Monitor(store, role_of=role_of)
        writer = Writer(store)
        await writer.burst([("a", deal("a", 1)[0]), ("b", deal("b", 1)[0])])
        # Another connection appends b's next event behind the writer's back: the
        # writer's own append of it then hits the UNIQUE constraint mid-round, and the
        # round is rewritten append by append, so only that one fails.
        behind = sqlite3.connect(str(tmp_path / "s.db"))
        behind.execute("INSERT INTO events (case_id, first_seq, last_seq, at, body)"
                       " VALUES (?, 2, 2, 0, ?)",
                       ("b", encode_events([WorkItemEnabled(9, "Other", 0.25)])))
        behind.commit()
        behind.close()
        results: dict[str, BaseException | None] = {}

        async def append(a: Append) -> None:
            try:
                await store.append(a)
                results[a.case_id] = None
            except AppendConflict as exc:
                results[a.case_id] = exc

        async with anyio.create_task_group() as tg:
            for cid in ("a", "b", "c"):
                events = deal(cid, 1)[0] if cid == "c" else deal(cid, 1)[1]
                tg.start_soon(append, writer.next(cid, events))
        assert results["a"] is None and results["c"] is None
        assert isinstance(results["b"], AppendConflict)
        await monitor.catch_up()
        full, pos = await oracle(store)
        assert monitor.pos == pos == 5
        assert_same(monitor, full)
        assert ("b", 9) in monitor.open  # the other writer's item, from the log
        # The first round came handed on; the piecewise one and the stranger's append
        # were read.
        assert monitor.appends_handed_on == 2 and monitor.appends_read == 3


@pytest.mark.anyio
@pytest.mark.usefixtures("writer")
async def test_another_writers_appends_between_ours_are_folded_in_log_order(
        tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "s.db")
    async with SQLiteStore(path) as store, SQLiteStore(path) as other:
        monitor = Monitor(store, role_of=role_of)
        ours, theirs = Writer(store), Writer(other)
        for i in range(6):
            await ours.burst([(f"o{i}", deal(f"o{i}", 1)[0])])
            await theirs.burst([(f"t{i}", deal(f"t{i}", 1)[0]),
                                (f"t{i}", deal(f"t{i}", 1)[1])])
        await monitor.catch_up()
        full, pos = await oracle(store)
        assert monitor.pos == pos == 18
        assert_same(monitor, full)
        assert monitor.appends_handed_on == 6 and monitor.appends_read == 12
        # The other store's last appends came after our last: found in the log too.
        assert ("t5", 1) in monitor.open


@pytest.mark.anyio
@pytest.mark.usefixtures("writer")
async def test_a_monitor_that_is_gone_is_no_longer_handed_anything(
        tmp_path: pathlib.Path) -> None:
    async with SQLiteStore(str(tmp_path / "s.db")) as store:
        kept = Monitor(store)
        gone = Monitor(store)
        following = gone._live
        assert following is not None
        del gone, following
        gc.collect()
        writer = Writer(store)
        await writer.burst([("a", deal("a", 1)[0])])
        assert len(store._followers) == 1  # the dead one's entry pruned at the round
        await kept.catch_up()
        assert kept.appends_handed_on == 1


# ------------------------------------------------------------------ a real pipeline
@pytest.mark.anyio
@pytest.mark.usefixtures("writer")
async def test_the_simulated_pipeline_handed_on_live_folds_as_read_back(
        simulated_db: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """Every append of the simulated RevOps pipeline (every workflow, hand-overs, SLA
    breaches, automatic items), appended again in bursts of random size while a
    Monitor follows and catches up at random moments."""
    source = tmp_path / "pipeline.db"
    shutil.copy(simulated_db, source)
    async with SQLiteStore(str(source)) as src:
        rows = await src.read_events(0, 10**9)
    async with SQLiteStore(str(tmp_path / "again.db")) as store:
        monitor = Monitor(store, role_of=role_of)
        async for _i in replayed(store, rows, random.Random(7)):
            await monitor.catch_up()
        await monitor.catch_up()
        full, pos = await oracle(store)
    assert monitor.pos == pos == len(rows) > 1000
    assert_same(monitor, full)
    assert monitor.appends_handed_on == len(rows) and monitor.appends_read == 0


@pytest.mark.anyio
@pytest.mark.usefixtures("writer")
async def test_a_long_catch_up_lets_the_event_loop_run_between_rounds(
        tmp_path: pathlib.Path) -> None:
    """A second of a busy server's rounds, handed on, is folded a few rounds at a time
    with the event loop running in between (commands, and the writer's next round),
    not in one pause; and folds the same as the log read in full."""
    import mapek.monitor as monitor_module

    log = interleaved(cases=40, items=10)  # 840 appends in rounds of 30
    async with SQLiteStore(str(tmp_path / "s.db")) as store:
        monitor = Monitor(store, role_of=role_of)
        writer = Writer(store)
        for batch in bursts(log, [30] * 28):
            await writer.burst(batch)
        seen: set[int] = set()  # the monitor's position whenever another task ran
        folding = True

        async def another_task() -> None:
            while folding:
                seen.add(monitor.pos)
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            tg.start_soon(another_task)
            await monitor.catch_up()
            folding = False
        assert monitor.appends_handed_on == len(log) and monitor.appends_read == 0
        between = sorted(p for p in seen if 0 < p < len(log))
        per_turn = monitor_module.LOOP_TURN_EVERY
        assert len(between) >= len(log) // (per_turn + 30) - 1, between
        assert all(b - a <= per_turn + 30 for a, b in pairwise([0, *between])), between
        full, pos = await oracle(store)
        assert monitor.pos == pos == len(log)
        assert_same(monitor, full)


def test_a_long_fold_gives_the_gil_away_as_it_goes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fold of thousands of appends lets a thread that waits for the GIL (the store's
    writer, binding rows) have it every YIELD_EVERY appends, and folds the same."""
    import mapek.monitor as monitor_module

    gave: list[int] = []
    monkeypatch.setattr(monitor_module, "_give_way", lambda: gave.append(1))
    appends = [(pos, cid, evs) for pos, (cid, evs) in enumerate(interleaved(200, 10), 1)]
    m = Monitor(_NoLog())
    m._fold(iter(appends), monitor_module._LIVE_KINDS)
    assert len(gave) == len(appends) // monitor_module.YIELD_EVERY
    monkeypatch.setattr(monitor_module, "_give_way", lambda: None)
    plain = Monitor(_NoLog())
    plain._fold(iter(appends), monitor_module._LIVE_KINDS)
    assert (m.pos, m.closed, m.open, m.attributes) == (plain.pos, plain.closed, plain.open,
                                                       plain.attributes)
    assert len(m.closed) == 200 * 10


class _NoLog:
    async def read_events(self, after_pos: int = 0, limit: int = 10_000) -> list[Any]:
        return []
