"""A Monitor mirroring a tail process (adapters.monitor_tail): what the other process
folds and hands over, merged here, is exactly what reading the log back gives -- the
same observations in the same order, breaches and their resolutions, empty tasks,
attributes -- whenever the mirror catches up, in however many parts; a tail that dies
leaves the mirror folding the log itself, imported history kept; a server runs its
Monitor this way and leaves no process behind.

The oracle is test_monitor_sightings' FullFold over the engine's events decoded in
full from the log. Everything runs on real SQLite files and real processes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import random
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import anyio
import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msgspec.structs import astuple
from test_monitor_live import Writer, bursts, interleaved, oracle, replayed
from test_monitor_sightings import LOG, assert_same, role_of

from adapters.http.app import Settings, create_app
from adapters.http.metrics import State
from adapters.monitor_tail import (
    BATCH,
    FOLD_MOST,
    PART,
    RESPAWN_S,
    MonitorTail,
    monitor_tail,
)
from adapters.sqlite_store import SQLiteStore
from adapters.sqlite_writer_process import proc_stat
from engine.events import (
    CaseCreated,
    SlaBreached,
    SlaResolved,
    WorkItemCompleted,
    WorkItemEnabled,
    WorkItemStarted,
)
from mapek import monitor as monitor_module
from mapek.monitor import Changes, Monitor, Observation, TailLost, TailRefused

SPECS = pathlib.Path(__file__).resolve().parents[2] / "specs"


@contextlib.asynccontextmanager
async def mirrored(path: str, part: int = PART, batch: int = BATCH,
                   fold_most: int = FOLD_MOST, respawn_after: float = RESPAWN_S,
                   ) -> AsyncIterator[tuple[SQLiteStore, Monitor, MonitorTail]]:
    """A store at `path`, a tail process on it, and the Monitor mirroring that tail."""
    async with SQLiteStore(path) as store, monitor_tail(path, part, batch, fold_most,
                                                         respawn_after) as tail:
        yield store, Monitor(store, role_of=role_of, tail=tail), tail


async def _kill(tail: MonitorTail) -> int:
    pid = tail.process.pid
    os.kill(pid, signal.SIGKILL)
    await tail.process.wait()
    return pid


class _KillsMidAnswer:
    """A tail killed, once armed, after a part of an answer with more to come (the
    OOM killer during a long fold): the mirror asks for the next part of a dead one."""

    def __init__(self, tail: MonitorTail) -> None:
        self.tail, self.armed, self.kills = tail, False, 0

    async def changes(self, more: bool = False) -> Any:
        changes = await self.tail.changes(more)
        if self.armed and changes.more:
            self.armed = False
            self.kills += 1
            await _kill(self.tail)
        return changes


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(LOG, st.lists(st.integers(1, 40), min_size=1, max_size=8),
       st.lists(st.booleans(), max_size=8), st.integers(1, 4), st.integers(1, 5),
       st.integers(1, 12))
def test_any_log_mirrored_from_a_tail_folds_as_the_log_read_in_full(
        log: list[tuple[str, list[Any]]], sizes: list[int], catch_ups: list[bool],
        part: int, per_read: int, fold_most: int) -> None:
    """Random events of three cases (items held, started, breached, resolved, closed;
    attributes; hand-overs), the mirror catching up at random moments, answers in
    parts of 1-4 closed items, the tail reading 1-5 appends a statement and folding
    1-12 an answer."""
    async def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = str(pathlib.Path(tmp) / "s.db")
            async with mirrored(path, part, per_read, fold_most) as (store, mirror, _tail):
                writer = Writer(store)
                for i, batch in enumerate(bursts(log, sizes)):
                    await writer.burst(batch)
                    if i < len(catch_ups) and catch_ups[i]:
                        await mirror.catch_up()
                await mirror.catch_up()
                full, pos = await oracle(store)
        assert mirror.pos == pos
        assert_same(mirror, full)
        # All of it came from the tail: nothing handed on or read here.
        assert (mirror.appends_tailed, mirror.appends_handed_on, mirror.appends_read) == (
            len(log), 0, 0)

    anyio.run(run)


@pytest.mark.anyio
@pytest.mark.usefixtures("writer")
async def test_the_simulated_pipeline_mirrored_from_a_tail_folds_as_read_back(
        simulated_db: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """Every append of the simulated RevOps pipeline (every workflow, hand-overs, SLA
    breaches, automatic items), appended again in bursts while the mirror catches up at
    random moments -- each catch-up sees every append committed before it."""
    async with SQLiteStore(str(simulated_db)) as src:
        rows = await src.read_events(0, 10**9)
    path = str(tmp_path / "again.db")
    async with mirrored(path, part=97, batch=64, fold_most=500) as (store, mirror, _tail):
        async for i in replayed(store, rows, random.Random(11)):
            await mirror.catch_up()
            assert mirror.pos == i  # everything committed before it, no more
        await mirror.catch_up()
        full, pos = await oracle(store)
    assert mirror.pos == pos == len(rows) > 1000
    assert_same(mirror, full)


def _imported() -> Observation:
    """History imported before the log's (it stays in front whatever the log does)."""
    return Observation("old-1", "wf", "Approve", 1, 1.0, closed_at=2.0,
                       outcome="completed", source="import")


