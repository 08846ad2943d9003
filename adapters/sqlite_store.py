"""The embedded event store: SQLite through aiosqlite, WAL mode, group commit.

One writer owns every append. Appends from all actors queue up in a round while
the previous one is being written; the writer then takes the round, writes it in ONE
transaction (events, projections, snapshots), commits, and wakes every waiter of that
round. Under load a commit carries many completions, which is what makes
ack-after-commit cheap. Readers use a second connection (WAL lets them run beside
the writer).

Where a round is written: a small one (INLINE_MAX) on the event loop itself, because
a hop into a thread and back costs more than writing it; a larger one in the writer's
thread, so that the loop is free for other work meanwhile. On the loop the
connection never waits: another process's write lock sends the round to the thread,
and the WAL is checkpointed beside the writer, on a connection and thread of its own
(a checkpoint fsyncs), never inside a COMMIT.

The writer in a process of its own (`writer="process"`, or CASELOOP_STORE_WRITER=process;
"thread" is the default): a thread shares the loop's GIL, and sqlite3 takes the GIL
back for every row it binds, so beside the loop's Python the two take turns instead
of overlapping (bench/README, "The loop waits for the writer"). In this mode a child
(adapters/sqlite_writer.py) owns the writing connection for appends; a round goes to
it as one msgpack frame of its appends (each append's events encode there to the very
bytes of the `body` column, which the child stores as they came: nothing is encoded
twice), and it writes the round in one transaction as the thread would
(sqlite_writer.RoundWriter, the same code). This side of it, with its pipelining in
cohorts, is adapters/sqlite_writer_process.py. The rare writes (`write(fn)`, specs,
idempotency keys, knowledge) stay on a connection of this process, in a thread, and
wait for the child's write lock (and the child for theirs) through busy_timeout. If
the child dies or its pipe breaks, `failed` is set and every waiting and later append
raises StoreUnavailable.

Optimistic concurrency: (case_id, seq) is unique, so an append whose first event
number is already taken fails with AppendConflict. If a batch hits a conflict, it is
rolled back and re-written append by append (each in a savepoint) so that only the
conflicting appends fail.

Live tail: a reader that follows the log as it grows (the MAPE-K Monitor) can take
the appends from the writer as they commit (`follow()`), as the engine's own objects
with their log positions, instead of reading back and decoding what was just written.
It is a hint, never the truth: a follower that finds a gap (a round it was not handed,
an overflow of its bounded queue, another process's appends) reads the log.

Durability: "normal" (synchronous=NORMAL in WAL) survives a killed process -- the
default; "full" (synchronous=FULL) also survives power loss, at the cost of an fsync
per commit (so a "full" round is never written on the event loop).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Literal, TypeVar

import aiosqlite
import anyio
import msgspec

from actors.ports import (
    Append,
    AppendConflict,
    CaseRow,
    ItemRow,
    Notice,
    SpecRow,
    StoredCase,
    TimerKey,
    TimerRow,
)
from adapters import sqlite_writer as wire
from adapters.sqlite_schema import create_schema
from adapters.sqlite_writer import (
    BUSY_TIMEOUT_MS,
    CHECKPOINT_PAGES,
    INSERT_NOTICE,
    RoundWriter,
    StoreBusy,
    checkpoint_connection,
    is_busy,
    notice_row,
    passive_checkpoint,
    restart_checkpoint,
)
from adapters.sqlite_writer_process import WRITER_STALL_S, Rounds, WriterProcess
from engine.events import Event

log = logging.getLogger(__name__)
Durability = Literal["normal", "full"]
WriterMode = Literal["thread", "process"]
T = TypeVar("T")


class StoreUnavailable(Exception):
    """The store's writer failed; nothing more can be made durable until a restart."""


_encode = msgspec.msgpack.Encoder().encode
_decode_many = msgspec.msgpack.Decoder(list[Event]).decode  # type: ignore[valid-type]
# The tail of the log as one row: positions and case ids as JSON arrays, the bodies
# back to back. group_concat makes text of blobs (sqlite3 would decode it as UTF-8):
# the CAST gives the bytes back. Aggregates take the rows in the subquery's order;
# SQLite does not promise it, so the positions are checked.
_TAIL = ("SELECT count(*), json_group_array(pos), json_group_array(case_id),"
         " CAST(group_concat(body, x'') AS BLOB)"
         " FROM (SELECT pos, case_id, body FROM events WHERE pos > ? ORDER BY pos LIMIT ?)")
