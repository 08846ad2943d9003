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
import subprocess
import sys

import anyio
import msgspec
import pytest
from test_sqlite_store import LOOP, append_of, new_case

from actors.ports import Append, Notice
from adapters import sqlite_writer as wire
from adapters.sqlite_store import SQLiteStore, StoreUnavailable
from engine import Case, replay

pytestmark = pytest.mark.anyio


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


async def test_a_stopped_writer_makes_the_store_not_ready_until_it_answers_again(
        db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer that holds rounds and answers nothing (stopped, or a disk that does not
    return) has failed nobody yet, but the store is not ready: a readiness check says
    so, and says so no more once the writer answers."""
    monkeypatch.setattr("adapters.sqlite_store.WRITER_STALL_S", 0.3)  # ping's bound
    async with SQLiteStore(db, writer="process") as store:
        pid = store.writer_pid()
        assert pid is not None and await store.ping()
        os.kill(pid, signal.SIGSTOP)
        try:
            async with anyio.create_task_group() as tg:
                _, a = new_case("held", LOOP, {})
                tg.start_soon(store.append, a)
                await anyio.sleep(0.5)
                assert store.writer_stalled_for() >= 0.3 and not await store.ping()
                os.kill(pid, signal.SIGCONT)
            assert store.writer_stalled_for() == 0.0 and await store.ping()
            assert replay(await store.events("held"), LOOP).version == a.case.seq
        finally:
            os.kill(pid, signal.SIGCONT)


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


async def every_append_fails(store: SQLiteStore, together: int = 29) -> None:
    """Appends sent together, into the round being written and the ones queued behind
    it, all fail with StoreUnavailable; and so does one sent after them."""
    failures: list[BaseException] = []

    async def one(case_id: str) -> None:
        try:
            await store.append(new_case(case_id, LOOP, {})[1])
        except StoreUnavailable as exc:
            failures.append(exc)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for i in range(together):
                tg.start_soon(one, f"together-{i}")
    assert len(failures) == together
    with pytest.raises(StoreUnavailable):
        await store.append(new_case("late", LOOP, {})[1])


async def test_a_database_failure_in_the_writer_thread_fails_every_append(db: str) -> None:
    """The thread's counterpart of a killed writer process: its connection fails (here:
    closed under it), and the round being written, the appends queued behind it and
    every later one hear StoreUnavailable."""
    async with SQLiteStore(db, writer="thread") as store:
        _, a = new_case("c0", LOOP, {})
        await store.append(a)
        assert store._wdb is not None
        store._wdb.close()
        await every_append_fails(store)
        assert store.failed is not None and not await store.ping()


async def test_a_database_failure_in_the_writer_process_fails_every_append(db: str) -> None:
    """The child's write fails in SQLite itself (here: the log's table dropped under it
    by another connection): it answers DB_FAILED and stops; the round it was writing,
    the appends queued behind it and every later one hear StoreUnavailable, and the
    store still closes cleanly around the child that has gone."""
    async with SQLiteStore(db, writer="process") as store:
        pid = store.writer_pid()
        assert pid is not None
        _, a = new_case("c0", LOOP, {})
        await store.append(a)
        other = sqlite3.connect(db)
        other.execute("DROP TABLE events")
        other.close()
        await every_append_fails(store)
        assert isinstance(store.failed, sqlite3.OperationalError)
        assert "no such table: events" in str(store.failed)
    assert not running(pid)  # it stopped after its answer, and was waited for


async def test_a_writer_that_does_not_exit_is_killed_and_its_round_fails(
        db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's exit waits WRITER_EXIT_S for the child, then kills it: a child that
    hangs (stopped here) cannot hang the server's shutdown, and an append it held
    is failed, not acknowledged."""
    import adapters.sqlite_writer_process as writer_process

    monkeypatch.setattr(writer_process, "WRITER_EXIT_S", 0.5)
    outcome: list[BaseException | None] = []

    async def held(store: SQLiteStore) -> None:
        try:
            await store.append(new_case("c1", LOOP, {})[1])
            outcome.append(None)
        except StoreUnavailable as exc:
            outcome.append(exc)

    # The store's exit (first) waits WRITER_EXIT_S, then kills the child; `held` hears.
    with anyio.fail_after(10):
        async with (anyio.create_task_group() as tg,
                    SQLiteStore(db, writer="process") as store):
            pid = store.writer_pid()
            assert pid is not None
            await store.append(new_case("c0", LOOP, {})[1])
            os.kill(pid, signal.SIGSTOP)
            tg.start_soon(held, store)
            await anyio.sleep(0.1)
            assert store._child is not None and store._child.sent  # never to be answered
    assert len(outcome) == 1 and isinstance(outcome[0], StoreUnavailable)
    assert not running(pid)
    con = sqlite3.connect(db)
    assert con.execute("SELECT case_id FROM events").fetchall() == [("c0",)]
    con.close()


async def test_a_parent_gone_mid_frame_leaves_the_half_sent_round_unwritten(db: str) -> None:
    """The child's side of a parent killed while sending: a whole round, then half of
    the next, then EOF. The whole round is written and answered; the half is not
    written (nobody was told it was), and the child says goodbye and exits 0."""
    async with SQLiteStore(db):  # the schema, as the parent makes it before the child
        pass
    root = pathlib.Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, "-m", "adapters.sqlite_writer", db, "normal"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    encode = msgspec.msgpack.Encoder().encode
    whole = wire.frame(encode([new_case("c0", LOOP, {})[1]]))
    half = wire.frame(encode([new_case("c1", LOOP, {})[1]]))
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(whole + half[:len(half) // 2])
    proc.stdin.close()  # as the kernel does for a parent that dies
    out = proc.stdout.read()  # until the child closes its end: it has gone
    proc.stdout.close()
    assert proc.wait(timeout=20) == 0
    replies = [msgspec.msgpack.decode(b) for b in wire.take_frames(bytearray(out))]
    assert [r[0] for r in replies] == [wire.READY, wire.WRITTEN, wire.BYE]
    assert replies[1][1:] == [[], 1]  # nothing refused; the round ends at position 1
    con = sqlite3.connect(db)
    assert con.execute("SELECT case_id FROM events").fetchall() == [("c0",)]
    con.close()


def test_the_writer_process_runs_under_uvloop(db: str) -> None:
    """An application may run the store on uvloop (uvicorn picks it when installed):
    its pipe transports hide their fds and are not asyncio's classes. The store makes
    the rounds' pipe itself, so the writer process starts, writes, fails and stops
    there as on asyncio's loop."""
    pytest.importorskip("uvloop", reason="uvloop is not installed (pip install -e '.[dev]')")

    pids: list[int | None] = []

    async def run() -> None:
        async with SQLiteStore(db, writer="process") as store:
            pid = store.writer_pid()
            pids.append(pid)
            assert pid is not None
            await store.append(new_case("c0", LOOP, {})[1])
            os.kill(pid, signal.SIGKILL)
            with anyio.fail_after(10), pytest.raises(StoreUnavailable):
                await store.append(new_case("c1", LOOP, {})[1])
        async with SQLiteStore(db, writer="process") as store:
            assert type((await store.events("c0"))[0]).__name__ == "CaseCreated"
            assert not await store.case_exists("c1")

    anyio.run(run, backend="asyncio", backend_options={"use_uvloop": True})
    assert pids and pids[0] is not None and not running(pids[0])
