"""Virtual time and timers: deadlines fire on time, also after a restart, and never
for a work item that is already gone. Nothing in actors/ reads the wall clock."""

from __future__ import annotations

import ast
import pathlib
import re
import sqlite3
import tempfile
from typing import Any

import anyio
import pytest
from actors_kit import DEAL_600K, ROOT, item_tasks, run_clock, running, spec_net, state
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import VirtualClock, placeholder_actions
from engine import replay
from engine.events import TimerFired, WorkItemCompleted, WorkItemFailed, encode_events

pytestmark = pytest.mark.anyio

DEAL = spec_net("deal-approval-gate")
REVENUE = spec_net("revenue-recognition")
DAY = 86400.0
INVOICE = {"deal_name": "TechCorp Enterprise Analytics", "customer_name": "TechCorp",
           "deal_acv": 600000}


# --------------------------------------------------------------- the clock
async def test_virtual_clock_wakes_sleepers_in_deadline_order() -> None:
    clock = VirtualClock(100.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, t: float) -> None:
        await clock.sleep_until(t)
        woke.append((name, clock.now()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, "late", 300.0)
        tg.start_soon(sleeper, "early", 200.0)
        tg.start_soon(sleeper, "past", 50.0)  # already due: returns at once
        await anyio.sleep(0.01)
        assert woke == [("past", 100.0)]
        assert clock.now() == 100.0  # time does not move by itself
        assert clock.next_deadline() == 200.0
        assert clock.advance_to_next()
        await anyio.sleep(0.01)
        assert woke[-1] == ("early", 200.0)
        assert clock.advance_to_next()
    assert woke == [("past", 100.0), ("early", 200.0), ("late", 300.0)]
    assert not clock.advance_to_next()  # nobody sleeps
    with pytest.raises(ValueError):
        clock.advance_to(10.0)


# Calls that read the wall clock (or the event loop's monotonic clock).
WALL_CLOCK = [
    r"\btime\.time\(", r"\btime\.time_ns\(", r"\btime\.monotonic", r"\btime\.perf_counter",
    r"\btime\.process_time", r"\bdatetime\.now\(", r"\bdatetime\.utcnow\(",
    r"\bdate\.today\(", r"\bcurrent_time\(", r"\bloop\.time\(", r"\bget_event_loop\(",
    r"\bimport\s+time\b", r"\bfrom\s+time\s+import\b", r"\bimport\s+datetime\b",
    r"\bfrom\s+datetime\s+import\b",
]
# anyio deadlines computed from the event loop's clock (a timeout measured on the
# wall, not on the runtime's injected Clock).
WALL_DEADLINES = [r"\bfail_after\(", r"\bmove_on_after\(", r"\bfail_at\(", r"\bmove_on_at\("]


def _code_lines(path: pathlib.Path) -> list[tuple[int, str]]:
    """Source lines without comments and docstrings (they may talk about the clock)."""
    src = path.read_text(encoding="utf-8")
    doc_lines: set[int] = set()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, str):
            doc_lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return [(n, line.split("#", 1)[0]) for n, line in enumerate(src.splitlines(), 1)
            if n not in doc_lines]


def _find(patterns: list[str]) -> list[str]:
    files = sorted((ROOT / "actors").glob("*.py"))
    assert files, "actors/ not found"
    return [f"{f.name}:{n}: {line.strip()}" for f in files for n, line in _code_lines(f)
            for p in patterns if re.search(p, line)]


def test_actors_never_read_the_wall_clock() -> None:
    found = _find(WALL_CLOCK)
    assert not found, "wall clock read in actors/:\n" + "\n".join(found)


def test_actors_set_no_wall_clock_deadlines() -> None:
    """A timeout set with anyio.fail_after runs on the event loop's clock: under a
    VirtualClock it is neither repeatable nor advanced by the simulation."""
    found = _find(WALL_DEADLINES)
    assert not found, "wall-clock deadline in actors/:\n" + "\n".join(found)


