"""The store's writer in a process of its own (SQLiteStore(writer="process")): what
happens when that process dies, when the store closes, when a round cannot be sent,
and that the parent still hears of the notices its rounds wrote. Real processes and
real files throughout.

(No `__init__.py` in tests/adapters: see test_sqlite_store.py.)
"""

from __future__ import annotations

import os
import pathlib
import signal
import sqlite3

import anyio
import pytest
from test_sqlite_store import LOOP, append_of, new_case

from actors.ports import Append, Notice
from adapters.sqlite_store import SQLiteStore, StoreUnavailable
from engine import Case, replay

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def db(tmp_path: pathlib.Path) -> str:
    return str(tmp_path / "store.db")


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False


async def test_a_killed_writer_fails_every_append_and_loses_nothing_acknowledged(
        db: str) -> None:
    acked: dict[str, int] = {}  # case -> the last version whose append was acknowledged
    failures: list[BaseException] = []
    async with SQLiteStore(db, writer="process") as store:
        pid = store.writer_pid()
        assert pid is not None and running(pid)

        async def turns(case_id: str) -> None:
            case, a = new_case(case_id, LOOP, {})
            try:
                await store.append(a)
                acked[case_id] = case.version
                while True:
                    at = float(case.version)
                    await store.append(append_of(case, case.complete("Step", at, "again"),
                                                 at))
                    acked[case_id] = case.version
            except StoreUnavailable as exc:
                failures.append(exc)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for i in range(30):
                    tg.start_soon(turns, f"c{i}")
                while sum(acked.values()) < 600:
                    await anyio.sleep(0.005)
                os.kill(pid, signal.SIGKILL)
        # Every sender heard it -- those waiting then, and those that came after.
        assert len(failures) == 30
        assert store.failed is not None and not await store.ping()
        _, a = new_case("late", LOOP, {})
        with pytest.raises(StoreUnavailable):
            await store.append(a)
    async with SQLiteStore(db) as store:  # restart: all that was acknowledged is there
        for cid, version in acked.items():
            assert replay(await store.events(cid), LOOP).version >= version, cid


async def test_closing_the_store_stops_its_writer_after_the_last_round(db: str) -> None:
    async with SQLiteStore(db, writer="process") as store:
        pid = store.writer_pid()
        assert pid is not None
        _, a = new_case("c0", LOOP, {})
        await store.append(a)
    assert store.writer_pid() is None and not running(pid)  # exited and waited for
    assert store.writer_cpu is not None  # its last word: the CPU it used
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM events").fetchone() == (1,)
    con.close()


class _Unencodable:
    pass


@pytest.mark.parametrize("writer", ["thread", "process"])
async def test_a_round_that_cannot_be_written_fails_only_its_appends(
        db: str, writer: str) -> None:
    async with SQLiteStore(db, writer=writer) as store:  # type: ignore[arg-type]
        case, a = new_case("c0", LOOP, {})
        await store.append(a)
        good = Case.restore(case.net, case.snapshot())
        bad_append = append_of(case, case.complete("Step", 1.0, "again"), 1.0)
        bad_append.events = [*bad_append.events, _Unencodable()]
        with pytest.raises(TypeError):  # msgpack has no encoding for it
            await store.append(bad_append)
        assert store.failed is None  # the store goes on
        await store.append(append_of(good, good.complete("Step", 1.0, "again"), 1.0))
        assert replay(await store.events("c0"), LOOP).version == good.version


async def test_the_writer_process_tells_of_notices_and_writes_them_with_the_events(
        db: str) -> None:
    heard = 0

    def wake() -> None:
        nonlocal heard
        heard += 1

    async with SQLiteStore(db, writer="process") as store:
        store.on_notices = wake
        _, a = new_case("c0", LOOP, {})
        with_notice = Append(a.case_id, a.first_seq, a.events, a.case, a.item_upserts,
                             a.item_deletes, None, a.phases,
                             [Notice("n:1", "webhook", "http://x", "sla.breached", "s", "b",
                                     payload={"k": 1})])
        await store.append(with_notice)
        assert heard == 1
        rows = await store.query("SELECT key, case_id, payload FROM outbox")
        assert rows == [("n:1", "c0", '{"k":1}')]
        # and a rare write from the parent, beside the child's connection
        await store.write(lambda c: c.execute(
            "INSERT INTO knowledge (at, kind, subject, body) VALUES (0, 'k', 's', '{}')"))
        _, b = new_case("c1", LOOP, {})
        await store.append(b)
        assert heard == 1


async def test_a_database_failure_in_the_writer_thread_fails_every_append(db: str) -> None:
    """The thread's counterpart of a killed writer process: its connection fails (here:
    closed under it), and the round being written, the appends queued behind it and
    every later one hear StoreUnavailable."""
    async with SQLiteStore(db, writer="thread") as store:
        _, a = new_case("c0", LOOP, {})
        await store.append(a)
        assert store._wdb is not None
        store._wdb.close()
        failures: list[BaseException] = []

        async def one(case_id: str) -> None:
            try:
                await store.append(new_case(case_id, LOOP, {})[1])
            except StoreUnavailable as exc:
                failures.append(exc)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for i in range(1, 30):
                    tg.start_soon(one, f"c{i}")
        assert len(failures) == 29
        assert store.failed is not None and not await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.append(new_case("late", LOOP, {})[1])