@contextlib.asynccontextmanager
async def _with_import(tmp_path: pathlib.Path, part: int = 5,
                       wrap: Callable[[MonitorTail], Any] | None = None,
                       ) -> AsyncIterator[tuple[SQLiteStore, Monitor, MonitorTail, Writer,
                                                Observation]]:
    """A store on a fresh file, a tail process on it and the Monitor mirroring that tail
    (seen through `wrap`), holding an import in front; a writer to the store. ->
    (store, mirror, tail, writer, the import)."""
    path, imported = str(tmp_path / "s.db"), _imported()
    async with SQLiteStore(path) as store, monitor_tail(path, part) as tail:
        mirror = Monitor(store, role_of=role_of, tail=wrap(tail) if wrap else tail)
        mirror.absorb([imported])
        yield store, mirror, tail, Writer(store), imported


async def _same_as_read_back(store: SQLiteStore, mirror: Monitor,
                             imported: Observation) -> None:
    """The mirror holds `imported`, then what reading the log back gives."""
    full, pos = await oracle(store)
    assert mirror.pos == pos
    assert mirror.closed[0] is imported
    rest = SimpleNamespace(closed=mirror.closed[1:], open=mirror.open,
                           breaches=mirror.breaches, fired=mirror.fired,
                           attributes=mirror.attributes)
    assert_same(rest, full)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_a_tail_that_dies_is_replaced_and_dying_again_soon_leaves_the_log_to_the_mirror(
        tmp_path: pathlib.Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Killed (the OOM killer, an operator), a tail is replaced by one that folds the log
    from the start, and the mirror takes that fold in place of what it had -- the
    import kept, in front. The replacement killed too, within RESPAWN_S, the mirror
    folds the log itself."""
    log = interleaved(cases=8, items=5)
    third = len(log) // 3

    async with _with_import(tmp_path) as (store, mirror, tail, writer, imported):
        await writer.burst(log[:third])
        await mirror.catch_up()
        assert mirror.appends_tailed == third
        first = await _kill(tail)
        await writer.burst(log[third:2 * third])
        await mirror.catch_up()
        assert mirror.mirrors and tail.process.pid != first
        assert tail.process.returncode is None
        assert mirror.appends_tailed == third + 2 * third  # the new tail's: all of it
        await _same_as_read_back(store, mirror, imported)
        await _kill(tail)
        await writer.burst(log[2 * third:])
        await mirror.catch_up()
        assert not mirror.mirrors
        await _same_as_read_back(store, mirror, imported)
    err = capfd.readouterr().err
    assert ("tail process is gone (killed by SIGKILL); starting another, which folds the "
            "log from the start") in err
    assert ("tail process is gone (killed by SIGKILL); folding the log in this process "
            "from the start") in err
    # What came from the log after the second loss was folded here.
    assert mirror.appends_handed_on + mirror.appends_read == len(log)


@pytest.mark.anyio
async def test_a_tail_lost_again_soon_folds_for_the_mirror_again_once_it_answers(
        tmp_path: pathlib.Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Lost twice within its respawn limit, the tail leaves the log to the mirror -- for
    a while, not until the server restarts: asked again when due, it starts another
    process, whose fold of the whole log replaces what the mirror folded meanwhile (the
    import kept, in front), and the store hands the mirror nothing any more. Lost again
    at once, the mirror folds here again and waits twice as long."""
    log = interleaved(cases=8, items=5)
    fifth = len(log) // 5

    async with _with_import(tmp_path) as (store, mirror, tail, writer, imported):
        await writer.burst(log[:fifth])
        await mirror.catch_up()
        await _kill(tail)
        await mirror.catch_up()  # replaced: the respawn limit's ten minutes start
        second = await _kill(tail)
        await writer.burst(log[fifth:2 * fifth])
        await mirror.catch_up()
        assert not mirror.mirrors and tail.process.pid == second
        await writer.burst(log[2 * fifth:3 * fifth])
        await mirror.catch_up()  # not due: folded here, no process started
        assert not mirror.mirrors and tail.process.pid == second
        here = mirror.appends_handed_on + mirror.appends_read
        assert here == 3 * fifth
        tail.respawn_after, mirror._ask_at = 0.0, 0.0  # ten minutes on, for both
        await writer.burst(log[3 * fifth:4 * fifth])
        await mirror.catch_up()
        assert mirror.mirrors and tail.process.pid != second
        assert tail.process.returncode is None
        assert mirror._live is None  # the store hands nothing on to it any more
        assert mirror.appends_handed_on + mirror.appends_read == here
        await _same_as_read_back(store, mirror, imported)
        tail.respawn_after = RESPAWN_S
        await _kill(tail)
        await writer.burst(log[4 * fifth:])
        await mirror.catch_up()
        assert not mirror.mirrors and mirror._live is not None
        assert mirror._ask_at - anyio.current_time() == pytest.approx(
            2 * monitor_module.ASK_LOST_AFTER, abs=5)
        await _same_as_read_back(store, mirror, imported)
    err = capfd.readouterr().err
    assert "the tail process answers again; it folds the log from now on" in err


@pytest.mark.anyio
async def test_a_lost_tail_whose_new_process_dies_too_is_lost_not_refusing(
        tmp_path: pathlib.Path) -> None:
    """Asked again, a lost tail that starts another process which dies before its
    answer has lost that one too (TailLost: the mirror waits longer before asking
    again); asked again before its respawn limit, it starts nothing (TailRefused)."""
    path = str(tmp_path / "s.db")
    started: list[int] = []

    async def dies_at_once(nice: int | None) -> Any:
        process = await anyio.open_process(
            [sys.executable, "-c", "import os; os.write(1, b'!')"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        started.append(process.pid)
        return process

    async with SQLiteStore(path) as store, monitor_tail(path) as tail:
        mirror = Monitor(store, role_of=role_of, tail=tail)
        await mirror.catch_up()
        tail._spawn = dies_at_once
        await _kill(tail)
        with pytest.raises(TailLost) as lost:
            await tail.changes()
        assert not isinstance(lost.value, TailRefused) and len(started) == 1
        with pytest.raises(TailRefused):
            await tail.changes()
        assert len(started) == 1


class _Scripted:
    """A lost tail asked again: it refuses (TailRefused), loses the process it started
    (TailLost), or answers -- from the start (`fresh`), or not -- as scripted; lost
    whenever the script is out."""

    def __init__(self) -> None:
        self.script: list[str] = []
        self.asked = 0

    async def changes(self, more: bool = False) -> Any:
        self.asked += 1
        what = self.script.pop(0) if self.script else "lose"
        if what == "refuse":
            raise TailRefused("not yet")
        if what == "lose":
            raise TailLost("gone")
        return Changes(0, [], fresh=what == "fresh")


@pytest.mark.anyio
async def test_a_tail_that_keeps_dying_is_asked_again_ever_later(
        tmp_path: pathlib.Path) -> None:
    """Each loss doubles the wait before the lost tail is asked again (a day at most):
    one that dies whenever it folds -- an event it cannot fold -- costs this process a
    fold of the whole log each time, ever more rarely. A refusal is no loss; an answer
    not from the start is one; a tail that folded for over a day counts afresh."""
    after, most = monitor_module.ASK_LOST_AFTER, monitor_module.ASK_LOST_MOST
    async with SQLiteStore(str(tmp_path / "s.db")) as store:
        tail = _Scripted()
        mirror = Monitor(store, tail=tail)  # type: ignore[arg-type]

        def due_in(seconds: float) -> bool:
            return mirror._ask_at - anyio.current_time() == pytest.approx(seconds, abs=1)

        async def ask_now(*script: str) -> None:
            mirror._ask_at, tail.script = 0.0, list(script)
            await mirror.catch_up()

        await mirror.catch_up()  # lost
        assert not mirror.mirrors and due_in(after)
        await mirror.catch_up()  # not due: not asked
        assert tail.asked == 1
        await ask_now("refuse")
        assert tail.asked == 2 and due_in(after)
        await ask_now("lose")  # the process it started, lost too
        assert due_in(2 * after)
        await ask_now("stale")  # not the whole log: what is folded here stays
        assert not mirror.mirrors and mirror._live is not None and due_in(4 * after)
        await ask_now("fresh")
        assert mirror.mirrors and mirror._live is None
        await mirror.catch_up()  # lost again
        assert not mirror.mirrors and due_in(8 * after)
        mirror._losses = 5000
        await ask_now("lose")
        assert due_in(most)
        await ask_now("fresh")
        assert mirror._back_at is not None
        mirror._back_at -= most + 1  # it folded for over a day
        await mirror.catch_up()
        assert not mirror.mirrors and due_in(after)
        await ask_now("lose")  # and counts from there
        assert due_in(2 * after)


def _children(name: str) -> list[int]:
    """Pids of this process's children whose command line mentions `name`."""
    me, found = os.getpid(), []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == me and name.encode() in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.anyio
@pytest.mark.skipif(not pathlib.Path("/proc/self/stat").exists(), reason="needs /proc")
async def test_a_server_folds_in_its_tail_process_and_stops_it_with_itself(
        tmp_path: pathlib.Path) -> None:
    app = create_app(Settings(db=str(tmp_path / "t.db"), specs=str(SPECS)))
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1") as client:
        assert len(_children("adapters.monitor_tail")) == 1
        made = await client.post("/api/v1/workflows/deal-approval-gate/cases", json={
            "case_id": "deal-1", "data": {"deal_name": "TechCorp", "customer_name": "TechCorp",
                                          "deal_acv": 120000, "discount_percent": 0}})
        assert made.status_code == 201, made.text
        monitor = app.state.ctx.monitor
        await monitor.catch_up()
        assert monitor.appends_tailed > 0 and monitor.appends_read == 0
        assert any(o.case_id == "deal-1" for o in monitor.observations())
    assert _children("adapters.monitor_tail") == []


class _Interrupting:
    """A tail whose first answer cancels the catch-up that asked for it (as
    MapeK.refresh's move_on_after does), between parts."""

    def __init__(self, tail: Any) -> None:
        self.tail, self.scope = tail, None

    async def changes(self, more: bool = False) -> Any:
        changes = await self.tail.changes(more)
        if self.scope is not None:
            self.scope.cancel()
            self.scope = None
        return changes


@pytest.mark.anyio
async def test_a_catch_up_after_one_cancelled_between_parts_sees_what_was_committed_before_it(
        tmp_path: pathlib.Path) -> None:
    log = interleaved(cases=6, items=4)
    path = str(tmp_path / "s.db")
    async with SQLiteStore(path) as store, monitor_tail(path, part=1) as tail:
        interrupting = _Interrupting(tail)
        mirror = Monitor(store, role_of=role_of, tail=interrupting)
        writer = Writer(store)
        half = len(log) // 2
        await writer.burst(log[:half])
        with anyio.CancelScope() as scope:
            interrupting.scope = scope
            await mirror.catch_up()
        assert scope.cancelled_caught  # parts of the first answer left in the tail
        await writer.burst(log[half:])
        await mirror.catch_up()
        assert mirror.pos == len(log)  # every append committed before the catch-up
        full, pos = await oracle(store)
    assert pos == len(log)
    assert_same(mirror, full)


class _Store:
    async def query(self, sql: str, params: Any = ()) -> list[Any]:
        return []


@pytest.mark.anyio
@pytest.mark.parametrize("kills", [1, 2])
async def test_the_metrics_of_breaches_hold_across_a_lost_tail(
        tmp_path: pathlib.Path, kills: int) -> None:
    """A tail lost makes the mirror take the log again from the start -- from the new
    tail (killed once), or folding it here (killed again, soon) -- new Breach records,
    `forgotten` moved: /metrics' breach counters must neither count the breaches again
    nor keep waiting for the old records to resolve."""


    path = str(tmp_path / "s.db")
    state = State()

    async def scrape() -> dict[str, dict[tuple[str, ...], float]]:
        c = SimpleNamespace(store=_Store(), runtime=SimpleNamespace(workflows=list),
                            mapek=None, monitor=mirror)
        return {f.name: {tuple(s.labels.values()): s.value for s in f.samples}
                for f in await state.gather(c)}  # type: ignore[arg-type]

    async with mirrored(path) as (store, mirror, tail):
        writer = Writer(store)
        await writer.burst([
            ("c0", [CaseCreated("c0", "wf", 1, {}, 0.0)]),
            ("c1", [CaseCreated("c1", "wf", 1, {}, 0.0)])])
        await writer.burst([("c0", [WorkItemEnabled(1, "Approve", 1.0)]),
                            ("c1", [WorkItemEnabled(1, "Approve", 1.0)])])
        await writer.burst([("c0", [SlaBreached(1, 5.0, "Approve", 2.0, 4.0)])])
        before = await scrape()
        assert before["caseloop_sla_breaches"] == {("wf", "Approve"): 1.0}
        assert before["caseloop_sla_breaches_open"] == {("wf", "Approve"): 1.0}
        for i in range(kills):
            if i:
                await mirror.catch_up()  # (the first replaced)
            await _kill(tail)
        await writer.burst([("c0", [WorkItemCompleted(1, 6.0, "ok", None, by="ana"),
                                    SlaResolved(1, 6.0)])])
        await writer.burst([("c1", [SlaBreached(1, 7.0, "Approve", 2.0, 4.0)])])
        after = await scrape()
    assert mirror.mirrors == (kills == 1)
    if kills == 2:
        assert mirror.appends_read + mirror.appends_handed_on == 7  # folded here, again
    assert after["caseloop_sla_breaches"] == {("wf", "Approve"): 2.0}
    assert after["caseloop_sla_breaches_open"] == {("wf", "Approve"): 1.0}
    assert after["caseloop_task_completions"] == {("wf", "Approve"): 1.0}


def _state(m: Monitor) -> Any:
    """Everything a Monitor holds that a reader sees, orders included."""
    return ([astuple(o) for o in m.closed], [(k, astuple(o)) for k, o in m.open.items()],
            [astuple(b) for b in m.breaches],
            [(k, astuple(b)) for k, b in m._open_breach.items()],
            list(m.fired.items()), [(c, list(kept.items())) for c, kept in m.attributes.items()],
            m.stamp())


IMPORTED = [Observation(f"old-{i}", wf, "Sign", 1, 1.0, closed_at=None if i % 3 == 0 else 2.0,
                        outcome="completed", source="import")
            for i, wf in enumerate(["wf1", "wf2", "wf1", "wf2", "wf3", "wf1"])]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(LOG, st.lists(st.tuples(st.integers(1, 12),
                               st.sampled_from(["", "catch_up", "catch_up", "absorb",
                                                "forget", "kill", "kill_mid_answer"])),
                     min_size=1, max_size=10),
       st.integers(1, 3), st.integers(1, 4), st.integers(1, 8),
       st.sampled_from([0.0, RESPAWN_S]))
def test_a_mirror_holds_what_a_monitor_folding_here_holds_after_every_catch_up(
        log: list[tuple[str, list[Any]]], steps: list[tuple[int, str]], part: int,
        per_read: int, fold_most: int, respawn_after: float) -> None:
    """The mirror against a Monitor folding the same store here, compared whole (orders
    of `open`, `fired`, the attributes; open breaches; stamp()) after every catch-up,
    imported history absorbed and forgotten between them, and tails killed between
    catch-ups or between the parts of an answer: replaced (always, or once: then the
    mirror folds here). A loss changes nothing a reader sees but the revision."""
    async def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = str(pathlib.Path(tmp) / "s.db")
            async with SQLiteStore(path) as store, monitor_tail(
                    path, part, per_read, fold_most, respawn_after) as tail:
                killing = _KillsMidAnswer(tail)
                mirror = Monitor(store, role_of=role_of, tail=killing)
                local = Monitor(store, role_of=role_of)
                writer = Writer(store)
                imported = iter(IMPORTED)
                killed = False

                def same(mirror: Monitor, local: Monitor) -> None:
                    if not (killed or killing.kills):
                        assert _state(mirror) == _state(local)
                        return
                    # What came from the log forgotten and taken again: one more
                    # revision here (or none, if nothing had come yet).
                    assert _state(mirror)[:-1] == _state(local)[:-1]
                    assert mirror.stamp()[:2] == local.stamp()[:2]
                    assert mirror.revision >= local.revision
                for batch, (_, op) in zip(bursts(log, [n for n, _ in steps]),
                                          [*steps, *[(0, "")] * len(log)], strict=False):
                    await writer.burst(batch)
                    if op == "catch_up":
                        await mirror.catch_up()
                        await local.catch_up()
                        same(mirror, local)
                    elif op == "absorb" and (o := next(imported, None)) is not None:
                        for m in (mirror, local):
                            m.absorb([msgspec.structs.replace(o)])
                    elif op == "forget":
                        for m in (mirror, local):
                            m.forget_imported("wf1")
                    elif op == "kill" and mirror.mirrors and tail.process.returncode is None:
                        await _kill(tail)
                        killed = True
                    elif op == "kill_mid_answer":
                        killing.armed = True
                await mirror.catch_up()
                await local.catch_up()
        same(mirror, local)
        if not (killed or killing.kills):
            assert mirror.appends_read == mirror.appends_handed_on == 0

    anyio.run(run)


@pytest.mark.anyio
async def test_a_breach_raised_again_at_the_same_time_resolves_as_here(
        tmp_path: pathlib.Path) -> None:
    """A resolution is the latest breach's of its item: an earlier breach of the same
    item, handed over open, raised at the same time, stays open (as folding here)."""

    path = str(tmp_path / "s.db")
    async with mirrored(path) as (store, mirror, _tail):
        local = Monitor(store, role_of=role_of)
        writer = Writer(store)
        await writer.burst([("c1", [SlaBreached(1, 5.0, "Sign", 1.0, 2.0)])])
        await mirror.catch_up()
        await writer.burst([("c1", [SlaBreached(1, 5.0, "Sign", 1.0, 2.0),
                                    SlaResolved(1, 6.0)])])
        await mirror.catch_up()
        await local.catch_up()
    assert [b.resolved_at for b in local.breaches] == [None, 6.0]
    assert _state(mirror) == _state(local)


@pytest.mark.anyio
async def test_an_item_closed_and_enabled_again_in_one_window_keeps_the_order_of_here(
        tmp_path: pathlib.Path) -> None:
    """`open` keeps the order of enabling: an item (case, number) closed and enabled
    again after another was enabled comes after it, however it was touched before."""
    path = str(tmp_path / "s.db")
    async with mirrored(path) as (store, mirror, _tail):
        local = Monitor(store, role_of=role_of)
        writer = Writer(store)
        await writer.burst([("c1", [WorkItemEnabled(1, "Sign", 1.0)])])
        await mirror.catch_up()
        await writer.burst([("c1", [WorkItemStarted(1, 2.0, (), "ana"),
                                    WorkItemEnabled(2, "Sign", 3.0),
                                    WorkItemCompleted(1, 4.0, "ok", None, by="ana"),
                                    WorkItemEnabled(1, "Call", 5.0)])])
        await mirror.catch_up()
        await local.catch_up()
    assert list(local.open) == [("c1", 2), ("c1", 1)]
    assert _state(mirror) == _state(local)


@pytest.mark.anyio
async def test_a_tail_whose_answers_are_not_frames_is_lost_not_failing_every_catch_up(
        tmp_path: pathlib.Path) -> None:
    """Bytes on the answers' pipe that are no Changes (a print before the child moved
    its stdout aside, another version's frames) make the tail lost -- the mirror then
    folds here -- instead of an error at every catch-up, the pipe out of step."""
    junk = ("import sys; sys.stdout.buffer.write(b'\\x00\\x00\\x00\\x03abc');"
            "sys.stdout.flush(); sys.stdin.read()")
    process = await anyio.open_process([sys.executable, "-c", junk], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE)
    tail = MonitorTail(process)
    try:
        with pytest.raises(TailLost, match="answered what is no answer"):
            await tail.changes()
        assert process.returncode == -signal.SIGKILL  # killed and reaped: no zombie
    finally:
        await tail.aclose()


@pytest.mark.anyio
async def test_an_items_role_is_the_one_its_task_had_when_the_mirror_saw_it_enabled(
        tmp_path: pathlib.Path) -> None:
    """Roles come from this process (the workflows deployed now): an item enabled
    before its task's role changed keeps the role it was offered to, started and
    closed after, as in a Monitor folding here."""
    roles = {"Sign": "sales"}

    def role(workflow_id: str, task: str) -> str | None:
        return roles.get(task)

    path = str(tmp_path / "s.db")
    async with SQLiteStore(path) as store, monitor_tail(path) as tail:
        mirror = Monitor(store, role_of=role, tail=tail)
        local = Monitor(store, role_of=role)
        writer = Writer(store)
        await writer.burst([("c1", [WorkItemEnabled(1, "Sign", 1.0)]),
                            ("c2", [WorkItemEnabled(1, "Sign", 1.0)])])
        await mirror.catch_up()
        await local.catch_up()
        roles["Sign"] = "legal"  # a new version of the workflow deployed
        await writer.burst([("c1", [WorkItemStarted(1, 2.0, (), "ana")]),
                            ("c2", [WorkItemCompleted(1, 4.0, "ok", None, by="ana")])])
        await mirror.catch_up()
        await local.catch_up()
    assert [o.role for o in local.observations()] == ["sales", "sales"]
    assert _state(mirror) == _state(local)


class _LostAfterOnePart:
    """A tail lost between the parts of an answer (after the first)."""

    def __init__(self, tail: Any) -> None:
        self.tail, self.answers = tail, 0

    async def changes(self, more: bool = False) -> Any:
        if self.answers == 1:
            raise TailLost("gone between parts")
        self.answers += 1
        return await self.tail.changes(more)


@pytest.mark.anyio
async def test_a_tail_lost_between_parts_leaves_the_mirror_folding_all_of_it_here(
        tmp_path: pathlib.Path) -> None:
    log = interleaved(cases=6, items=4)
    path = str(tmp_path / "s.db")
    imported = Observation("old-1", "wf", "Approve", 1, 1.0, closed_at=2.0,
                           outcome="completed", source="import")
    async with SQLiteStore(path) as store, monitor_tail(path, part=2) as tail:
        mirror = Monitor(store, role_of=role_of, tail=_LostAfterOnePart(tail))
        mirror.absorb([imported])
        await Writer(store).burst(log)
        await mirror.catch_up()
        full, pos = await oracle(store)
    assert mirror.appends_tailed == 0 and mirror.pos == pos == len(log)
    assert mirror.closed[0] is imported
    mirror.closed.pop(0)
    assert_same(mirror, full)


@pytest.mark.anyio
async def test_a_tail_is_deaf_to_the_groups_sigterm_once_it_is_started(
        tmp_path: pathlib.Path) -> None:
    """monitor_tail returns only once its child ignores SIGTERM: a service manager's
    stop, reaching the whole group the moment the server listens, leaves the tail to
    the server's own stop (before, a child still starting its interpreter died)."""
    path = str(tmp_path / "s.db")
    log = interleaved(cases=3, items=3)
    async with mirrored(path) as (store, mirror, tail):
        os.kill(tail.process.pid, signal.SIGTERM)
        os.kill(tail.process.pid, signal.SIGINT)
        first = tail.process.pid
        await Writer(store).burst(log)
        await mirror.catch_up()
        assert tail.process.pid == first, "the tail went at the signal (and was replaced)"
        assert tail.process.returncode is None and mirror.mirrors
        assert mirror.appends_tailed == len(log)


@pytest.mark.anyio
async def test_a_tail_that_never_starts_is_lost_at_the_first_question(
        capfd: pytest.CaptureFixture[str]) -> None:
    """A child that dies before it is deaf to signals (or says something else first)
    does not stop a server from starting: it is lost, and the first question hears so
    (a MonitorTail without `spawn`; monitor_tail's would start another)."""
    for program, heard in (("import sys; sys.exit(3)", "did not start (exit status 3)"),
                           ("import sys; sys.stdout.write('?'); sys.stdout.flush(); "
                            "sys.stdin.read()", "began with b'?'")):
        process = await anyio.open_process([sys.executable, "-c", program],
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        tail = MonitorTail(process)
        try:
            await tail.started()
            assert process.returncode is not None  # ended and reaped at once
            with pytest.raises(TailLost, match=re.escape(heard)):
                await tail.changes()
        finally:
            await tail.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["killed", "cancelled, then killed"])
async def test_a_tail_lost_during_the_first_answer_is_replaced_without_counting_twice(
        tmp_path: pathlib.Path, how: str) -> None:
    """The parts of a first answer but the last leave the mirror at position 0 with
    items taken: a replacement's fold of all of it must replace them, not come on top
    -- the tail killed between two parts of one catch-up, or after a first catch-up
    cancelled between parts (as MapeK's warm-up gives up on a long first fold)."""
    log = interleaved(cases=6, items=4)
    path = str(tmp_path / "s.db")
    async with SQLiteStore(path) as store, monitor_tail(path, part=2) as tail:
        await Writer(store).burst(log)
        first = tail.process.pid
        if how == "killed":
            killing = _KillsMidAnswer(tail)
            killing.armed = True
            mirror = Monitor(store, role_of=role_of, tail=killing)
        else:
            interrupting = _Interrupting(tail)
            mirror = Monitor(store, role_of=role_of, tail=interrupting)
            with anyio.CancelScope() as scope:
                interrupting.scope = scope
                await mirror.catch_up()
            assert scope.cancelled_caught and mirror.pos == 0 and mirror.closed
            await _kill(tail)
        await mirror.catch_up()
        full, pos = await oracle(store)
    assert tail.process.pid != first and mirror.pos == pos
    assert_same(mirror, full)


@pytest.mark.anyio
async def test_a_closed_tail_starts_no_other(tmp_path: pathlib.Path) -> None:
    """A catch-up after the tail was closed (a request still running at shutdown)
    folds here; it does not start a process that nobody would stop."""
    path = str(tmp_path / "s.db")
    async with SQLiteStore(path) as store:
        async with monitor_tail(path) as tail:
            mirror = Monitor(store, role_of=role_of, tail=tail)
            await mirror.catch_up()
            closed = tail.process
        await Writer(store).burst(interleaved(cases=2, items=2))
        await mirror.catch_up()
        full, _ = await oracle(store)
    assert tail.process is closed and closed.returncode is not None
    assert not mirror.mirrors
    assert_same(mirror, full)


@pytest.mark.anyio
async def test_a_replacement_that_cannot_start_leaves_the_mirror_folding_here(
        tmp_path: pathlib.Path, capfd: pytest.CaptureFixture[str]) -> None:
    """No process to be had (EMFILE, EAGAIN) is a tail lost, not an error out of every
    catch-up -- an HTTP 500 or a failed MAPE-K cycle."""
    path = str(tmp_path / "s.db")
    async with SQLiteStore(path) as store, monitor_tail(path) as tail:
        mirror = Monitor(store, role_of=role_of, tail=tail)
        await mirror.catch_up()

        async def no_process(nice: int | None) -> Any:
            raise OSError(errno.EMFILE, "Too many open files")

        tail._spawn = no_process
        await _kill(tail)
        await Writer(store).burst(interleaved(cases=2, items=2))
        await mirror.catch_up()
        full, _ = await oracle(store)
    assert not mirror.mirrors
    assert_same(mirror, full)
    assert "another could not start ([Errno 24] Too many open files)" in capfd.readouterr().err


@pytest.mark.anyio
async def test_a_tail_closed_while_its_replacement_starts_leaves_none_running(
        tmp_path: pathlib.Path) -> None:
    """A server stopping while a catch-up replaces its tail (the replacement's start
    shielded): the child started after the close is ended, not left running."""
    path = str(tmp_path / "s.db")
    started: list[Any] = []
    async with SQLiteStore(path) as store, anyio.create_task_group() as tg:
        async with monitor_tail(path) as tail:
            mirror = Monitor(store, role_of=role_of, tail=tail)
            await mirror.catch_up()
            spawn = tail._spawn
            assert spawn is not None
            closing = anyio.Event()

            async def slow_spawn(nice: int | None) -> Any:
                closing.set()
                await anyio.sleep(0.5)  # the close comes meanwhile
                started.append(await spawn(nice))
                return started[-1]

            tail._spawn = slow_spawn
            await _kill(tail)
            tg.start_soon(mirror.catch_up)
            await closing.wait()
        # The block's exit closed the tail while the catch-up was starting another.
        assert not started
    assert len(started) == 1 and started[0].returncode is not None
    assert not mirror.mirrors


def _scheduling(pid: int) -> tuple[int, int]:
    """A process's (nice, scheduling policy) from /proc (policy 5: SCHED_IDLE)."""
    fields = proc_stat(pid)
    assert fields is not None, f"no process {pid}"
    return int(fields[16]), int(fields[38])


@pytest.mark.anyio
@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="needs SCHED_IDLE (Linux)")
async def test_a_tail_starved_at_sched_idle_is_replaced_by_one_at_nice_10(
        tmp_path: pathlib.Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Busier processes taking every CPU leave a child at SCHED_IDLE none: its answer
    does not come (125 s for a first fold beside two CPU hogs), and every catch-up --
    /metrics, the recommendations -- waits. A child that wants a CPU and gets none
    while an answer is due is replaced by one at nice 10, which gets a share. Here
    real hogs, one per CPU, take them all for the time of one catch-up (of enough
    appends that their fold needs more CPU than SCHED_IDLE's slivers give it)."""
    log = interleaved(cases=2000, items=4)  # 18,000 appends: ~50 ms of folding
    path = str(tmp_path / "s.db")
    async with SQLiteStore(path) as store, monitor_tail(path) as tail:
        mirror = Monitor(store, role_of=role_of, tail=tail)
        first = tail.process.pid
        await mirror.catch_up()
        assert _scheduling(first)[1] == os.SCHED_IDLE and tail.nice is None
        tail.starved_after = 0.3  # (watched from now: its start is not a test of this)
        writer, half = Writer(store), len(log) // 2
        await writer.burst(log[:half])
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in os.sched_getaffinity(0)]
        try:
            await anyio.sleep(0.3)  # (spinning)
            await mirror.catch_up()
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
        second = tail.process.pid
        assert second != first and tail.starved and mirror.mirrors
        nice = max(10, os.getpriority(os.PRIO_PROCESS, 0))  # (nicer if we are)
        assert _scheduling(second) == (nice, 0)  # SCHED_OTHER
        await writer.burst(log[half:])
        await mirror.catch_up()  # ... and it stays
        assert tail.process.pid == second and tail.process.returncode is None
        full, pos = await oracle(store)
    assert re.search(r"tail process is starved at SCHED_IDLE \(0\.\d\d s of CPU in 0\.3 s",
                     capfd.readouterr().err)
    assert mirror.pos == pos == len(log)
    assert_same(mirror, full)


@pytest.mark.anyio
async def test_a_stopped_tail_is_not_taken_for_a_starved_one(tmp_path: pathlib.Path) -> None:
    """A child that uses no CPU because it waits (on SQLite's lock, the disk, a full
    pipe; here: stopped) is not starved: replacing it would fold the log again for
    nothing. It has ANSWER_S, as before."""
    path = str(tmp_path / "s.db")
    async with SQLiteStore(path) as store, monitor_tail(path, starved_after=0.2) as tail:
        mirror = Monitor(store, role_of=role_of, tail=tail)
        await mirror.catch_up()
        first = tail.process.pid
        os.kill(first, signal.SIGSTOP)
        await Writer(store).burst(interleaved(cases=2, items=2))
        async with anyio.create_task_group() as tg:
            tg.start_soon(mirror.catch_up)
            await anyio.sleep(1.5)  # seven slices of waiting for the answer
            assert tail.process.pid == first and not tail.starved
            os.kill(first, signal.SIGCONT)  # ... which then comes
        assert tail.process.pid == first
        full, pos = await oracle(store)
    assert mirror.pos == pos
    assert_same(mirror, full)


class _PausesInFreshFold:
    """A tail whose new process's fold of the whole log (`fresh`, in parts) is held
    before its second part is asked for, until the test lets it go."""

    def __init__(self, tail: MonitorTail) -> None:
        self.tail, self.held, self.go = tail, anyio.Event(), anyio.Event()
        self.first = tail.process.pid  # (the first process's first answer is fresh too)
        self._after_fresh = False

    async def changes(self, more: bool = False) -> Any:
        if more and self._after_fresh:
            self._after_fresh = False
            self.held.set()
            await self.go.wait()
        changes = await self.tail.changes(more)
        self._after_fresh = (changes.fresh and changes.more
                             and self.tail.process.pid != self.first)
        return changes


def _seen(mirror: Monitor) -> tuple[Any, ...]:
    """What a reader that does not catch up finds in a Monitor."""
    return (mirror.stamp(), mirror.forgotten, list(mirror.closed), list(mirror.open),
            list(mirror.breaches), dict(mirror.fired),
            {c: dict(a) for c, a in mirror.attributes.items()})


@pytest.mark.anyio
@pytest.mark.parametrize("then", ["answered", "cancelled", "killed"])
async def test_a_new_tails_fold_replaces_the_old_whole_never_a_part_of_it(
        tmp_path: pathlib.Path, then: str) -> None:
    """A replacement's fold of the whole log comes in parts, each catch-up letting the
    event loop run between them. Readers meanwhile -- MapeK's background analysis reads
    without catching up -- see the fold the mirror had, whole, not the first parts of the
    new one (an analysis of a third of the history, kept as current); after the last
    part, the new fold, as reading the log back gives it, the import in front. A
    catch-up cancelled between the parts leaves the old fold, and the next one goes on
    with the new; the new process lost between them (within the respawn limit), the
    mirror folds the log itself."""
    log = interleaved(cases=8, items=5)
    half = len(log) // 2
    async with _with_import(tmp_path, part=2, wrap=_PausesInFreshFold) as (
            store, mirror, tail, writer, imported):
        pausing = mirror._tail
        assert isinstance(pausing, _PausesInFreshFold)
        await writer.burst(log[:half])
        await mirror.catch_up()
        before = _seen(mirror)
        assert len(before[2]) > 3  # items closed: more than one part of 2
        await _kill(tail)
        await writer.burst(log[half:])
        async with anyio.create_task_group() as tg:
            tg.start_soon(mirror.catch_up)
            with anyio.fail_after(60):  # (a fold in one part would never be held)
                await pausing.held.wait()  # the new fold's first part is in; more to come
            assert _seen(mirror) == before
            if then == "cancelled":
                tg.cancel_scope.cancel()
            elif then == "killed":
                killed = await _kill(tail)
            pausing.go.set()
        if then == "cancelled":
            assert _seen(mirror) == before and mirror._staged is not None
            await mirror.catch_up()
        assert mirror._staged is None
        if then == "killed":  # within the respawn limit: no third process, folded here
            assert tail.process.pid == killed and mirror._lost_tail is pausing
        else:
            assert mirror.mirrors
        assert mirror.forgotten == before[1] + 1  # readers by position start again
        await _same_as_read_back(store, mirror, imported)