# ------------------------------------------------------------------ timers
async def test_deadline_fires_exactly_on_time(db: str) -> None:
    """deal-approval-gate: SendToSalesManager fails when unanswered after 24 h."""
    clock = VirtualClock(1000.0)
    async with running(db, clock, [DEAL], placeholder_actions()) as (store, rt):
        case = await rt.create("deal-approval-gate", "d1", DEAL_600K)
        (item, due), = case.pending_timers()
        assert due == 1000.0 + DAY
        assert [(t.case_id, t.item, t.due) for t in await store.pending_timers()] == \
            [("d1", item, due)]
        assert clock.advance_to_next()  # the only sleeper: the timer
        await rt.wait_idle()
        assert clock.now() == due
        log = await store.events("d1")
        fired = [e for e in log if type(e) is TimerFired]
        assert [(e.item, e.at) for e in fired] == [(item, due)]
        assert any(type(e) is WorkItemFailed and e.item == item for e in log)
        case = await rt.get("d1")
        assert case.items[item].state == "failed"
        assert "SendToSalesManager" not in case.enabled_tasks()
        assert await store.pending_timers() == []


async def test_a_timed_out_approval_is_an_incident_until_retried(db: str) -> None:
    """The failed approval is listed (also after a restart) and a retry offers it again."""
    clock = VirtualClock(1000.0)
    async with running(db, clock, [DEAL], placeholder_actions()) as (_, rt):
        await rt.create("deal-approval-gate", "d1", DEAL_600K)
        await rt.wait_idle()
        assert clock.advance_to_next()
        await rt.wait_idle()
        (inc,) = rt.incidents
        assert (inc.case_id, inc.task, inc.at) == ("d1", "SendToSalesManager", 1000.0 + DAY)
        before = inc
    async with running(db, clock, [DEAL], placeholder_actions()) as (_, rt):
        (inc,) = rt.incidents
        assert (inc.case_id, inc.task) == ("d1", "SendToSalesManager")
        # ... with the reason and the time its log gives, not the item's enabling
        assert (inc.error, inc.at) == (before.error, before.at) == ("timed out", 1000.0 + DAY)
        # Finance may retry incidents but not approve for a sales manager: the retried
        # approval goes back to the role, not into the retrier's hands (an audit found
        # it held by them, refused to everyone else, until it failed again).
        case = await rt.retry("d1", inc.item, "james.rodriguez@acme.com")
        assert "SendToSalesManager" in case.enabled_tasks() and rt.incidents == []
        assert case.items[inc.item].by is None


async def _invoice_sent(rt, store) -> tuple[int, float]:
    """WF5 case: SendInvoice (automatic) wins the deferred choice, PaymentReceived is
    offered with its 60-day deadline. -> (item, due)"""
    case = await rt.create("revenue-recognition", "r1", INVOICE)
    await rt.wait_idle()
    case = await rt.get("r1")
    assert case.enabled_tasks() == ["PaymentReceived"]
    (item, due), = case.pending_timers()
    assert item_tasks(await store.events("r1"))[item] == "PaymentReceived"
    return item, due


@pytest.mark.parametrize("late", [True, False], ids=["reopened-after-due", "reopened-before-due"])
async def test_deadline_fires_after_restart_and_takes_the_timeout_route(db: str,
                                                                       late: bool) -> None:
    async with running(db, VirtualClock(0.0), [REVENUE], placeholder_actions()) as (store, rt):
        item, due = await _invoice_sent(rt, store)
        assert due == 60 * DAY
    # closed; a fresh runtime and clock on the same file
    clock = VirtualClock(due + 3600.0 if late else due - 3600.0)
    async with running(db, clock, [REVENUE], placeholder_actions()) as (store, rt):
        if not late:
            await rt.wait_idle()
            assert not any(type(e) is TimerFired for e in await store.events("r1"))
            assert clock.advance_to_next()
            assert clock.now() == due, "the re-armed deadline is the one from the log"
        await rt.wait_idle()
        log = await store.events("r1")
        fired = [e for e in log if type(e) is TimerFired]
        assert [e.item for e in fired] == [item]
        assert fired[0].at == clock.now()
        done = [e for e in log if type(e) is WorkItemCompleted and e.item == item]
        assert [(e.result, e.by) for e in done] == [("timeout", "timer")]
        case = await rt.get("r1")
        assert case.enabled_tasks() == ["Collections"], "the spec's timeout route"
        assert await store.pending_timers() == []


