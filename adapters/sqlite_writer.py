"""How a round of appends is written to SQLite, and the writer process that can do it.

`RoundWriter` is the one place that turns a round of appends into ONE transaction
(optimistic concurrency, events, projections, snapshots, phases, notices). The store
(adapters.sqlite_store) uses it in its writer thread or on the event loop; with
`writer="process"` this module runs as a child process of its own and uses it there:

    python -m adapters.sqlite_writer PATH DURABILITY

Why a process: a writer thread shares the event loop's GIL, and sqlite3 takes the GIL
back for every row it binds, so under load the writer convoys behind the loop's
Python (bench/README, "The loop waits for the writer"). A child has its own GIL: its
SQL runs beside the loop, not in turns with it.

The protocol, on the child's stdin and stdout: frames of a 4-byte big-endian length
and a msgpack body. The parent sends a round as the msgpack of its `Append`s,
unchanged (one encoder call per round; each append's `events` field is then the very
bytes the `body` column holds, so the child takes them as `msgspec.Raw` and never
decodes an event). The child answers every round, in order, with one of

    [0, refused indexes, log position of the round's last append or null]
    [1, message]   this round could not be written (its appends fail, the child goes on)
    [2, message]   the database failed: the child stops
    [5, message]   another process held the write lock past the busy timeout: this
                   round was not written (its appends fail, retryably), the child goes on

and, first, [3] once its connection is open, and, last (after EOF on its stdin, so
also when the parent dies: the child finishes the round in hand and exits, never
orphaned), [4, user CPU seconds, system CPU seconds]. SIGINT and SIGTERM are ignored:
sent to the whole process group, they are the parent's to act on (see main).

This module imports nothing of caseloop's, so the child starts in the time of an
interpreter, msgspec and sqlite3 (~0.2 s), not of the whole engine.
"""

# No `from __future__ import annotations`: msgspec reads the Structs' annotations below
# as objects, whatever module runs this one as __main__.
import contextlib
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

INSERT_EVENT = ("INSERT INTO events (case_id, first_seq, last_seq, at, body)"
                 " VALUES (?, ?, ?, ?, ?)")
UPSERT_CASE = (
    "INSERT INTO cases (case_id, workflow_id, workflow_version, state, created_at, updated_at,"
    " closed_at, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (case_id) DO UPDATE SET"
    " workflow_id = excluded.workflow_id, workflow_version = excluded.workflow_version,"
    " state = excluded.state, updated_at = excluded.updated_at,"
    " closed_at = excluded.closed_at, seq = excluded.seq")
# An append that opens or closes no phase leaves its case's workflow, state and
# closed_at as they were (only CaseCreated/CaseHandedOn and the case's end change
# them, and those are phases: actors.projection.changes): its row needs only the new
# time and version. Setting the other columns too would rewrite the row's entry in
# the cases_by_workflow index on every command (replaying an N = 100 run's rounds:
# about 10 % of the writer's time per append). Still an upsert: a row that is
# missing is written whole. A round writes its whole rows before its touches, so a
# touch from earlier in the round than a whole row must not move the row back: only a
# later version touches it.
TOUCH_CASE = (
    "INSERT INTO cases (case_id, workflow_id, workflow_version, state, created_at, updated_at,"
    " closed_at, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (case_id) DO UPDATE SET"
    " updated_at = excluded.updated_at, seq = excluded.seq WHERE excluded.seq > cases.seq")
UPSERT_ITEM = (
    "INSERT INTO work_items (case_id, item, task, kind, role, state, enabled_at, due, assignee,"
    " held_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (case_id, item) DO UPDATE"
    " SET state = excluded.state, due = excluded.due, assignee = excluded.assignee,"
    " held_until = excluded.held_until")
_LOG_END = "SELECT last_seq FROM events WHERE case_id = ? ORDER BY first_seq DESC LIMIT 1"
DELETE_ITEM = "DELETE FROM work_items WHERE case_id = ? AND item = ?"
UPSERT_SNAPSHOT = (
    "INSERT INTO snapshots (case_id, seq, body) VALUES (?, ?, ?) ON CONFLICT (case_id)"
    " DO UPDATE SET seq = excluded.seq, body = excluded.body")

