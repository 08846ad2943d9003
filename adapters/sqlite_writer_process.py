"""The store's end of its writer process (`SQLiteStore(writer="process")`).

The child (adapters/sqlite_writer.py, its own module docstring has the protocol) owns
the connection that writes appends; this is the parent's side: start it, send it
rounds, read its answers, stop it. The store keeps the rounds and their senders; it
hands this class the means to take its open round, to report a round written and to
fail everything (`Rounds`), so that this side never reaches into the store.

Pipelining: every sender waits for its COMMIT, so a round of all of them would leave
the child idle while the loop works and the loop idle while the child writes. So a
round is sent as soon as it holds 1/IN_FLIGHT_MAX of what the last IN_FLIGHT_MAX rounds
held (COHORT_MIN at least), or at the end of the loop's tick, with at most IN_FLIGHT_MAX
rounds in the child: the senders settle into cohorts, one written while the other runs.

Replies are parsed in the subprocess protocol's callback on the loop (no task to wake
per round). If the child dies or a pipe breaks, the store fails every waiting and later
append; the child exits on EOF on its stdin (our exit, or this process's death) once
the round in hand is written, so it never outlives its parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import pathlib
import signal
import sqlite3
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import anyio
import msgspec

from adapters import sqlite_writer as wire

if TYPE_CHECKING:
    from adapters.sqlite_store import _Round

log = logging.getLogger(__name__)

# How many rounds may be in the child at once (see `appended`).
IN_FLIGHT_MAX = 2
# A round is split into cohorts only from this size on. Below it the commit and the
# round trip a cohort costs are more than the overlap gains.
COHORT_MIN = 16
# The pipe to the writer process: Linux's default /proc/sys/fs/pipe-max-size.
PIPE_BYTES = 1 << 20
# How long `stop` waits for the writer process to finish and go.
WRITER_EXIT_S = 30.0
# Rounds in the child and no answer for this long (a stopped or hung process, a disk
# that does not return; another process's write lock is waited for 10 s at most): the
# store says it is not ready (SQLiteStore.ping), though nothing has failed yet.
WRITER_STALL_S = 30.0
_ROOT = str(pathlib.Path(__file__).resolve().parent.parent)

_encode = msgspec.msgpack.Encoder().encode
_decode_reply = msgspec.msgpack.Decoder().decode


class RoundNotWritten(Exception):
    """The writer process could not write a round (a value SQLite cannot bind, a
    round that does not decode): its appends fail, the store goes on."""


class Rounds(NamedTuple):
    """What the store lends its writer process."""

    take: Callable[[], _Round | None]  # the open round, taken (None: it is empty)
    written: Callable[[_Round, list[int], int | None], None]  # committed: refused, last pos
    fail: Callable[[BaseException], None]  # the writer is gone: fail all, now and later
    failed: Callable[[], bool]  # has it failed already


def child_env() -> dict[str, str]:
    """The environment for a child running one of our modules: this checkout first on
    its path, whatever the working directory."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
    return env


def killed_by(code: int | None) -> str | None:
    """The name of the signal that ended a child with return code `code` (None: it
    exited, is still running, or the signal has no name)."""
    if code is None or code >= 0:
        return None
    try:
        return signal.Signals(-code).name
    except ValueError:
        return None