@pytest.mark.parametrize("restart", [False, True], ids=["same-runtime", "after-restart"])
async def test_timer_of_a_completed_item_does_nothing(db: str, restart: bool) -> None:
    clock = VirtualClock(0.0)
    async with running(db, clock, [REVENUE], placeholder_actions()) as (store, rt):
        _, due = await _invoice_sent(rt, store)
        clock.advance_to(due / 2)
        await rt.complete("r1", "PaymentReceived", "paid")
        await rt.wait_idle()
        after = state(await rt.get("r1"))
        log = await store.events("r1")
        assert after["status"] == "completed"
        if not restart:
            clock.advance_to(due + 1)
            await rt.wait_idle()
    if restart:
        clock = VirtualClock(due + 1)
    async with running(db, clock, [REVENUE], placeholder_actions()) as (store, rt):
        await rt.wait_idle()
        assert await store.events("r1") == log
        assert not any(type(e) is TimerFired for e in log)
        assert state(await rt.get("r1")) == after


async def test_completion_just_before_the_deadline_wins(db: str) -> None:
    """An item completed at the very moment its deadline comes due: the completion
    arrives first, so the deadline finds nothing to do."""
    clock = VirtualClock(0.0)
    async with running(db, clock, [DEAL], placeholder_actions()) as (store, rt):
        case = await rt.create("deal-approval-gate", "d1", DEAL_600K)
        (item, due), = case.pending_timers()
        clock.advance_to(due)  # the timer task is woken, but we complete first
        await rt.complete("d1", "SendToSalesManager", "approved")
        await rt.wait_idle()
        log = await store.events("d1")
        assert not any(type(e) is TimerFired for e in log)
        assert [e.item for e in log if type(e) is WorkItemCompleted] == [item]


async def test_timers_re_armed_after_restart_fire_in_due_order(db: str) -> None:
    clock = VirtualClock(0.0)
    async with running(db, clock, [DEAL], placeholder_actions()) as (store, rt):
        for i in range(5):
            clock.advance_to(i * 3600.0)
            await rt.create("deal-approval-gate", f"d{i}", DEAL_600K)
        dues = {t.case_id: t.due for t in await store.pending_timers()}
    clock = VirtualClock(4 * 3600.0)
    async with running(db, clock, [DEAL], placeholder_actions()) as (store, rt):
        fired_at = {}
        while clock.advance_to_next():
            await rt.wait_idle()
            for cid in dues:
                for e in await store.events(cid):
                    if type(e) is TimerFired:
                        fired_at.setdefault(cid, e.at)
        assert fired_at == dues