_OPEN_PHASE = (
    "INSERT INTO phases (case_id, workflow_id, version, entered_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (case_id, workflow_id) DO UPDATE SET version = excluded.version,"
    " entered_at = excluded.entered_at, left_at = NULL, outcome = NULL")
_CLOSE_PHASE = ("UPDATE phases SET left_at = ?, outcome = ? WHERE case_id = ?"
                " AND left_at IS NULL")

INSERT_NOTICE = (
    "INSERT OR IGNORE INTO outbox (key, case_id, topic, channel, target, subject, body,"
    " payload, next_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")

_encode = msgspec.msgpack.Encoder().encode
_json = msgspec.json.encode
Rows = list[tuple[Any, ...]]

# A checkpoint about every this many WAL pages: SQLite's own interval.
CHECKPOINT_PAGES = 1000
# How long a write waits for another process's write lock (`caseloop import` into the
# served file, a sqlite3 shell) before its round fails with StoreBusy.
BUSY_TIMEOUT_MS = int(os.environ.get("CASELOOP_BUSY_TIMEOUT_MS") or 10_000)
RESTART_WAIT_MS = 100  # how long a RESTART checkpoint waits for readers (checkpoint)
# The log-end cache is a cache, not a second copy of the cases table.
LOG_ENDS_MAX = 200_000

# Replies (see the module's docstring).
WRITTEN, ROUND_FAILED, DB_FAILED, READY, BYE, ROUND_BUSY = 0, 1, 2, 3, 4, 5


class StoreBusy(Exception):
    """Another process held the database's write lock for longer than BUSY_TIMEOUT_MS:
    this round was not written (nothing of it is in the file), and the next may be."""

    transient = True  # actors.ports.EventStore.append: worth trying again later


