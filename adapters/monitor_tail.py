"""The Monitor's fold in a process of its own, tailing the SQLite log.

Why. A server's event loop process is the one that runs out of CPU first: a Monitor
folding beside the commands costs it about a tenth of its completions (mapek.monitor,
"Where the fold runs"). The child here reads the log on its own read-only connection
-- WAL: readers never wait for the writer, nor it for them -- and folds it (`Fold`:
mapek/_tailfold.c's TailFold, the Monitor's rules in C over the log's bytes, or where
that is not built a Monitor of its own, `hands_over=True`), at the lowest CPU priority
(SCHED_IDLE: the commands and the store's writer come first). The server's Monitor
mirrors it (`Monitor(tail=...)`): each `catch_up` asks for what changed and merges it.

Protocol, over the child's stdin and stdout. The parent writes one byte: "?", what
changed?, or "+", the next part of the answer under way. The child folds what has been
committed since it last folded (on "?", and on "+" after the last part of an answer;
the parts of one answer come without folding more between them), FOLD_MOST appends at
most, then answers one frame: four bytes of length (big-endian), then
`mapek.monitor.Changes` in msgpack -- PART closed items at most, `more` if parts or
appends are left, and the parent asks again until there are none. The child folds only
when asked: folding as the log grew (every 100 ms), woken ten times a second beside
the commands and the writer, it cost the server's completions more than twice as much
(bench/README, "The fold in a process of its own").

Lifetime. The child ignores SIGINT and SIGTERM (a terminal's Ctrl-C and a service
manager's stop reach the whole process group; the server, stopping, closes the pipe)
and exits on EOF on its stdin -- our close, or this process's death -- so it never
outlives its parent. A child that dies, or does not answer within ANSWER_S, is killed
and replaced by another, whose first answer says it is `fresh`: the mirror takes the
new fold of all of it in place of what it had from the log. Once per RESPAWN_S at
most: lost again sooner, it is `TailLost`, and the mirror folds the log itself until
it asks again, later (mapek.monitor.ASK_LOST_AFTER), and another is started. A child
starved at SCHED_IDLE -- an answer late, no CPU for it meanwhile -- counts as lost, and
its replacement runs at nice STARVED_NICE (see STARVED_S).
"""

from __future__ import annotations

import contextlib
import gc
import os
import pathlib
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

import anyio
import msgspec
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from adapters.sqlite_store import read_encoded_from
from adapters.sqlite_writer_process import child_env, cpu_of, killed_by, runnable
from engine.events import EVENT_TYPES
from mapek.monitor import Changes, Monitor, TailLost, TailRefused

# Appends read per statement. (The Monitor in a server's loop reads 256, which its
# collector takes in its stride; here the collector is lazy: see main.)
BATCH = 1024
# Closed items per part of an answer: decoded in ~2 ms on the event loop.
PART = 4096
# Appends folded per answer at most: a long log (the first answer after a start folds
# all of it; a year's 1.25M events take ~10 s) comes in parts of a fraction of a second.
FOLD_MOST = 64 * BATCH
# A part of an answer takes this long at most (FOLD_MOST appends, at the lowest CPU
# priority: on a busy machine the fold waits for idle time); so does a child's start.
ANSWER_S = 60.0
# A lost child is replaced at most once this many seconds; lost again sooner, the
# mirror folds the log itself (a child that keeps dying, or a machine so busy that
# SCHED_IDLE gets no time for minutes, is no better for a new one at once) until it
# asks again later (mapek.monitor.ASK_LOST_AFTER): TailRefused until then.
RESPAWN_S = 600.0
# A child at SCHED_IDLE gets no CPU while other processes want all of it: beside two
# CPU-bound ones (a MAPE-K cycle and a busy loop are that, on two vCPUs), a first fold
# of 124,000 appends that takes 0.7 s took 125 s, everything that catches up waiting
# (bench/README, "The tail's CPU priority"). An answer still not there after STARVED_S,
# the child runnable but having had less than STARVED_SHARE of a CPU meanwhile, is
# starved: the child is replaced -- whenever that happens, which is once at most --
# by one at nice STARVED_NICE (12.8 s for that fold, but 3 points more of the
# server's peak than SCHED_IDLE: only when SCHED_IDLE starves).
STARVED_S = 5.0
STARVED_SHARE = 0.1
STARVED_NICE = 10
# How long closing waits for the child to go before it is killed.
EXIT_S = 5.0
# The child's collector runs every this many allocations (see main).
GC_EVERY = 200_000
# "python": the child folds in Python even where mapek._tailfold is built (to compare:
# bench/README, "The tail's fold in C").
FOLD_ENV = "CASELOOP_TAIL_FOLD"
_changes = msgspec.msgpack.Decoder(Changes).decode
# The requests: a question (fold what was committed, then answer), or the next part of
# the answer under way (folding only if none is left: an answer ends however busy).
_ASK, _NEXT = b"?", b"+"
# The child's start: deaf to the group's signals (see Lifetime) before its imports,
# which take a few hundred ms (numpy) -- a stop signalled meanwhile is the parent's.
# Its answers go on a private copy of stdout, made before them too; fd 1 becomes
# stderr, so that nothing printed (a library's warning) can corrupt a frame. Then it
# says so (_DEAF), and monitor_tail waits for that: until the interpreter has reached
# these lines (tens of ms; more on a busy machine) a group's SIGTERM would end it, and
# a server that had started listening meanwhile would lose its tail to its own stop.
_DEAF = b"!"
_CHILD = ("import os, signal\n"
          "for s in (signal.SIGINT, signal.SIGTERM): signal.signal(s, signal.SIG_IGN)\n"
          "answers = os.dup(1)\n"
          "os.dup2(2, 1)\n"
          f"os.write(answers, {_DEAF!r})\n"
          "import sys\n"
          "from adapters.monitor_tail import main  # adapters.monitor_tail\n"
          "sys.exit(main(sys.argv[1:], answers))\n")