async def test_a_conflicting_timer_firing_does_not_stop_the_runtime(db: str) -> None:
    """One case's failed append while firing its deadline is that case's problem: the
    runtime (and every other case's timers) must carry on."""
    clock = VirtualClock(0.0)
    async with running(db, clock, [DEAL], placeholder_actions()) as (store, rt):
        a = await rt.create("deal-approval-gate", "A", DEAL_600K)
        clock.advance_to(60.0)
        await rt.create("deal-approval-gate", "B", DEAL_600K)
        # another writer appends A's next event number behind the runtime's back
        other = replay(await store.events("A"), DEAL)
        foreign = other.complete("SendToFinance", 30.0, "approved", by="elsewhere")
        con = sqlite3.connect(db)
        with con:
            con.execute("INSERT INTO events (case_id, first_seq, last_seq, at, body)"
                        " VALUES (?, ?, ?, ?, ?)", ("A", a.version + 1,
                                                    a.version + len(foreign), 30.0,
                                                    encode_events(foreign)))
        con.close()
        clock.advance_to(DAY + 60.0)  # both deadlines due; A's append conflicts
        with anyio.fail_after(5):
            await rt.wait_idle()
        b = await rt.get("B")
        assert [i.state for i in b.work_items()
                if b.net.tasks[i.task].id == "SendToSalesManager"] == ["failed"]
        a = await rt.get("A")  # rebuilt from the log, with the other writer's event
        assert "SendToFinance" not in a.enabled_tasks()


# ------------------------------------------------------ timers held in memory
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrivals=st.lists(st.tuples(st.integers(0, 30), st.booleans()), min_size=1,
                         max_size=14),
       window=st.integers(1, 3), restart=st.booleans())
async def test_with_few_timers_held_every_deadline_fires_once_and_on_time(
        arrivals: list[tuple[int, bool]], window: int, restart: bool) -> None:
    """Only `timer_window` work items' timers are held in memory (twice that at most);
    the others wait in the store. Whatever the window, the arrivals (deadlines at the
    same second among them) and a restart, every unanswered approval times out once,
    at its due, and an answered one never does."""
    with tempfile.TemporaryDirectory() as tmp:
        db = str(pathlib.Path(tmp) / "t.db")
        clock = VirtualClock(0.0)
        due: dict[str, float | None] = {}  # None: answered in time
        async with running(db, clock, [DEAL], placeholder_actions(),
                           timer_window=window) as (store, rt):
            for i, (hour, answered) in enumerate(sorted(arrivals, key=lambda a: a[0])):
                if hour * 3600.0 > clock.now():
                    await run_clock(rt, clock, until=hour * 3600.0)
                    clock.advance_to(hour * 3600.0)
                case = await rt.create("deal-approval-gate", f"d{i}", DEAL_600K)
                (_, due[f"d{i}"]), = case.pending_timers()
                if answered:
                    await rt.complete(f"d{i}", "SendToSalesManager", "approved")
                    due[f"d{i}"] = None
                assert rt.timers_held <= 2 * window
            if not restart:
                await run_clock(rt, clock)
        if restart:
            clock = VirtualClock(clock.now())
            async with running(db, clock, [DEAL], placeholder_actions(),
                               timer_window=window) as (store, rt):
                assert rt.timers_held <= window
                await run_clock(rt, clock)
        async with running(db, clock, [DEAL]) as (store, rt):
            for case_id, at in due.items():
                fired = [e.at for e in await store.events(case_id) if type(e) is TimerFired]
                assert fired == ([] if at is None else [at]), (case_id, at, fired)
            assert await store.pending_timers() == []


async def invoices_sent(db: str, clock: VirtualClock, at: dict[str, float]) -> None:
    """WF5 cases whose invoices went out at the times given: each PaymentReceived is
    then due 60 days later (a runtime of its own, closed again)."""
    async with running(db, clock, [REVENUE, DEAL], placeholder_actions()) as (_, rt):
        for case_id, t in at.items():
            clock.advance_to(t)
            await rt.create("revenue-recognition", case_id, INVOICE)
            await rt.wait_idle()


def hold_timer_reads(store: Any) -> tuple[anyio.Event, anyio.Event]:
    """The store's reads of its pending timers, each answered only once `release` is
    set; `reading` is set once one has read (its snapshot is taken by then)."""
    read = store.pending_timers
    reading, release = anyio.Event(), anyio.Event()

    async def held_read(after: Any, limit: int | None) -> Any:
        rows = await read(after, limit)
        reading.set()
        await release.wait()
        return rows

    store.pending_timers = held_read
    return reading, release