_TAIL_ROWS = "SELECT pos, case_id, body FROM events WHERE pos > ? ORDER BY pos LIMIT ?"
_ints = msgspec.json.Decoder(list[int]).decode
_strs = msgspec.json.Decoder(list[str]).decode


Encoded = tuple[list[int], list[str], bytes]  # SQLiteStore.read_encoded's batch


def _tailed(row: Any) -> Encoded | None:
    """A batch from _TAIL's one row (None: read it with _TAIL_ROWS instead)."""
    if row is None:
        return None
    n, positions, case_ids, bodies = row
    if n == 0:
        return [], [], _array_header(0)
    pos: list[int] = _ints(positions)
    if pos != sorted(pos):  # the aggregates saw the rows out of order
        return None
    return pos, _strs(case_ids), _array_header(n) + bodies


def _tailed_rows(rows: Iterable[Any]) -> Encoded:
    rows = list(rows)
    return ([p for p, _, _ in rows], [c for _, c, _ in rows],
            _array_header(len(rows)) + b"".join(b for _, _, b in rows))


def read_encoded_from(db: sqlite3.Connection, after_pos: int, limit: int) -> Encoded:
    """`SQLiteStore.read_encoded` on a connection of one's own (a process tailing the
    log: adapters.monitor_tail)."""
    try:
        row = db.execute(_TAIL, (after_pos, limit)).fetchone()
    except sqlite3.DataError:
        row = None
    return _tailed(row) or _tailed_rows(db.execute(_TAIL_ROWS, (after_pos, limit)))


# Rounds of at most this many appends are written on the event loop (see _inline).
INLINE_MAX = 16
# The writer when none is given: "thread" unless this says otherwise.
WRITER_ENV = "CASELOOP_STORE_WRITER"


def deployed_writer(default: WriterMode) -> WriterMode:
    """The writer a deployment chose (WRITER_ENV; a whole test run's too), else
    `default`: the thread for the library, the process for `caseloop serve`."""
    return os.environ.get(WRITER_ENV) or default  # type: ignore[return-value]


def _array_header(n: int) -> bytes:
    """msgpack's header of an array of n items (array 32: any batch size)."""
    return b"\xdd" + n.to_bytes(4, "big")


# A round as handed on: its appends' case ids, and their event lists. Two containers a
# round, nothing new per append: every object the garbage collector tracks that is
# made (or kept alive) for a follower makes its collections more frequent or longer.
# Per completion on bench/durable.py (callgrind, following without folding) this costs
# 2.0k instructions at 100 concurrent cases, 2.2k at 1,000; handing on the appends
# themselves (three lists each kept alive) or a (case id, tuple of events) per append
# (two objects made) cost 3.2-7.4k, mostly in collections.
Handed = tuple[tuple[str, ...], list[list[Any]]]


class Following:
    """Rounds of committed appends handed on to one follower, in commit order: (the log
    position of the round's first append, the round as `Handed`). At most `limit`
    appends are held; beyond it the oldest rounds are dropped, and the follower, finding
    the gap, reads the log. The store holds a `Following` weakly: one that is gone is
    no longer fed. Whole rounds, not appends: handing on costs one entry per round."""

    __slots__ = ("__weakref__", "held", "limit", "rounds")

    def __init__(self, limit: int) -> None:
        self.rounds: deque[tuple[int, Handed]] = deque()
        self.held = 0
        self.limit = limit

    def __bool__(self) -> bool:
        return bool(self.rounds)

    def put(self, first: int, appends: Handed) -> None:
        self.rounds.append((first, appends))
        self.held += len(appends[0])
        while self.held > self.limit:
            self.held -= len(self.rounds.popleft()[1][0])

    def peek(self) -> tuple[int, Handed]:
        return self.rounds[0]

    def pop(self) -> tuple[int, Handed]:
        first, appends = self.rounds.popleft()
        self.held -= len(appends[0])
        return first, appends