# --------------------------------------------------------------------- the parent
class MonitorTail:
    """The parent's end: `mapek.monitor.Tail` over the child's pipes. With `spawn`
    (monitor_tail's: a child at SCHED_IDLE, or at the nice it is given), a child lost
    is replaced -- once per `respawn_after` seconds at most -- and the new one's first
    answer is `fresh`; one starved at SCHED_IDLE (`starved_after`) is replaced by one at
    STARVED_NICE."""

    def __init__(self, process: Process,
                 spawn: Callable[[int | None], Awaitable[Process]] | None = None,
                 respawn_after: float = RESPAWN_S,
                 starved_after: float = STARVED_S) -> None:
        self._spawn, self.respawn_after = spawn, respawn_after
        self.starved_after = starved_after
        self._respawned_at: float | None = None
        self.nice: int | None = None  # the child's; None: SCHED_IDLE
        self._attach(process)

    @property
    def starved(self) -> bool:
        """Whether a child at SCHED_IDLE starved (see STARVED_S): only that makes a
        child of another priority."""
        return self.nice is not None

    def _attach(self, process: Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self._requests = process.stdin
        self._answers = BufferedByteReceiveStream(process.stdout)
        self._lost: str | None = None  # why the child is gone, once it is

    async def started(self) -> None:
        """Wait until the child is deaf to the group's signals (_DEAF). One that dies
        first, or does not get there within ANSWER_S, is ended here and lost: the
        server starts all the same, and the first question replaces it (or, without
        `spawn`, hears TailLost)."""
        said = b""
        with (anyio.CancelScope(shield=True), anyio.move_on_after(ANSWER_S) as waiting,
              contextlib.suppress(anyio.EndOfStream, anyio.IncompleteRead,
                                  anyio.BrokenResourceError, OSError)):
            said = await self._answers.receive_exactly(len(_DEAF))
        if said == _DEAF:
            return
        if waiting.cancelled_caught:
            await self._lose(f"did not start in {ANSWER_S:.0f} s")
        elif said:
            await self._lose(f"began with {said!r}, not {_DEAF!r}")
        else:
            await self._lose("did not start", ended=True)

    async def changes(self, more: bool = False) -> Changes:
        request, replaced = _NEXT if more else _ASK, False
        while True:
            try:
                return await self._exchange(request)
            except TailLost as exc:
                # A starved child is replaced whenever it starves: that happens once at
                # most (the replacement is not at SCHED_IDLE). Any other loss, once per
                # respawn_after.
                starved, now = isinstance(exc, _TailStarved), anyio.current_time()
                too_soon = (self._respawned_at is not None
                            and now - self._respawned_at < self.respawn_after)
                if self._spawn is None or (too_soon and not starved):
                    if replaced:  # the one started here is lost too: a loss of its own
                        raise
                    raise TailRefused(str(exc)) from exc
                if not starved:
                    self._respawned_at = now
                lost, nice = exc, STARVED_NICE if starved else self.nice
            # Its replacement folds the log from the start; the mirror, told by `fresh`,
            # replaces what it had from this one. (A loss mid-answer included: the new
            # child has no answer under way, the question is asked anew.)
            print(f"monitor: {lost}; starting another, which folds the log from the start",
                  file=sys.stderr, flush=True)
            with anyio.CancelScope(shield=True):  # (else a child started, never stopped)
                try:
                    process = await self._spawn(nice)
                except OSError as exc:  # no process to be had (EMFILE, EAGAIN, ENOMEM)
                    raise TailLost(f"{lost}; another could not start ({exc})") from exc
                self._attach(process)
                self.nice = nice
                if self._spawn is None:  # closed while it started: nobody would stop it
                    raise TailLost(await self._lose("is closed"))
                await self.started()
            request, replaced = _ASK, True

    async def _exchange(self, request: bytes) -> Changes:
        if self._lost is not None:
            raise TailLost(self._lost)
        # Shielded: a question abandoned half way would leave its answer in the pipe
        # for the next one.
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + ANSWER_S
            try:
                await self._requests.send(request)
                size = int.from_bytes(await self._receive(4), "big")
                answer = await self._receive(size)
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError,
                    anyio.ClosedResourceError, OSError) as exc:
                raise TailLost(await self._lose("is gone", ended=True)) from exc
            except _TailStarved as exc:
                raise _TailStarved(await self._lose(str(exc))) from None
        if scope.cancelled_caught:
            raise TailLost(await self._lose(f"did not answer in {ANSWER_S:.0f} s"))
        try:
            return _changes(answer)
        except msgspec.MsgspecError as exc:  # the pipe out of step: nothing after is sure
            raise TailLost(await self._lose(f"answered what is no answer ({exc})")) from exc

    async def _receive(self, n: int) -> bytes:
        """`n` bytes of the answer; a child at SCHED_IDLE is watched for starvation
        while they come (a receive cut short loses nothing: the buffer keeps it)."""
        if self.nice is not None:
            return await self._answers.receive_exactly(n)
        while True:
            cpu, began = self.cpu_now(), anyio.current_time()
            with anyio.move_on_after(self.starved_after):
                return await self._answers.receive_exactly(n)
            now = self.cpu_now()
            if now is None or cpu is None:  # gone: the next receive hears it
                continue
            had = now - cpu
            # Starved: wanting the CPU ("R": runnable) and not getting it. Not a child
            # that waits -- on SQLite's lock, the disk, a full pipe -- using none.
            if had < STARVED_SHARE * (anyio.current_time() - began) and runnable(
                    self.process.pid):
                raise _TailStarved(f"is starved at SCHED_IDLE ({had:.2f} s of CPU in "
                                   f"{self.starved_after:g} s, busier processes taking "
                                   "it all)")

    def cpu_now(self) -> float | None:
        """The child's CPU seconds so far (Linux: /proc), None if it is not running."""
        return cpu_of(self.process.pid)

    async def _lose(self, why: str, ended: bool = False) -> str:
        """End the child, lost for `why` (`ended`: it went by itself, and how -- its
        exit status -- is said too). -> what every question to it hears from now."""
        if ended:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                await self.process.wait()
            why = f"{why} ({self._how()})"
        await self._end()
        self._lost = f"the monitor's tail process {why}"
        return self._lost

    async def _end(self) -> None:
        """Kill the child, reap it (a lost tail is not left a zombie until the server
        stops) and close its pipes."""
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            with anyio.move_on_after(EXIT_S):
                await self.process.wait()
            if self.process.returncode is not None:
                await self.process.aclose()  # (which waits for it, without a limit)
            else:  # unkillable for now (uninterruptible I/O): its stdout closes as it goes
                with contextlib.suppress(anyio.BrokenResourceError,
                                         anyio.ClosedResourceError, OSError):
                    await self._requests.aclose()

    def _how(self) -> str:
        code = self.process.returncode
        if code is None:
            return "its pipe broke"
        sig = killed_by(code)
        return f"killed by {sig}" if sig else f"exit status {code}"

    async def aclose(self) -> None:
        self._spawn = None  # closed: nothing more is started
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError,
                                     OSError):
                await self._requests.aclose()  # EOF: the child goes
            with anyio.move_on_after(EXIT_S):
                await self.process.wait()
            await self._end()
        self._lost = "the monitor's tail is closed"