def is_busy(exc: BaseException) -> bool:
    """SQLITE_BUSY: the write lock is someone else's -- a wait that ran out, not a
    database that failed."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.OperationalError) and code is not None and (
        code & 0xFF) == sqlite3.SQLITE_BUSY


def wal_pages(appends: int) -> int:
    """Roughly the pages a commit of `appends` appends adds to the WAL: a few of its
    own, and about one per append (the log, cases and work item B-trees share pages
    in a round). Both writers checkpoint every CHECKPOINT_PAGES of these."""
    return 4 + appends


def take_frames(buf: bytearray) -> list[bytes]:
    """The whole frames (4-byte big-endian length, then the body) at the front of
    `buf`, removed from it; a partial frame stays for the next read."""
    bodies = []
    start = 0
    while len(buf) - start >= 4:
        end = start + 4 + int.from_bytes(buf[start:start + 4], "big")
        if len(buf) < end:
            break
        bodies.append(bytes(buf[start + 4:end]))
        start = end
    del buf[:start]
    return bodies


def round_rows(appends: Sequence[Any], body: Callable[[Any], bytes] = _encode,
          count: Callable[[Any], int] = len,
          ) -> tuple[list[tuple[Any, ...]], ...]:
    """-> rows of events, cases (whole), cases (time and version: TOUCH_CASE), work
    items to upsert and to delete, snapshots. `body` and `count` read an append's
    events: a list of engine events in the store's own process, their msgpack bytes
    (msgspec.Raw) in the writer process."""
    events, cases, touches, upserts, deletes, snaps = [], [], [], [], [], []
    for a in appends:
        cid = a.case_id
        c = a.case
        ev = a.events
        events.append((cid, a.first_seq, a.first_seq + count(ev) - 1, c.updated_at,
                       body(ev)))
        (cases if a.phases else touches).append(
            (cid, c.workflow_id, c.workflow_version, c.state, c.created_at, c.updated_at,
             c.closed_at, c.seq))
        for it in a.item_upserts:
            upserts.append((cid, it.item, it.task, it.kind, it.role, it.state, it.enabled_at,
                            it.due, it.assignee, it.held_until))
        for item in a.item_deletes:
            deletes.append((cid, item))
        if a.snapshot is not None:
            snaps.append((cid, c.seq, a.snapshot))
    return events, cases, touches, upserts, deletes, snaps


def write_projections(db: sqlite3.Connection, cases: Rows, touches: Rows, upserts: Rows,
                      deletes: Rows, snaps: Rows) -> None:
    """The projection rows of `round_rows`, in the order the round must have them:
    whole cases rows before touches (TOUCH_CASE moves a row only forward), item upserts
    before deletes (an item enabled and closed in one round is gone)."""
    for sql, rows in ((UPSERT_CASE, cases), (TOUCH_CASE, touches), (UPSERT_ITEM, upserts),
                      (DELETE_ITEM, deletes), (UPSERT_SNAPSHOT, snaps)):
        if rows:  # most rounds have no snapshot, many no whole cases row
            db.executemany(sql, rows)


def _write_phases(db: sqlite3.Connection, appends: Sequence[Any]) -> None:
    # Rare (creates, hand-overs, ends) and order-dependent: statement by statement.
    for a in appends:
        for p in a.phases or ():
            if p.op == "open":
                db.execute(_OPEN_PHASE, (a.case_id, p.workflow_id, p.version, p.at))
            else:
                db.execute(_CLOSE_PHASE, (p.at, p.outcome, a.case_id))


def notice_row(n: Any, case_id: str, at: float) -> tuple[Any, ...]:
    return (n.key, n.case_id or case_id, n.topic, n.channel, n.target, n.subject, n.body,
            _json(n.payload).decode(), at, at)


def _write_notices(db: sqlite3.Connection, appends: Sequence[Any]) -> None:
    # Rare (SLA breaches, policy changes): only appends that carry notices pay.
    for a in appends:
        if a.notices:
            at = a.case.updated_at
            db.executemany(INSERT_NOTICE, [notice_row(n, a.case_id, at) for n in a.notices])


class RoundWriter:
    """Writes rounds of appends on one connection, each in one transaction, and
    remembers where each case's log ends (so that the check costs no SELECT for a
    case it wrote last). Used by one thread at a time."""

    def __init__(self, body: Callable[[Any], bytes] = _encode,
                 count: Callable[[Any], int] = len) -> None:
        self.body = body
        self.count = count
        self.log_ends: dict[str, int] = {}  # case -> last seq

    def write(self, db: sqlite3.Connection, appends: Sequence[Any], *, follow: bool,
              ) -> tuple[list[int], int | None]:
        """-> the appends refused (indexes), and the log position of the last append
        written if the accepted ones went in as one statement and `follow` (None
        otherwise: then their positions are not known to run without a gap)."""
        # Optimistic concurrency: an append must continue its case's log exactly where
        # the log ends -- the log itself is the truth, not a projection. The same case
        # may append several times in one round.
        refused = self._refused(db, appends)
        ok_idx = [i for i in range(len(appends)) if i not in refused]
        ok = [appends[i] for i in ok_idx]
        stopped, last_pos = self._write_ok(db, ok, follow) if ok else (False, None)
        if stopped:  # a uniqueness conflict: append by append, so only it fails
            refused |= {ok_idx[j] for j in self._write_one_by_one(db, ok)}
        ends = self.log_ends
        if len(ends) > LOG_ENDS_MAX:
            ends.clear()
        count = self.count
        for i, a in enumerate(appends):
            if i in refused:
                ends.pop(a.case_id, None)  # someone else writes this case: ask the log
            else:
                ends[a.case_id] = a.first_seq + count(a.events) - 1
        return sorted(refused), last_pos

    def _refused(self, db: sqlite3.Connection, appends: Sequence[Any]) -> set[int]:
        # Where each case's log ends: remembered from this writer's own commits, read
        # from the log on a miss. Another process appending behind our back is still
        # caught, by the UNIQUE (case_id, first_seq) constraint.
        ends = self.log_ends
        seqs: dict[str, int] = {}
        for cid in {a.case_id for a in appends}:
            end = ends.get(cid)
            if end is None:
                row = db.execute(_LOG_END, (cid,)).fetchone()
                end = row[0] if row else 0
            seqs[cid] = end
        refused = set()
        count = self.count
        for i, a in enumerate(appends):
            end = seqs[a.case_id]
            if a.first_seq != end + 1:
                refused.add(i)
            else:
                seqs[a.case_id] = end + count(a.events)
        return refused

    def _write_ok(self, db: sqlite3.Connection, appends: Sequence[Any], follow: bool,
                  ) -> tuple[bool, int | None]:
        """Write the round in one transaction. -> (a uniqueness conflict stopped it,
        the log position of its last append if `follow`)."""
        events, cases, touches, upserts, deletes, snaps = round_rows(appends, self.body,
                                                                self.count)
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(INSERT_EVENT, events)
            # Asked only for someone to hand the round on to (a statement more per round).
            last_pos = (int(db.execute("SELECT last_insert_rowid()").fetchone()[0])
                        if follow else None)
            write_projections(db, cases, touches, upserts, deletes, snaps)
            _write_phases(db, appends)
            _write_notices(db, appends)
            db.execute("COMMIT")
            return False, last_pos
        except sqlite3.IntegrityError:
            db.execute("ROLLBACK")
            return True, None
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _write_one_by_one(self, db: sqlite3.Connection, appends: Sequence[Any]) -> list[int]:
        # A conflict somewhere in the round: write append by append so only it fails.
        conflicts = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for i, a in enumerate(appends):
                ev, *projections = round_rows([a], self.body, self.count)
                db.execute("SAVEPOINT one")
                try:
                    db.executemany(INSERT_EVENT, ev)
                    write_projections(db, *projections)
                    _write_phases(db, [a])
                    _write_notices(db, [a])
                    db.execute("RELEASE one")
                except sqlite3.IntegrityError:
                    db.execute("ROLLBACK TO one")
                    db.execute("RELEASE one")
                    conflicts.append(i)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return conflicts


def checkpoint(db: sqlite3.Connection,
               writes: contextlib.AbstractContextManager[Any] | None = None) -> None:
    """Copy the WAL back into the database, on a connection that does nothing else.

    PASSIVE waits for nobody. But SQLite starts the WAL over only when a write begins
    with every frame copied back, which under steady writes never happens: the frames
    written during a checkpoint are always left. So once the WAL has grown to a few
    intervals, RESTART: it holds new writes off while it copies what is left (little:
    PASSIVE just ran) and waits a moment for readers to move on; the next write
    starts the WAL over.

    `writes`, held by the writer around each round, is taken for the RESTART: a
    writer committing back to back wins the write lock from SQLite's busy handler
    (it sleeps between tries) for the whole wait, and the WAL grows on meanwhile."""
    if passive_checkpoint(db):
        with writes or contextlib.nullcontext():
            restart_checkpoint(db)


def passive_checkpoint(db: sqlite3.Connection) -> bool:
    """The PASSIVE part of `checkpoint`; -> whether the WAL wants starting over."""
    _busy, frames, _copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return bool(frames > 4 * CHECKPOINT_PAGES)


def restart_checkpoint(db: sqlite3.Connection) -> None:
    """The RESTART part of `checkpoint`, to run with the writer held off."""
    db.execute("PRAGMA wal_checkpoint(RESTART)")


def checkpoint_connection(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute(f"PRAGMA busy_timeout={RESTART_WAIT_MS}")
    return db


# ------------------------------------------------------------- the writer process
# The child decodes a round into these: the fields of actors.ports.Append and its
# parts that a write reads, by name (msgspec matches map keys to fields and skips
# the others), so this module need not import the engine. `events` stays encoded.
class _Case(msgspec.Struct, gc=False):
    workflow_id: str
    workflow_version: int
    state: str
    created_at: float
    updated_at: float
    closed_at: float | None
    seq: int


class _Item(msgspec.Struct, gc=False):
    item: int
    task: str
    kind: str
    role: str | None
    state: str
    enabled_at: float
    due: float | None
    assignee: str | None = None
    held_until: float | None = None


class _Phase(msgspec.Struct, gc=False, array_like=True):
    op: str
    at: float
    workflow_id: str = ""
    version: int = 0
    outcome: str = ""


class _Notice(msgspec.Struct, gc=False):
    key: str
    channel: str
    target: str
    topic: str
    subject: str
    body: str
    case_id: str = ""
    payload: dict[str, Any] = {}


class _Append(msgspec.Struct, gc=False):
    case_id: str
    first_seq: int
    events: msgspec.Raw
    case: _Case
    item_upserts: list[_Item]
    item_deletes: list[int]
    snapshot: bytes | None = None
    phases: list[_Phase] | None = None
    notices: list[_Notice] | None = None


_decode_round = msgspec.msgpack.Decoder(list[_Append]).decode


def raw_count(raw: Any) -> int:
    """The length of the msgpack array `raw` holds, from its header."""
    b = memoryview(raw)
    h = b[0]
    if 0x90 <= h <= 0x9F:
        return int(h & 0x0F)
    if h == 0xDC:
        return int.from_bytes(b[1:3], "big")
    if h == 0xDD:
        return int.from_bytes(b[1:5], "big")
    raise ValueError(f"not a msgpack array: header {h:#x}")


def frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


class _Child:
    """The writer process: read a round, write it, answer, until EOF."""

    def __init__(self, path: str, durability: str, out: int) -> None:
        self.path = path
        self.out = out
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA synchronous={durability.upper()}")
        # The parent's rare writes (write(fn), specs, idempotency keys) and other
        # processes take the write lock too: wait for them, as the thread writer does.
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA wal_autocheckpoint=0")  # beside the writes, see _after
        self.db = db
        self.rounds = RoundWriter(bytes, raw_count)
        self.wal_pages = 0
        self.checkpointing = threading.Lock()
        self.writing = threading.Lock()
        self.cdb: sqlite3.Connection | None = None

    def reply(self, msg: Any) -> None:
        data = frame(_encode(msg))
        while data:
            data = data[os.write(self.out, data):]

    def serve(self, inp: int) -> None:
        self.reply([READY])
        buf = bytearray()
        while True:
            chunk = os.read(inp, 1 << 20)
            if not chunk:  # the parent closed the pipe or died: no more rounds
                return
            buf += chunk
            for body in take_frames(buf):
                if not self.round(body):
                    return

    def round(self, body: bytes) -> bool:
        """Write one round and answer. -> False once the database has failed."""
        try:
            appends = _decode_round(body)
        except (msgspec.DecodeError, ValueError) as exc:
            self.reply([ROUND_FAILED, repr(exc)])
            return True
        try:
            with self.writing:  # see checkpoint
                refused, last_pos = self.rounds.write(self.db, appends, follow=True)
        except (sqlite3.Error, OSError) as exc:
            if is_busy(exc):  # rolled back: the database is fine, the lock was taken
                self.reply([ROUND_BUSY, repr(exc)])
                return True
            self.reply([DB_FAILED, repr(exc)])
            return False
        except Exception as exc:  # e.g. a value SQLite cannot bind: this round only
            self.reply([ROUND_FAILED, repr(exc)])
            return True
        self.reply([WRITTEN, refused, last_pos])
        self._after(len(appends))
        return True

    def _after(self, n: int) -> None:
        # A checkpoint fsyncs (10-20 ms here): on a thread and connection of its own
        # beside the writes, never inside a COMMIT; its C code runs without the GIL,
        # so it holds up nothing here.
        self.wal_pages += wal_pages(n)
        if self.wal_pages >= CHECKPOINT_PAGES and self.checkpointing.acquire(blocking=False):
            self.wal_pages = 0
            threading.Thread(target=self._checkpoint, daemon=True).start()

    def _checkpoint(self) -> None:
        try:
            if self.cdb is None:
                self.cdb = checkpoint_connection(self.path)
            checkpoint(self.cdb, self.writing)
        except sqlite3.Error as exc:  # the next commit will tell if the disk is gone
            print(f"caseloop writer: WAL checkpoint failed: {exc!r}", file=sys.stderr)
        finally:
            self.checkpointing.release()

    def close(self) -> None:
        with self.checkpointing:  # let a checkpoint in progress finish
            pass
        self.db.close()
        if self.cdb is not None:
            self.cdb.close()
        t = os.times()
        self.reply([BYE, t.user, t.system])


def main(argv: list[str]) -> int:
    path, durability = argv
    # Ctrl-C in a terminal reaches the whole process group, and so does a service
    # manager's SIGTERM (systemd's KillMode=control-group, `kill -TERM -PGID`): the
    # parent's graceful stop still has requests in flight whose rounds come here, and
    # closes our stdin after its last round; we go then, not at the signal. (Never
    # orphaned: the parent's death closes the pipe too. Its stop kills us if need be.)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Replies go on a private copy of stdout; fd 1 becomes stderr, so that a stray
    # print (a library's warning) can never corrupt a frame.
    out = os.dup(1)
    os.dup2(2, 1)
    try:
        child = _Child(path, durability, out)
    except sqlite3.Error as exc:
        os.write(out, frame(_encode([DB_FAILED, repr(exc)])))
        return 1
    try:
        child.serve(0)
    except BrokenPipeError:  # the parent is gone: nobody to answer
        return 0
    with contextlib.suppress(BrokenPipeError):
        child.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