def proc_stat(pid: int) -> list[bytes] | None:
    """A process's /proc/PID/stat fields from its state on (field 3 of proc(5) is
    index 0), None if there is none to read (gone, or not Linux)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None


def cpu_of(pid: int) -> float | None:
    """A process's CPU seconds so far (Linux: /proc), None if there is none to read."""
    fields = proc_stat(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runnable(pid: int) -> bool:
    """Whether a process is running or waits for a CPU (Linux /proc state "R")."""
    fields = proc_stat(pid)
    return fields is not None and fields[0] == b"R"


class _Replies(asyncio.SubprocessProtocol):
    """The child's stdout and its exit."""

    def __init__(self, writer: WriterProcess) -> None:
        self.writer = writer
        self.buf = bytearray()
        self.transport: Any = None
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd != 1:
            return
        self.buf += data
        for body in wire.take_frames(self.buf):
            self.writer.on_reply(_decode_reply(body))

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:  # its stdout: no answer can come back
            self.writer.lost(exc or "the writer process closed its stdout")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # the child's: its exit status, for process_exited

    def process_exited(self) -> None:
        assert self.transport is not None
        code = self.transport.get_returncode()
        sig = killed_by(code)
        how = f"was killed by {sig}" if sig else f"exited with status {code}"
        if not self.writer.closing:
            # Said here, once: the appends that fail next hear only that a pipe went,
            # and the signal tells an operator why (SIGKILL: the OOM killer?).
            log.error("the SQLite writer process (pid %s) %s: nothing more is written "
                      "until the server restarts", self.transport.get_pid(), how)
        self.writer.lost(f"the writer process {how}")
        if not self.exited.done():
            self.exited.set_result(None)


class _RoundPipe(asyncio.Protocol):
    """The pipe that carries rounds to the child (its stdin)."""

    def __init__(self, writer: WriterProcess) -> None:
        self.writer = writer

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.writer.closing:  # not the EOF we sent: no more rounds can go
            self.writer.lost(exc or "the writer process closed its stdin")


class WriterProcess:
    def __init__(self, path: str, durability: str, rounds: Rounds) -> None:
        self.path = path
        self.durability = durability
        self.rounds = rounds
        self.transport: asyncio.SubprocessTransport | None = None
        self.replies: _Replies | None = None
        self.pipe: asyncio.WriteTransport | None = None  # rounds go here
        self.ready: asyncio.Future[None] | None = None
        self.sent: deque[_Round] = deque()  # in the child: written, answered in order
        self.cohort = 1 << 30  # none until a round has been answered
        # sizes of the last rounds answered, one per round the child may hold
        self.answered = deque([0] * IN_FLIGHT_MAX, maxlen=IN_FLIGHT_MAX)
        self.flush_due = False
        self.closing = False
        self.progress_at = 0.0  # monotonic: the child's last answer, or a round into none
        self.cpu: tuple[float, float] | None = None  # its last word: (user, system) s

    async def start(self) -> None:
        """Start the child on the store's database (whose schema exists already) and
        wait until its connection is open (or it has said why not)."""
        loop = asyncio.get_running_loop()
        self.ready = loop.create_future()
        env = child_env()
        # The rounds' pipe is made here, not by subprocess_exec, to size it: a pipe
        # holds 64 KiB, and a larger round would go in pieces, each when the loop next
        # polls -- between its senders' work -- and the child could not start on it
        # meanwhile. As large as Linux lets it be, a round goes in one write. (Made
        # here it is also a plain fd on every event loop: uvloop's pipe transports do
        # not show theirs.)
        rounds_out, rounds_in = os.pipe()
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(rounds_in, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        try:
            self.transport, self.replies = await loop.subprocess_exec(
                lambda: _Replies(self), sys.executable, "-m", "adapters.sqlite_writer",
                self.path, self.durability, stdin=rounds_out,
                stdout=asyncio.subprocess.PIPE, stderr=None, env=env)
        except BaseException:
            os.close(rounds_in)
            raise
        finally:
            os.close(rounds_out)  # the child's end
        pipe = open(rounds_in, "wb", buffering=0)  # noqa: SIM115 (the transport's now)
        try:
            self.pipe, _ = await loop.connect_write_pipe(lambda: _RoundPipe(self), pipe)
        except BaseException:
            pipe.close()  # EOF: the child goes
            raise
        await self.ready

    async def stop(self) -> None:
        """Let the child write what it holds, then EOF: it answers, exits, and is
        waited for (killed only if it does not go within WRITER_EXIT_S)."""
        transport, replies = self.transport, self.replies
        if transport is None or replies is None:
            return  # never started
        if not self.rounds.failed():
            rnd = self.rounds.take()
            if rnd is not None:
                self.send(rnd)
        self.closing = True
        if self.pipe is not None and not self.pipe.is_closing():
            self.pipe.close()
        with anyio.CancelScope(shield=True):
            # Shielded: a wait cut short would cancel the future itself, and the wait
            # after the kill would then fail at once.
            with anyio.move_on_after(WRITER_EXIT_S) as scope:
                await asyncio.shield(replies.exited)
            if scope.cancelled_caught:
                log.error("the SQLite writer process did not exit: killed")
                transport.kill()
                await replies.exited
        transport.close()
        self.transport = None

    def pid(self) -> int | None:
        return self.transport.get_pid() if self.transport is not None else None

    def cpu_now(self) -> float | None:
        """Its CPU seconds so far (Linux: /proc), None if it is not running."""
        pid = self.pid()
        return None if pid is None else cpu_of(pid)

    # ------------------------------------------------------------------ rounds
    def appended(self, waiting: int) -> None:
        """An append joined the open round, which now holds `waiting`."""
        if waiting >= self.cohort and len(self.sent) < IN_FLIGHT_MAX:
            self._send_if_room()  # a cohort: see on_reply
        elif not self.flush_due:
            # After the callbacks ready now (the other senders woken with this one).
            self.flush_due = True
            asyncio.get_running_loop().call_soon(self.flush)

    def send(self, rnd: _Round) -> None:
        """Hand a round to the child. The pipe's transport buffers: this never waits,
        so a sender may call it in the middle of the loop's tick."""
        try:
            body = _encode(rnd.appends)
        except Exception as exc:  # a value that does not encode: this round only
            for a in rnd.appends:
                rnd.errors[id(a)] = exc
            rnd.finish()
            return
        assert self.pipe is not None
        if not self.sent:
            self.progress_at = time.monotonic()
        self.sent.append(rnd)
        self.pipe.writelines((len(body).to_bytes(4, "big"), body))

    def stalled_for(self) -> float:
        """Seconds the child has held rounds without answering one (0: none held)."""
        return time.monotonic() - self.progress_at if self.sent else 0.0

    def flush(self) -> None:
        # Called at the end of the tick in which a round got its first append: send it
        # if the child has room, else the next answer will.
        self.flush_due = False
        self._send_if_room()

    def _send_if_room(self) -> None:
        if len(self.sent) < IN_FLIGHT_MAX and not self.closing and not self.rounds.failed():
            rnd = self.rounds.take()
            if rnd is not None:
                self.send(rnd)

    def on_reply(self, msg: list[Any]) -> None:
        kind = msg[0]
        if kind in (wire.WRITTEN, wire.ROUND_FAILED, wire.ROUND_BUSY):
            if not self.sent:  # failed meanwhile: its senders have heard already
                return
            rnd = self.sent.popleft()
            self.progress_at = time.monotonic()
            if kind == wire.WRITTEN:
                self.rounds.written(rnd, msg[1], msg[2])
            else:
                err = (RoundNotWritten(msg[1]) if kind == wire.ROUND_FAILED else
                       wire.StoreBusy(f"the database is locked by another process: {msg[1]}"))
                for a in rnd.appends:
                    rnd.errors.setdefault(id(a), err)
            rnd.finish()
            # Cohorts (see the module's docstring): the next round goes once it holds
            # 1/IN_FLIGHT_MAX of what the last ones held.
            self.answered.append(len(rnd.appends))
            self.cohort = max(COHORT_MIN, sum(self.answered) // IN_FLIGHT_MAX)
            self._send_if_room()
        elif kind == wire.READY:
            if self.ready is not None and not self.ready.done():
                self.ready.set_result(None)
        elif kind == wire.BYE:
            self.cpu = (msg[1], msg[2])
        elif kind == wire.DB_FAILED:
            self.rounds.fail(sqlite3.OperationalError(msg[1]))

    def lost(self, why: BaseException | str) -> None:
        if self.closing and not self.sent:
            return  # the end we asked for
        self.rounds.fail(why if isinstance(why, BaseException) else OSError(why))

    def failed(self, err: BaseException) -> list[_Round]:
        """The store has failed: -> the rounds the child held (their senders are to
        hear `err`); a start still waiting hears it too."""
        held = list(self.sent)
        self.sent.clear()
        if self.ready is not None and not self.ready.done():
            self.ready.set_exception(err)
        return held