class _TailStarved(TailLost):
    """A tail lost for starving: its child at SCHED_IDLE got (almost) no CPU while an
    answer was due (see STARVED_S)."""


def tails(path: str) -> bool:
    """Whether a store at `path` can be tailed by another process: a file."""
    return bool(path) and path != ":memory:"


@contextlib.asynccontextmanager
async def monitor_tail(path: str, part: int = PART, batch: int = BATCH,
                       fold_most: int = FOLD_MOST, respawn_after: float = RESPAWN_S,
                       starved_after: float = STARVED_S) -> AsyncIterator[MonitorTail]:
    """A tail process on the SQLite database at `path` (whose schema exists), for as
    long as the block runs (the sizes: see PART, BATCH and FOLD_MOST; a lost one is
    replaced once per `respawn_after` seconds at most, a starved one -- see STARVED_S
    -- by one at STARVED_NICE)."""
    def spawn(nice: int | None) -> Awaitable[Process]:
        return anyio.open_process(
            [sys.executable, "-c", _CHILD, path, str(part), str(batch), str(fold_most),
             str(-1 if nice is None else nice)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, env=child_env())

    tail = MonitorTail(await spawn(None), spawn, respawn_after, starved_after)
    try:
        await tail.started()
        yield tail
    finally:
        await tail.aclose()


# ---------------------------------------------------------------------- the child
class Fold(Protocol):
    """What the child folds with: mapek._tailfold.TailFold (C, over the log's bytes), or
    PythonFold (a Monitor); the same answers."""

    @property
    def pos(self) -> int: ...
    def fold(self, positions: list[int], case_ids: list[str], events: bytes) -> int: ...
    def hand_over(self, limit: int, behind: bool) -> tuple[bytes, bool]: ...


class PythonFold:
    """The fold in Python: a Monitor made with `hands_over=True` (mapek.monitor), whose
    rules TailFold keeps in C -- where that is not built, or FOLD_ENV says "python"."""

    def __init__(self) -> None:
        self.monitor = Monitor(_NoLog(), hands_over=True)
        self._encode = msgspec.msgpack.Encoder().encode

    @property
    def pos(self) -> int:
        return self.monitor.pos

    def fold(self, positions: list[int], case_ids: list[str], events: bytes) -> int:
        return self.monitor.fold_encoded(positions, case_ids, events)

    def hand_over(self, limit: int, behind: bool) -> tuple[bytes, bool]:
        """-> (the msgpack of `Changes`, whether parts of it are left): `more` if parts
        are left or the child is `behind` (it has more of the log to fold)."""
        changes = self.monitor.hand_over(limit)
        parts_left = changes.more
        changes.more = parts_left or behind
        return self._encode(changes), parts_left


def fold_in() -> str:
    """Which fold a tail process runs: "c" where mapek._tailfold is built (and imports),
    unless FOLD_ENV says "python"."""
    return "c" if _tail_fold() is not None else "python"


def new_fold() -> Fold:
    made = _tail_fold()
    return PythonFold() if made is None else made(tuple(c.__name__ for c in EVENT_TYPES))


def _tail_fold() -> Callable[[tuple[str, ...]], Fold] | None:
    if os.environ.get(FOLD_ENV, "c") == "python":
        return None
    try:
        from mapek._tailfold import TailFold
    except ImportError:  # not built (no compiler at install), or built for another Python
        return None
    return TailFold  # type: ignore[no-any-return]


def _fold(db: sqlite3.Connection, fold: Fold, batch: int, most: int) -> bool:
    """Fold what the log holds after the fold's position, `most` appends at most,
    `batch` a statement. -> whether there may be more."""
    folded = 0
    while folded < most:
        n = fold.fold(*read_encoded_from(db, fold.pos, batch))
        if n < batch:
            return False
        folded += n
    return True


def _write(fd: int, frame: bytes) -> None:
    view = memoryview(frame)
    while view:
        view = view[os.write(fd, view):]


def _yield_the_cpu(nice: int) -> None:
    """Run only on a CPU nobody else wants (SCHED_IDLE; else the lowest nice): the
    commands and the store's writer come first, and the fold catches up between. (At
    `nice` instead, if that is not -1: a child replacing a starved one.)"""
    if nice >= 0:  # that nice, or the parent's if it is nicer already
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0,
                           max(nice, os.getpriority(os.PRIO_PROCESS, 0)))
        return
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):
            os.nice(19)