class _Round:
    """The appends committed together, and the futures their senders wait on.

    One asyncio future per sender rather than one anyio.Event per round: a wait on an
    Event makes a future anyway, behind two more frames (anyio's wait, asyncio's) and
    a deque, on every append; here the sender awaits its future directly. The store
    already runs on asyncio only (aiosqlite), and this is what asyncio.Event does
    inside, so anyio's cancellation behaves the same: a cancelled sender's future is
    cancelled, and `finish` skips it. Measured with the writer's SQL stubbed out
    (bench/durable.py, N = 100, callgrind): about 8k fewer instructions per completion
    of ~174k, with the wake below.
    """

    __slots__ = ("appends", "errors", "waiters")

    def __init__(self) -> None:
        self.appends: list[Append] = []
        self.waiters: list[asyncio.Future[None]] = []
        self.errors: dict[int, BaseException] = {}

    def finish(self) -> None:
        """Wake every sender still waiting (a cancelled one is not)."""
        for fut in self.waiters:
            if not fut.done():
                fut.set_result(None)


class SQLiteStore:
    def __init__(self, path: str, *, durability: Durability = "normal",
                 writer: WriterMode | None = None) -> None:
        self.path = path
        self.durability = durability
        if writer is None:
            writer = deployed_writer("thread")
        if writer not in ("thread", "process"):
            raise ValueError(f"writer must be 'thread' or 'process', not {writer!r}")
        self.writer = writer
        self._reader: aiosqlite.Connection | None = None
        self._wdb: sqlite3.Connection | None = None
        self._round = _Round()  # the open round: appends join it
        self._wake = anyio.Event()
        self._tg: Any = None
        self._rounds = RoundWriter()  # writes rounds in the thread or on the loop
        self._on_loop = False  # the writer's connection is set up for use on the loop
        self._cdb: sqlite3.Connection | None = None  # checkpoints (see _checkpoint)
        self._checkpointing = False
        self._wal_pages = 0  # about how many pages were added since the last one
        self._next_purge = 0.0  # when expired idempotency keys are deleted next
        self.failed: BaseException | None = None  # the writer died: nothing more is durable
        self.commits = 0  # transactions written
        self.appends_committed = 0  # appends they carried (mean batch = this / commits)
        self.commits_inline = 0  # of the commits, those written on the event loop
        # Called after a COMMIT that wrote notices (the outbox worker's wake): deliver now,
        # not at the next poll. Runs on the event loop; must not raise.
        self.on_notices: Callable[[], None] | None = None
        self._followers: list[weakref.ref[Following]] = []
        # writer="process" (adapters/sqlite_writer_process.py); kept after the exit
        # for its last word (writer_cpu).
        self._child: WriterProcess | None = None

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> SQLiteStore:
        # The one writing connection: a plain sqlite3 connection used by one thread at
        # a time (the limiter), so a round is a single hop (measured: half the latency
        # of one aiosqlite call per statement). Reads go through aiosqlite.
        self._limiter = anyio.CapacityLimiter(1)
        self._wdb = await anyio.to_thread.run_sync(self._open_writer, limiter=self._limiter)
        self._reader = await self._connect()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        if self.writer == "process":
            self._child = WriterProcess(self.path, self.durability, Rounds(
                self._next_round, self._written, self._fail, lambda: self.failed is not None))
            try:
                await self._child.start()
            except BaseException:
                await self.__aexit__(None, None, None)
                raise
        else:
            self._tg.start_soon(self._writer)
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._child is not None:
            await self._child.stop()
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(None, None, None)
        if self._reader is not None:
            await self._reader.close()
        if self._wdb is not None:
            self._wdb.close()
        if self._cdb is not None:
            self._cdb.close()

    def _open_writer(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self.durability.upper()}")
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA wal_autocheckpoint=0")  # see _checkpoint
        try:
            create_schema(db)
        except BaseException:  # NewerSchema: a later caseloop's database, left as it is
            db.close()
            raise
        return db

    # ------------------------------------------------------- the writer process
    def writer_pid(self) -> int | None:
        """The writer process's id (writer="process", while it runs), None otherwise."""
        return self._child.pid() if self._child is not None else None

    def writer_cpu_now(self) -> float | None:
        """The writer process's CPU seconds so far (Linux: /proc), None without one."""
        return self._child.cpu_now() if self._child is not None else None

    @property
    def writer_cpu(self) -> tuple[float, float] | None:
        """The writer process's (user, system) CPU seconds, told as it exited."""
        return self._child.cpu if self._child is not None else None

    def _written(self, rnd: _Round, refused: list[int], last_pos: int | None) -> None:
        """A round is committed (by either writer): its refused appends fail with a
        conflict, followers are handed the rest, the outbox hears of its notices."""
        for i in refused:
            a = rnd.appends[i]
            rnd.errors[id(a)] = AppendConflict(a.case_id, a.first_seq)
        if last_pos is not None and self._followers:
            self._feed_followers(rnd.appends, refused, last_pos)
        self.commits += 1
        self.appends_committed += len(rnd.appends)
        if self.on_notices is not None and any(a.notices for a in rnd.appends):
            self.on_notices()

    def _fail(self, exc: BaseException, *writing: _Round) -> None:
        """The writer failed: every append waiting (in `writing`, sent to the child,
        queued) and every later one hears it."""
        if self.failed is None:
            self.failed = exc
        err = StoreUnavailable(f"the store cannot write: {self.failed!r}")
        held = self._child.failed(err) if self._child is not None else []
        rounds = [*writing, *held, self._round]
        self._round = _Round()
        for r in rounds:
            for a in r.appends:
                r.errors.setdefault(id(a), err)
            r.finish()

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        for pragma in ("journal_mode=WAL", f"synchronous={self.durability.upper()}",
                       f"busy_timeout={BUSY_TIMEOUT_MS}"):
            await conn.execute_fetchall(f"PRAGMA {pragma}")  # see _all
        return conn

    async def ping(self) -> bool:
        """Ready: the writer is alive and answering, and the database answers."""
        if self.failed is not None or self._reader is None:
            return False
        if self.writer_stalled_for() > WRITER_STALL_S:
            return False
        return await self._all("SELECT 1") == [(1,)]

    def writer_stalled_for(self) -> float:
        """Seconds the writer process has held rounds without answering (0: none, or
        the thread writer)."""
        return self._child.stalled_for() if self._child is not None else 0.0

    # -------------------------------------------------------------------- appends
    async def append(self, batch: Append) -> None:
        if self.failed is not None:
            raise StoreUnavailable(f"the store cannot write: {self.failed!r}")
        rnd = self._round  # queued synchronously: commit order == call order
        appends = rnd.appends
        appends.append(batch)
        fut = asyncio.get_running_loop().create_future()
        rnd.waiters.append(fut)
        if self._child is not None:
            self._child.appended(len(appends))
        elif len(appends) == 1:
            # The first append of a round wakes the writer; it takes the round whole
            # (_next_round), so the later ones need not set the event again.
            self._wake.set()
        await fut
        err = rnd.errors.get(id(batch))
        if err is not None:
            raise err

    def follow(self, limit: int = 20_000) -> Following:
        """Hand every append from now on, once committed, to a new `Following` (see
        the module's docstring). The store holds it weakly: drop it to stop."""
        following = Following(limit)
        self._followers.append(weakref.ref(following))
        return following

    def _next_round(self) -> _Round | None:
        # What queued while the last round was written, taken at once. (Splitting a
        # round so that one fills while the other is written measured worse: 13 %
        # fewer completions/s at 100 concurrent cases, 3 % at 1,000 -- a commit and a
        # thread hop more per round of commands; bench/README, "Inline commits".)
        if self._round.appends:
            rnd, self._round = self._round, _Round()
            return rnd
        return None

    async def _writer(self) -> None:
        while True:
            rnd = self._next_round()
            if rnd is None:
                await self._wake.wait()
                self._wake = anyio.Event()
                continue
            try:
                with anyio.CancelScope(shield=True):
                    await self._write_round(rnd)
            except (sqlite3.Error, OSError) as exc:
                if not is_busy(exc):  # the database failed: all hear it
                    self._fail(exc, rnd)  # this round and whatever queued behind it
                    return  # readiness reports it; appends from now on fail at once
                # Another process kept the write lock past the busy timeout: this round
                # was rolled back and fails, retryably; the next one may get the lock.
                err = StoreBusy(f"the database is locked by another process: {exc!r}")
                for a in rnd.appends:
                    rnd.errors.setdefault(id(a), err)
            except Exception as exc:  # this round could not be written (e.g. a value
                # that does not encode): its appends fail, the store goes on
                for a in rnd.appends:
                    rnd.errors.setdefault(id(a), exc)
            finally:
                rnd.finish()
            self._wal_pages += wire.wal_pages(len(rnd.appends))
            if self._wal_pages >= CHECKPOINT_PAGES and not self._checkpointing:
                self._wal_pages = 0
                self._checkpointing = True
                self._tg.start_soon(self._checkpoint)

    async def _write_round(self, rnd: _Round) -> None:
        written = self._write_inline(rnd.appends) if self._inline(rnd) else None
        if written is None:
            # One call into the writer's thread: a transaction of a hundred appends
            # costs one thread hop, not one per statement, and the event loop is free
            # for other work (requests, timers, reads) while the thread writes.
            written = await self._in_thread(self._write_sync, rnd.appends)
        else:
            self.commits_inline += 1
        self._written(rnd, *written)

    def _feed_followers(self, appends: list[Append], refused: list[int], last_pos: int,
                        ) -> None:
        # The accepted appends were inserted in one statement, in round order, in a
        # transaction that held the write lock: their positions run without a gap up
        # to the last one inserted.
        if refused:
            skip = set(refused)
            appends = [a for i, a in enumerate(appends) if i not in skip]
        first = last_pos - len(appends) + 1
        handed = (tuple([a.case_id for a in appends]), [a.events for a in appends])
        gone = False
        for ref in self._followers:
            following = ref()
            if following is None:
                gone = True
            else:
                following.put(first, handed)
        if gone:
            self._followers = [r for r in self._followers if r() is not None]

    def _inline(self, rnd: _Round) -> bool:
        # A hop into the thread and back costs 120-240 us on this kind of machine
        # (bench/README: "Inline commits"), more than writing a few appends: a small
        # round is written on the event loop. Only when a COMMIT is a write() into the
        # WAL and no fsync: with durability "full" every commit waits for the disk.
        return self.durability == "normal" and len(rnd.appends) <= INLINE_MAX

    def _write_inline(self, appends: list[Append]) -> tuple[list[int], int | None] | None:
        """Write on the event loop if the connection is free and no other process
        holds the write lock (-> what `_write_sync` returns); -> None to go through
        the thread instead."""
        try:
            self._limiter.acquire_nowait()
        except anyio.WouldBlock:  # a rare write (outbox, signals) is using it
            return None
        try:
            if not self._on_loop:
                self._configure(on_loop=True)
            written = self._write_sync(appends)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                raise
            return None  # another process writes: wait for it in the thread
        finally:
            self._limiter.release()
        return written

    def _configure(self, *, on_loop: bool) -> None:
        # On the event loop the connection must never wait for another process's
        # write lock: SQLITE_BUSY at once, and the round goes to the thread, which
        # waits as long as SQLite is told to.
        assert self._wdb is not None
        self._wdb.execute(f"PRAGMA busy_timeout={0 if on_loop else BUSY_TIMEOUT_MS}")
        self._on_loop = on_loop

    async def _checkpoint(self) -> None:
        # The WAL is copied back into the database on a connection of its own, in a
        # thread of its own, beside the writer: a checkpoint fsyncs (10-20 ms here),
        # and inside a COMMIT (SQLite's automatic checkpoint, off on the writer's
        # connection) it would hold up every round behind it -- or the event loop,
        # for a round written inline.
        try:
            if await anyio.to_thread.run_sync(self._passive_checkpoint):
                # The RESTART holding the writer's connection (its limiter: a round
                # then goes to the thread and waits there, never on the loop), as
                # sqlite_writer.checkpoint explains: raced through SQLite's busy
                # handler, rounds written back to back win the lock for its whole wait.
                await anyio.to_thread.run_sync(restart_checkpoint, self._checkpoint_db(),
                                               limiter=self._limiter)
        except sqlite3.Error as exc:  # the next commit will tell if the disk is gone
            log.warning("WAL checkpoint failed: %r", exc)
        finally:
            self._checkpointing = False

    def _checkpoint_db(self) -> sqlite3.Connection:
        if self._cdb is None:
            self._cdb = checkpoint_connection(self.path)
        return self._cdb

    def _passive_checkpoint(self) -> bool:
        return passive_checkpoint(self._checkpoint_db())

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` with the writer's connection, in the writer's thread."""
        def run() -> T:
            if self._on_loop:
                self._configure(on_loop=False)
            return fn(*args)
        return await anyio.to_thread.run_sync(run, limiter=self._limiter)

    def _write_sync(self, appends: list[Append]) -> tuple[list[int], int | None]:
        """-> the appends refused (indexes), and the log position of the last append
        written if the accepted ones went in as one statement and someone follows the
        store (None otherwise: see `_feed_followers`)."""
        assert self._wdb is not None
        return self._rounds.write(self._wdb, appends, follow=bool(self._followers))

    # ---------------------------------------------------------------------- reads
    async def load(self, case_id: str) -> StoredCase | None:
        snaps = await self._all("SELECT seq, body FROM snapshots WHERE case_id = ?",
                                (case_id,))
        snap = snaps[0] if snaps else None
        after = snap[0] if snap else 0
        # Read after the snapshot: the events are at least as new as it is.
        rows = await self._all("SELECT first_seq, body FROM events WHERE case_id = ?"
                               " AND last_seq > ? ORDER BY first_seq", (case_id, after))
        if not snap and not rows:
            return None
        events: list[Any] = []
        for first, body in rows:
            batch = _decode_many(body)
            events += batch[max(0, after + 1 - first):]
        return StoredCase(case_id, snap[1] if snap else None, after, events)

    async def case_exists(self, case_id: str) -> bool:
        return bool(await self._all("SELECT 1 FROM cases WHERE case_id = ?", (case_id,)))

    async def events(self, case_id: str) -> list[Any]:
        """The whole log of one case, from the first event (history views, export)."""
        rows = await self._all("SELECT body FROM events WHERE case_id = ? ORDER BY first_seq",
                               (case_id,))
        return [e for (b,) in rows for e in _decode_many(b)]

    async def read_events(self, after_pos: int = 0, limit: int = 10_000,
                          ) -> list[tuple[int, str, int, list[Any]]]:
        """Appends of every case in commit order after a position (the monitor's tail):
        (pos, case_id, first_seq, events)."""
        rows = await self._all("SELECT pos, case_id, first_seq, body FROM events WHERE pos > ?"
                               " ORDER BY pos LIMIT ?", (after_pos, limit))
        return [(p, c, f, _decode_many(b)) for p, c, f, b in rows]

    async def read_encoded(self, after_pos: int = 0, limit: int = 10_000,
                           ) -> tuple[list[int], list[str], bytes]:
        """`read_events` left encoded, for a tail that decodes only what it folds
        (mapek.monitor): (positions, case_ids, events), one entry per append in
        commit order, `events` ONE msgpack array holding each append's event array as
        engine.events encodes it.

        SQLite builds the whole batch as one value, in one step off the event loop's
        thread. Fetched row by row, the reading thread took the GIL back at every row
        (sqlite3 releases it around each step) to build that row's tuple: on
        bench/durable.py it spent 4.7-6.0 CPU-us per completion that way, 2.0-2.7 so."""
        assert self._reader is not None
        try:
            (row,) = await self._reader.execute_fetchall(_TAIL, (after_pos, limit))
        except sqlite3.DataError:  # longer than SQLite lets one value be: row by row
            row = None
        return _tailed(row) or _tailed_rows(
            await self._reader.execute_fetchall(_TAIL_ROWS, (after_pos, limit)))

    async def pending_timers(self, after: TimerKey | None = None,
                             limit: int | None = None) -> list[TimerRow]:
        sql = "SELECT case_id, item, due FROM work_items WHERE due IS NOT NULL"
        args: tuple[Any, ...] = ()
        if after is not None:  # a row value: the index on due finds the start
            sql += " AND (due, case_id, item) > (?, ?, ?)"
            args = after
        sql += " ORDER BY due, case_id, item"
        if limit is not None:
            sql += " LIMIT ?"
            args += (limit,)
        return [TimerRow(*row) for row in await self._all(sql, args)]

    async def open_items(self, kind: str | None = None) -> list[ItemRow]:
        sql = ("SELECT case_id, item, task, kind, role, state, enabled_at, due, assignee,"
               " held_until FROM work_items")
        args: tuple[Any, ...] = ()
        if kind is not None:
            sql += " WHERE kind = ?"
            args = (kind,)
        return [ItemRow(*row) for row in await self._all(sql + " ORDER BY enabled_at", args)]

    async def open_phases(self) -> list[tuple[str, str, float]]:
        return [tuple(r) for r in await self._all(  # type: ignore[misc]
            "SELECT case_id, workflow_id, entered_at FROM phases WHERE left_at IS NULL")]

    async def save_spec(self, row: SpecRow) -> None:
        # Through the writer's connection, outside the group-commit queue: specs are
        # registered rarely and must be durable before a case may use them.
        def save() -> None:
            assert self._wdb is not None
            self._wdb.execute(
                "INSERT OR IGNORE INTO specs (workflow_id, version, digest, document,"
                " registered_at) VALUES (?, ?, ?, ?, ?)",
                (row.workflow_id, row.version, row.digest, row.document, row.registered_at))

        await self._in_thread(save)

    async def specs(self) -> list[SpecRow]:
        return [SpecRow(*row) for row in await self._all(
            "SELECT workflow_id, version, digest, document, registered_at FROM specs"
            " ORDER BY workflow_id, version")]

    # ------------------------------------------------------- API reads (projections)
    async def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        """Every row of a statement on the reading connection, in ONE call into its
        thread. A cursor fetched in a second call leaves the statement open between
        the two, and with it the connection's read transaction: another coroutine's
        read in between runs inside it and sees the database as it was then -- a
        case created meanwhile was "not found" (test_sqlite_store.py,
        test_a_read_sees_every_commit_before_it_while_other_reads_run)."""
        assert self._reader is not None
        return list(await self._reader.execute_fetchall(sql, args))

    async def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        """Rows of a read-only statement (parameterized) on the reading connection:
        for the modules that own a table of their own (outbox, signals)."""
        return await self._all(sql, args)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` in ONE transaction on the writer's connection, outside
        the group-commit queue (rare writes: outbox claims, signals); -> its result.
        A raise rolls the transaction back."""
        def run() -> T:
            db = self._wdb
            assert db is not None
            db.execute("BEGIN IMMEDIATE")
            try:
                out = fn(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return out

        if self.failed is not None:
            raise StoreUnavailable(f"the store cannot write: {self.failed!r}")
        return await self._in_thread(run)

    async def list_cases(self, *, workflow: str | None = None, state: str | None = None,
                         created_after: float | None = None,
                         created_before: float | None = None,
                         after: tuple[float, str] | None = None, limit: int = 100,
                         ) -> list[CaseRow]:
        """Cases newest first, keyset-paginated on (created_at, case_id) < `after`.

        `workflow` matches every workflow the case passed through, so a deal that WF2
        handed to WF3 is still listed under deal-approval-gate.
        """
        where, args = [], []
        if workflow is not None:
            where.append("case_id IN (SELECT case_id FROM phases WHERE workflow_id = ?)")
            args.append(workflow)
        for cond, val in (("state = ?", state), ("created_at >= ?", created_after),
                          ("created_at < ?", created_before)):
            if val is not None:
                where.append(cond)
                args.append(val)
        if after is not None:
            where.append("(created_at < ? OR (created_at = ? AND case_id < ?))")
            args += [after[0], after[0], after[1]]
        sql = ("SELECT case_id, workflow_id, workflow_version, state, created_at, updated_at,"
               " closed_at, seq FROM cases")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, case_id DESC LIMIT ?"
        return [CaseRow(*r) for r in await self._all(sql, (*args, limit))]

    async def worklist(self, *, user: str | None = None, roles: list[str] | None = None,
                       limit: int = 500, now: float | None = None,
                       after: tuple[float, str, int] | None = None,
                       ) -> list[tuple[ItemRow, str]]:
        """Open human work items (with their case's workflow): those claimed by `user`,
        and those not yet claimed whose role is one of `roles`; at `now`, not those a
        dispatch policy still holds. Oldest first, keyset-paginated on (enabled_at,
        case_id, item) > `after`: a reader that leaves rows out (work beyond a person's
        authority) reads on from where the last page ended."""
        where, args = ["w.kind = 'human'", "w.state != 'failed'"], []
        if now is not None:
            where.append("(w.held_until IS NULL OR w.held_until <= ?)")
            args.append(now)
        if after is not None:  # a row value: SQLite 3.15+, PostgreSQL alike
            where.append("(w.enabled_at, w.case_id, w.item) > (?, ?, ?)")
            args += list(after)
        ors = []
        if user is not None:
            ors.append("w.assignee = ?")
            args.append(user)
        if roles:
            ors.append(f"(w.assignee IS NULL AND w.role IN ({','.join('?' * len(roles))}))")
            args += roles
        if user is not None or roles is not None:
            where.append("(" + (" OR ".join(ors) or "0") + ")")
        rows = await self._all(
            "SELECT w.case_id, w.item, w.task, w.kind, w.role, w.state, w.enabled_at, w.due,"
            " w.assignee, w.held_until, c.workflow_id FROM work_items w"
            f" JOIN cases c USING (case_id) WHERE {' AND '.join(where)}"
            " ORDER BY w.enabled_at, w.case_id, w.item LIMIT ?", (*args, limit))
        return [(ItemRow(*r[:10]), r[10]) for r in rows]

    async def open_counts(self, people: Sequence[str]) -> dict[str, int]:
        """Open work items assigned to each person (least-loaded assignment)."""
        if not people:
            return {}
        rows = await self._all(
            "SELECT assignee, count(*) FROM work_items WHERE assignee IN"
            f" ({','.join('?' * len(people))}) GROUP BY assignee", tuple(people))
        return {a: n for a, n in rows}

    async def phases(self, workflow_id: str, since: float,
                     ) -> list[tuple[float, float | None, str | None]]:
        """(entered_at, left_at, outcome) of the cases that entered a workflow since."""
        return await self._all(
            "SELECT entered_at, left_at, outcome FROM phases WHERE workflow_id = ?"
            " AND entered_at >= ?", (workflow_id, since))

    async def idempotent_response(self, key: str, now: float,
                                  ) -> tuple[str, int, bytes] | None:
        """(request hash, status, body) stored under an Idempotency-Key, if unexpired."""
        rows = await self._all("SELECT request_hash, status, response FROM idempotency"
                               " WHERE key = ? AND expires_at > ?", (key, now))
        return (rows[0][0], rows[0][1], bytes(rows[0][2])) if rows else None

    async def remember_response(self, key: str, request_hash: str, status: int, body: bytes,
                                expires_at: float, now: float) -> None:
        purge = now >= self._next_purge  # expired keys go in bulk, not per request
        if purge:
            self._next_purge = now + 600.0

        def save() -> None:
            assert self._wdb is not None
            if purge:
                self._wdb.execute("DELETE FROM idempotency WHERE expires_at <= ?", (now,))
            self._wdb.execute(
                "INSERT INTO idempotency (key, request_hash, status, response, expires_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
                " request_hash = excluded.request_hash, status = excluded.status,"
                " response = excluded.response, expires_at = excluded.expires_at",
                (key, request_hash, status, body, expires_at))

        await self._in_thread(save)

    async def count_events(self) -> int:
        rows = await self._all("SELECT coalesce(sum(last_seq - first_seq + 1), 0) FROM events")
        return int(rows[0][0]) if rows else 0

    async def log_position(self) -> int:
        """The last append's position in the log (0: empty): one index probe, for
        pollers that only ask whether the log moved (the live stream, kept insights)."""
        rows = await self._all("SELECT coalesce(max(pos), 0) FROM events")
        return int(rows[0][0])


# ------------------------------------------------------------ MAPE-K knowledge
class KnowledgeStore:
    """mapek.knowledge.KnowledgeLog on the SQLite store: the append-only `knowledge`
    table, with notices written to the outbox in the same transaction."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    async def append_knowledge(self, records: list[Any], notices: list[Notice] | None = None,
                               ) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.executemany("INSERT INTO knowledge (at, kind, subject, body) VALUES (?, ?, ?, ?)",
                           [(r.at, r.kind, r.subject, r.body) for r in records])
            at = records[-1].at if records else 0.0
            db.executemany(INSERT_NOTICE, [notice_row(n, "", at) for n in notices or ()])

        await self.store.write(write)
        if notices and self.store.on_notices is not None:
            self.store.on_notices()

    async def read_knowledge(self, after: int = 0) -> list[tuple[int, float, str, str, str]]:
        return [tuple(r) for r in await self.store.query(
            "SELECT seq, at, kind, subject, body FROM knowledge WHERE seq > ? ORDER BY seq",
            (after,))]