async def test_a_timer_armed_while_the_next_ones_are_read_is_held(db: str) -> None:
    """Timers armed while the store's next timers are being read go into memory, even
    beyond the timers held so far: the read's snapshot may be older than their commit,
    and once it moves the window past them they would be read no more."""
    clock = VirtualClock(0.0)
    await invoices_sent(db, clock, {"r1": 0.0, "r2": 2 * DAY})  # due at 60 and 62 days
    async with running(db, clock, [REVENUE, DEAL], placeholder_actions(),
                       timer_window=1) as (store, rt):
        assert rt.timers_held == 1  # r1's; r2's waits in the store
        reading, release = hold_timer_reads(store)
        await run_clock(rt, clock, until=60 * DAY - 1)
        clock.advance_to(60 * DAY)  # r1 times out; then r2's deadline is read
        with anyio.fail_after(5):
            await reading.wait()
        await rt.create("deal-approval-gate", "d9", DEAL_600K)  # due at 61 days
        release.set()
        await run_clock(rt, clock)
        fired = {cid: [e.at for e in await store.events(cid) if type(e) is TimerFired]
                 for cid in ("r1", "r2", "d9")}
        assert fired == {"r1": [60 * DAY], "r2": [62 * DAY], "d9": [61 * DAY]}


async def test_a_timer_whose_firing_failed_fires_again_with_few_timers_held(db: str) -> None:
    """A firing the store refused is tried again a second later -- also when the store's
    next timers were read past it meanwhile (the store has it at its own due, which a
    read beyond it does not read again)."""
    clock = VirtualClock(0.0)
    async with running(db, clock, [DEAL], placeholder_actions()) as (store, rt):
        for i in range(2):
            clock.advance_to(i * 3600.0)
            await rt.create("deal-approval-gate", f"d{i}", DEAL_600K)
    async with running(db, clock, [DEAL], placeholder_actions(),
                       timer_window=1) as (store, rt):
        write = store.append
        refused: list[str] = []

        async def refuse_once(batch):  # the store's own append, the first one refused
            if not refused:
                refused.append(batch.case_id)
                raise OSError("disk I/O error")
            return await write(batch)

        store.append = refuse_once  # type: ignore[method-assign]
        await run_clock(rt, clock)
        assert refused == ["d0"]
        fired = {cid: [e.at for e in await store.events(cid) if type(e) is TimerFired]
                 for cid in ("d0", "d1")}
        assert fired == {"d0": [DAY + 1.0], "d1": [DAY + 3600.0]}


async def test_timers_armed_beyond_the_window_during_a_read_all_fire(db: str) -> None:
    """More timers armed during a read than the window holds: none is let go while the
    read is under way (its end sets where the store was read to, past them), so each
    fires once."""
    clock = VirtualClock(0.0)
    await invoices_sent(db, clock, {"r1": 0.0, "r2": 1 * DAY, "r3": 2 * DAY})
    async with running(db, clock, [REVENUE, DEAL], placeholder_actions(),
                       timer_window=2) as (store, rt):
        reading, release = hold_timer_reads(store)
        await run_clock(rt, clock, until=61 * DAY - 1)
        clock.advance_to(61 * DAY)  # r1 and r2 time out; then r3's deadline is read
        with anyio.fail_after(5):
            await reading.wait()
        for i in range(5):
            await rt.create("deal-approval-gate", f"x{i}", DEAL_600K)  # due at 62 days
        release.set()
        await run_clock(rt, clock)
        cases = ["r1", "r2", "r3"] + [f"x{i}" for i in range(5)]
        fired = {cid: [e.at for e in await store.events(cid) if type(e) is TimerFired]
                 for cid in cases}
        assert fired == {"r1": [60 * DAY], "r2": [61 * DAY], "r3": [62 * DAY],
                         **{f"x{i}": [62 * DAY] for i in range(5)}}
        assert rt.timers_held == 0
