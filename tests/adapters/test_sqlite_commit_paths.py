"""How the SQLite store commits: small rounds on the event loop, large ones in the
writer's thread, and what that must not cost -- a stalled loop when another process
holds the write lock, or a WAL that grows without bound (these two also with the
writer in a process of its own, which then checkpoints the WAL itself).

(No `__init__.py` in tests/adapters: see test_sqlite_store.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import anyio
import pytest
from test_sqlite_store import LOOP

from actors import Runtime, VirtualClock
from adapters import sqlite_store
from adapters.sqlite_store import SQLiteStore, StoreBusy
from engine import replay

pytestmark = pytest.mark.anyio

# Another process takes the write lock and keeps it until it reads a line.
HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
print("released", flush=True)
"""



@pytest.mark.usefixtures("writer")
async def test_a_small_round_waits_for_another_process_lock_without_stalling_the_loop(
        db: str) -> None:
    async with SQLiteStore(db) as store, Runtime(store, VirtualClock(0.0)) as rt:
        rt.add_net(LOOP)
        await rt.create("loop", "before", {})  # a round of one: written inline
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, db], text=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            assert holder.stdout is not None and holder.stdin is not None
            assert holder.stdout.readline().strip() == "locked"
            done: list[str] = []
            ticks = 0

            async def create(case_id: str) -> None:
                await rt.create("loop", case_id, {})
                done.append(case_id)

            async def side_write() -> None:  # a rare write (outbox, signals) waits too
                await store.write(lambda c: c.execute(
                    "INSERT INTO knowledge (at, kind, subject, body) VALUES (0, 'k', 's', '{}')"))
                done.append("side")

            async with anyio.create_task_group() as tg:
                tg.start_soon(create, "during")
                tg.start_soon(side_write)
                started = time.monotonic()
                while time.monotonic() - started < 0.4:
                    await anyio.sleep(0.01)
                    ticks += 1
                # The loop kept running while the create waited for the lock ...
                assert done == [] and ticks >= 20, (done, ticks)
                holder.stdin.write("\n")
                holder.stdin.flush()
                with anyio.fail_after(10):
                    while len(done) < 2:
                        await anyio.sleep(0.01)
            # ... and nothing was lost or refused once the other process let go.
            assert sorted(done) == ["during", "side"]
            assert store.failed is None
            assert replay(await store.events("during"), LOOP).enabled_tasks() == ["Step"]
            await rt.complete("before", "Step", "again")  # and the store goes on
        finally:
            holder.kill()
            holder.wait()


def wal_pages(db: str) -> int:
    return os.path.getsize(db + "-wal") // 4096


# Never started over, the WAL would grow to about 7 pages per commit of one append
# (21,000 here), about one per append in rounds of 64 (20,000): well over the bound.
@pytest.mark.parametrize(("concurrent", "appends"), [(1, 3000), (100, 20_000)])
@pytest.mark.usefixtures("writer")
async def test_the_wal_stays_bounded_under_steady_writes(db: str, concurrent: int,
                                                         appends: int) -> None:
    # The writer's automatic checkpoints are off (inside an inline COMMIT they would
    # stall the loop); the store's own run beside it, and must still let SQLite start
    # the WAL over while commits keep coming.
    bound = 8 * sqlite_store.CHECKPOINT_PAGES
    largest = 0
    async with SQLiteStore(db) as store, Runtime(store, VirtualClock(0.0)) as rt:
        rt.add_net(LOOP)

        async def turns(case_id: str, n: int) -> None:
            await rt.create("loop", case_id, {})
            for _ in range(n):
                await rt.complete(case_id, "Step", "again")

        async def sample() -> None:
            nonlocal largest
            while True:
                largest = max(largest, wal_pages(db))
                await anyio.sleep(0.005)

        async with anyio.create_task_group() as outer:
            outer.start_soon(sample)
            async with anyio.create_task_group() as tg:
                for i in range(concurrent):
                    tg.start_soon(turns, f"c{i}", appends // concurrent)
            outer.cancel_scope.cancel()
        largest = max(largest, wal_pages(db))
        written = store.appends_committed
        assert written == appends + concurrent
        assert largest < bound, (largest, written)
        for i in (0, concurrent - 1):
            case = replay(await store.events(f"c{i}"), LOOP)
            assert case.version == 2 + 2 * (appends // concurrent)


@pytest.mark.parametrize(("durability", "concurrent", "inline"), [
    ("normal", 1, True),  # a round of one: on the loop
    ("normal", 192, False),  # a round of 192: in the thread
    ("full", 1, False),  # an fsync per COMMIT: never on the loop
])
async def test_where_a_round_is_written(db: str, durability: str, concurrent: int,
                                        inline: bool) -> None:
    # The thread writer's two paths (writer="process" writes every round in the child).
    async with (SQLiteStore(db, durability=durability,  # type: ignore[arg-type]
                            writer="thread") as store,
                Runtime(store, VirtualClock(0.0)) as rt):
        rt.add_net(LOOP)
        async with anyio.create_task_group() as tg:
            for i in range(concurrent):
                tg.start_soon(rt.create, "loop", f"c{i}", {})
        before = store.commits, store.commits_inline
        async with anyio.create_task_group() as tg:
            for i in range(concurrent):
                tg.start_soon(rt.complete, f"c{i}", "Step", "again")
        commits = store.commits - before[0]
        on_loop = store.commits_inline - before[1]
        assert commits >= 1 and on_loop == (commits if inline else 0), (commits, on_loop)
        for i in (0, concurrent - 1):
            assert replay(await store.events(f"c{i}"), LOOP).version == 4


@pytest.mark.usefixtures("writer")
async def test_a_lock_held_past_the_busy_timeout_fails_that_round_not_the_store(
        db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process (`caseloop import` or `simulate` into the served file, a sqlite3
    shell) keeps the write lock longer than the busy timeout: the appends that waited
    for it fail, retryably (StoreBusy: 503), and nothing of them is written; but the
    store is not broken for good -- it used to take SQLITE_BUSY for a failed database,
    and refused every write until the server was restarted."""
    monkeypatch.setenv("CASELOOP_BUSY_TIMEOUT_MS", "300")  # the writer process's
    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT_MS", 300)  # the thread's
    async with SQLiteStore(db) as store, Runtime(store, VirtualClock(0.0)) as rt:
        rt.add_net(LOOP)
        await rt.create("loop", "before", {})
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, db], text=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            assert holder.stdout is not None and holder.stdin is not None
            assert holder.stdout.readline().strip() == "locked"
            with anyio.fail_after(10), pytest.raises(StoreBusy):
                await rt.create("loop", "during", {})
            with anyio.fail_after(10), pytest.raises(StoreBusy):
                await rt.complete("before", "Step", "again")
            holder.stdin.write("\n")
            holder.stdin.flush()
            assert holder.stdout.readline().strip() == "released"
        finally:
            holder.kill()
            holder.wait()
        assert store.failed is None and await store.ping()
        assert await store.events("during") == []
        with anyio.fail_after(10):  # the same commands, again: written now
            await rt.create("loop", "during", {})
            case = await rt.complete("before", "Step", "again")
        assert case.version == len(await store.events("before"))