def main(argv: list[str], answers: int) -> int:
    """The child, once _CHILD has made it deaf to the group's signals and moved stdout
    aside (`answers`: the copy the frames go to)."""
    path, (part, batch, most, nice) = argv[0], map(int, argv[1:])
    _yield_the_cpu(nice)
    # What the fold makes is freed by reference counts (observations and sightings are
    # not even tracked); collections every 700 allocations only walked the open items
    # and the cases' workflows, again and again: a third of the tail's CPU.
    gc.freeze()
    gc.set_threshold(GC_EVERY, 50, 50)
    uri = pathlib.Path(path).resolve().as_uri() + "?mode=ro"
    db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=10.0)
    fold = new_fold()
    requests = sys.stdin.fileno()
    parts_left = behind = False
    while request := os.read(requests, 1):  # b"": EOF, the parent closed or died
        if request == _ASK or not parts_left:
            behind = _fold(db, fold, batch, most)
        body, parts_left = fold.hand_over(part, behind)
        _write(answers, len(body).to_bytes(4, "big") + body)
    return 0


class _NoLog:
    """The child's Monitor reads no log of its own: `_fold` feeds it."""

    async def read_events(self, after_pos: int = 0, limit: int = 10_000) -> list[object]:
        raise AssertionError("the tail folds what main() reads")

