"""Automatic tasks: handlers run outside the case actor, with a timeout and retries
(exponential backoff with jitter on the virtual clock); the result comes back as a
completion; after the last attempt the item fails with an incident, and `rt.retry`
takes it up again."""

from __future__ import annotations

import itertools
import random
import sqlite3
from typing import Any

import anyio
import pytest
from actors_kit import item_tasks, net_of, run_clock, running, yields

from actors import ActionContext, ActionRegistry, Incident, RetryPolicy, VirtualClock
from actors.actions import AWAIT_CALLBACK
from engine import replay
from engine.events import (
    WorkItemCompleted,
    WorkItemFailed,
    WorkItemReassigned,
    WorkItemRetried,
    WorkItemStarted,
    encode_events,
)

pytestmark = pytest.mark.anyio

# Fetch (automatic) routes on its result: "big" -> Big, anything else -> Small.
FETCH = net_of({
    "id": "fetch", "name": "Fetch", "version": 1,
    "tasks": [{"id": "Fetch", "kind": "automatic", "action": "fetch",
               "params": {"url": "https://example.invalid/x"}, "split": "xor"},
              {"id": "Big"}, {"id": "Small"}],
    "flows": [{"from": "start", "to": "Fetch"},
              {"from": "Fetch", "to": "Big", "when": "result == 'big'"},
              {"from": "Fetch", "to": "Small"},
              {"from": "Big", "to": "end"}, {"from": "Small", "to": "end"}],
})
# An automatic and a human task in parallel (AND split / AND join).
PARALLEL = net_of({
    "id": "parallel", "name": "Parallel", "version": 1,
    "tasks": [{"id": "Fork", "kind": "empty"},
              {"id": "Auto", "kind": "automatic", "action": "slow"},
              {"id": "Human"},
              {"id": "Join", "kind": "empty", "join": "and"}],
    "flows": [{"from": "start", "to": "Fork"}, {"from": "Fork", "to": "Auto"},
              {"from": "Fork", "to": "Human"}, {"from": "Auto", "to": "Join"},
              {"from": "Human", "to": "Join"}, {"from": "Join", "to": "end"}],
})


class Flaky:
    """A handler failing its first `failures` calls; records (attempt, now) per call."""

    def __init__(self, failures: int, out: dict[str, Any] | None = None) -> None:
        self.failures = failures
        self.out = out if out is not None else {"result": "big", "size": 3}
        self.calls: list[ActionContext] = []

    async def __call__(self, ctx: ActionContext) -> dict[str, Any]:
        self.calls.append(ctx)
        if len(self.calls) <= self.failures:
            raise ConnectionError(f"upstream down (call {len(self.calls)})")
        return dict(self.out)


def registry(handler: Any, **policy: Any) -> ActionRegistry:
    reg = ActionRegistry(RetryPolicy(**policy), seed=7)
    reg.register("fetch", handler)
    return reg


async def test_result_comes_back_as_a_completion(db: str) -> None:
    handler = Flaky(0)
    async with running(db, VirtualClock(50.0), [FETCH], registry(handler)) as (store, rt):
        await rt.create("fetch", "f1", {"customer": "TechCorp"})
        await rt.wait_idle()
        (ctx,) = handler.calls
        assert (ctx.case_id, ctx.task, ctx.action, ctx.attempt) == ("f1", "Fetch", "fetch", 1)
        assert ctx.params == {"url": "https://example.invalid/x"}
        assert ctx.data == {"customer": "TechCorp"} and ctx.now == 50.0
        case = await rt.get("f1")
        assert case.enabled_tasks() == ["Big"], "routed on the handler's result"
        assert case.data == {"customer": "TechCorp", "size": 3}
        log = await store.events("f1")
        done = [e for e in log if type(e) is WorkItemCompleted]
        assert [(item_tasks(log)[e.item], e.result, e.by) for e in done] == \
            [("Fetch", "big", "action:fetch")]


async def test_handler_succeeding_on_the_third_attempt_completes_the_item(db: str) -> None:
    handler = Flaky(2)
    clock = VirtualClock(0.0)
    async with running(db, clock, [FETCH], registry(handler, base_delay=10.0)) as (store, rt):
        await rt.create("fetch", "f1", {})
        await run_clock(rt, clock)
        assert [c.attempt for c in handler.calls] == [1, 2, 3]
        t = [c.now for c in handler.calls]
        gaps = [b - a for a, b in itertools.pairwise(t)]
        assert 7.5 <= gaps[0] <= 12.5 and 15.0 <= gaps[1] <= 25.0
        assert gaps[1] > gaps[0], "the backoff grows"
        case = await rt.get("f1")
        assert case.enabled_tasks() == ["Big"]
        assert rt.incidents == []
        log = await store.events("f1")
        assert not any(type(e) is WorkItemFailed for e in log)


async def test_backoff_is_exponential_with_repeatable_jitter_on_the_virtual_clock(
        db: str) -> None:
    handler = Flaky(99)
    clock = VirtualClock(0.0)
    policy = dict(attempts=5, base_delay=10.0, jitter=0.25, max_delay=1000.0)
    async with running(db, clock, [FETCH], registry(handler, **policy)) as (_, rt):
        await rt.create("fetch", "f1", {})
        await run_clock(rt, clock)
    t = [c.now for c in handler.calls]
    gaps = [b - a for a, b in itertools.pairwise(t)]
    assert len(gaps) == 4
    assert all(b > a for a, b in itertools.pairwise(gaps)), gaps
    for k, g in enumerate(gaps):
        nominal = 10.0 * 2 ** k
        assert 0.75 * nominal <= g <= 1.25 * nominal
    assert len({round(g / (10.0 * 2 ** k), 9) for k, g in enumerate(gaps)}) > 1, \
        "jittered, not exact powers of two"
    rng = random.Random(7)  # the registry's seed: the same delays, to the bit
    assert gaps == pytest.approx([RetryPolicy(**policy).delay(k, rng) for k in range(1, 5)])


async def test_last_failure_records_an_incident_and_retry_runs_it_again(db: str) -> None:
    handler = Flaky(3)  # fails all three attempts of the first run
    clock = VirtualClock(0.0)
    async with running(db, clock, [FETCH], registry(handler, attempts=3)) as (store, rt):
        await rt.create("fetch", "f1", {})
        await run_clock(rt, clock)
        case = await rt.get("f1")
        (item,) = [i for i in case.work_items()]
        assert item.state == "failed"
        assert case.enabled_tasks() == []
        (inc,) = rt.incidents
        assert isinstance(inc, Incident)
        assert (inc.case_id, inc.item, inc.task, inc.action, inc.attempts) == \
            ("f1", item.id, "Fetch", "fetch", 3)
        assert "ConnectionError" in inc.error and "upstream down" in inc.error
        assert inc.at == handler.calls[-1].now
        log = await store.events("f1")
        assert [e.item for e in log if type(e) is WorkItemFailed] == [item.id]
        assert len(handler.calls) == 3
        # the incident is resolved: run it again
        await rt.retry("f1", item.id, by="ops")
        await run_clock(rt, clock)
        assert len(handler.calls) == 4
        case = await rt.get("f1")
        assert case.enabled_tasks() == ["Big"]
        assert rt.incidents == []
        log = await store.events("f1")
        assert any(type(e) is WorkItemRetried and e.item == item.id and e.by == "ops"
                   for e in log)
        assert any(type(e) is WorkItemCompleted and e.item == item.id for e in log)


async def test_an_answer_the_case_refuses_is_an_incident_not_a_stuck_item(db: str) -> None:
    # The task lists its results; the action answers another. Before, the refusal was
    # taken for "withdrawn meanwhile" and the item waited, enabled, for nothing.
    listing = net_of({
        "id": "listing", "name": "Listing", "version": 1,
        "tasks": [{"id": "Fetch", "kind": "automatic", "action": "fetch",
                   "results": ["big", "small"], "split": "xor"}, {"id": "Big"},
                  {"id": "Small"}],
        "flows": [{"from": "start", "to": "Fetch"},
                  {"from": "Fetch", "to": "Big", "when": "result == 'big'"},
                  {"from": "Fetch", "to": "Small"},
                  {"from": "Big", "to": "end"}, {"from": "Small", "to": "end"}]})
    handler = Flaky(0, {"result": "huge"})
    clock = VirtualClock(0.0)
    async with running(db, clock, [listing], registry(handler)) as (_, rt):
        await rt.create("listing", "f1", {})
        await run_clock(rt, clock)
        (inc,) = rt.incidents
        assert inc.task == "Fetch" and "refused" in inc.error and "'huge'" in inc.error
        assert len(handler.calls) == 1, "the same answer again would be refused again"
        (item,) = (await rt.get("f1")).work_items()
        assert item.state == "failed"


async def test_failed_items_stay_failed_after_restart_until_retried(db: str) -> None:
    handler = Flaky(99)
    clock = VirtualClock(0.0)
    async with running(db, clock, [FETCH], registry(handler, attempts=2)) as (_, rt):
        await rt.create("fetch", "f1", {})
        await run_clock(rt, clock)
    calls = len(handler.calls)
    handler.failures = 0
    async with running(db, clock, [FETCH], registry(handler, attempts=2)) as (_, rt):
        await run_clock(rt, clock)
        assert len(handler.calls) == calls, "a failed item is not resumed by itself"
        (item,) = (await rt.get("f1")).work_items()
        (inc,) = rt.incidents  # listed again after the restart, so it can be retried
        assert (inc.case_id, inc.item, inc.task) == ("f1", item.id, "Fetch")
        await rt.retry("f1", item.id)
        assert rt.incidents == []
        await run_clock(rt, clock)
        assert (await rt.get("f1")).enabled_tasks() == ["Big"]


async def test_an_interrupted_action_is_resumed_after_restart(db: str) -> None:
    started = anyio.Event()

    async def hang(ctx: ActionContext) -> dict[str, Any]:
        started.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async with running(db, VirtualClock(0.0), [FETCH], registry(hang)) as (_, rt):
        await rt.create("fetch", "f1", {})
        with anyio.fail_after(5):
            await started.wait()
    # the process went away mid-action; the next runtime runs it again
    handler = Flaky(0, {"result": "small"})
    async with running(db, VirtualClock(0.0), [FETCH], registry(handler)) as (_, rt):
        await rt.wait_idle()
        assert len(handler.calls) == 1
        assert (await rt.get("f1")).enabled_tasks() == ["Small"]


async def test_a_hanging_handler_is_timed_out_and_retried(db: str) -> None:
    calls: list[ActionContext] = []

    async def hang(ctx: ActionContext) -> dict[str, Any]:
        calls.append(ctx)
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    clock = VirtualClock(0.0)
    async with running(db, clock, [FETCH],
                       registry(hang, attempts=2, timeout=0.05)) as (_, rt):
        await rt.create("fetch", "f1", {})
        with anyio.fail_after(10):
            while not rt.incidents:
                clock.advance_to_next()
                await anyio.sleep(0.01)
        assert len(calls) == 2
        (inc,) = rt.incidents
        assert "Timeout" in inc.error
        assert [i.state for i in (await rt.get("f1")).work_items()] == ["failed"]


async def test_action_timeout_is_measured_on_the_virtual_clock(db: str) -> None:
    """A handler still running 60 virtual seconds after it started has timed out,
    however little wall time passed: a simulation must be repeatable."""
    clock = VirtualClock(0.0)
    ended: list[tuple[int, float, str]] = []

    async def slow(ctx: ActionContext) -> dict[str, Any]:
        try:
            await clock.sleep_until(ctx.now + 3600.0)  # an hour of simulated latency
        except BaseException:
            ended.append((ctx.attempt, clock.now(), "cancelled"))
            raise
        ended.append((ctx.attempt, clock.now(), "returned"))
        return {"result": "big"}

    async with running(db, clock, [FETCH],
                       registry(slow, attempts=2, timeout=60.0, base_delay=1.0)) as (_, rt):
        await rt.create("fetch", "f1", {})
        with anyio.fail_after(10):
            for _ in range(50):
                await yields(20)
                if not clock.advance_to_next():
                    break
        assert ended and ended[0][1:] == (60.0, "cancelled"), \
            f"attempt 1 ran past its 60 s timeout on the virtual clock: {ended}"
        assert [i.state for i in (await rt.get("f1")).work_items()] == ["failed"]
        assert rt.incidents and "Timeout" in rt.incidents[0].error


async def test_handlers_run_outside_the_case_actor(db: str) -> None:
    """While Auto's handler is blocked, the same case still takes messages."""
    release = anyio.Event()
    running_now = anyio.Event()

    async def slow(ctx: ActionContext) -> dict[str, Any]:
        running_now.set()
        await release.wait()
        return {"auto": "done"}

    reg = ActionRegistry(seed=1)
    reg.register("slow", slow)
    async with running(db, VirtualClock(0.0), [PARALLEL], reg) as (_, rt):
        await rt.create("parallel", "p1", {})
        with anyio.fail_after(5):
            await running_now.wait()
            case = await rt.complete("p1", "Human", "ok", {"human": "done"})
        assert case.status == "active" and case.enabled_tasks() == ["Auto"]
        release.set()
        with anyio.fail_after(5):
            await rt.wait_idle()
        case = await rt.get("p1")
        assert case.status == "completed"
        assert case.data == {"human": "done", "auto": "done"}


async def test_a_conflicting_action_completion_does_not_stop_the_runtime(db: str) -> None:
    """The action's completion meets another writer's event at the same number: that
    case is rebuilt from its log, the completion is retried on it, and the runtime
    carries on with the other cases."""
    release = anyio.Event()

    async def slow(ctx: ActionContext) -> dict[str, Any]:
        if ctx.case_id == "p1":
            await release.wait()
        return {"auto": ctx.case_id}

    reg = ActionRegistry(seed=1)
    reg.register("slow", slow)
    async with running(db, VirtualClock(0.0), [PARALLEL], reg) as (store, rt):
        p1 = await rt.create("parallel", "p1", {})
        other = replay(await store.events("p1"), PARALLEL)
        foreign = other.complete("Human", 1.0, "ok", {"human": "elsewhere"})
        con = sqlite3.connect(db)
        with con:
            con.execute("INSERT INTO events (case_id, first_seq, last_seq, at, body)"
                        " VALUES (?, ?, ?, ?, ?)", ("p1", p1.version + 1,
                                                    p1.version + len(foreign), 1.0,
                                                    encode_events(foreign)))
        con.close()
        release.set()  # Auto's completion of p1 now conflicts
        with anyio.fail_after(5):
            await rt.wait_idle()
        # rebuilt from the log (the other writer's event is there) and the action's
        # result is not lost: its completion is retried once on the fresh state
        assert (await rt.get("p1")).data == {"human": "elsewhere", "auto": "p1"}
        await rt.create("parallel", "p2", {})
        await rt.complete("p2", "Human", "ok")
        with anyio.fail_after(5):
            await rt.wait_idle()
        assert (await rt.get("p2")).status == "completed"


# Sign (automatic, its action hands the item to another system) or Withdraw (a person)
# take the same token: a deferred choice, so Sign's action claims its item first.
CHOICE = net_of({
    "id": "choice", "name": "Choice", "version": 1,
    "conditions": [{"id": "offered"}],
    "tasks": [{"id": "Prepare", "kind": "empty"},
              {"id": "Sign", "kind": "automatic", "action": "fetch"},
              {"id": "Withdraw"}],
    "flows": [{"from": "start", "to": "Prepare"}, {"from": "Prepare", "to": "offered"},
              {"from": "offered", "to": "Sign"}, {"from": "offered", "to": "Withdraw"},
              {"from": "Sign", "to": "end"}, {"from": "Withdraw", "to": "end"}],
})


class HandsOver(Flaky):
    """Fails its first `failures` calls, then hands the item over (AWAIT_CALLBACK)."""

    async def __call__(self, ctx: ActionContext) -> Any:
        await super().__call__(ctx)
        return AWAIT_CALLBACK


@pytest.mark.parametrize("how", ["retried after an incident", "claimed in a deferred choice"])
async def test_an_item_handed_over_while_started_is_not_run_again_after_a_restart(
        db: str, how: str) -> None:
    """The hand-over of an item that is already started (by the person who retried
    it, or by its own action's claim) is recorded as a reassignment to the other
    system: a restart waits for the callback instead of calling the action again."""
    retried = how.startswith("retried")
    handler = HandsOver(2 if retried else 0)
    clock = VirtualClock(0.0)
    net, case_id = (FETCH, "f1") if retried else (CHOICE, "c1")
    async with running(db, clock, [net], registry(handler, attempts=2)) as (store, rt):
        await rt.create(net.workflow_id, case_id, {})
        await run_clock(rt, clock)
        (item,) = [i for i in (await rt.get(case_id)).work_items()
                   if net.tasks[i.task].id in ("Fetch", "Sign")]
        if retried:
            assert item.state == "failed" and len(handler.calls) == 2
            await rt.retry(case_id, item.id, by="ops")
            await run_clock(rt, clock)
        calls = len(handler.calls)
        item = (await rt.get(case_id)).items[item.id]
        assert (item.state, item.by) == ("started", "awaiting:fetch")
        log = await store.events(case_id)
        assert [(type(e), e.by) for e in log if type(e) in (WorkItemStarted, WorkItemRetried,
                                                            WorkItemReassigned)] == (
            [(WorkItemRetried, "ops"), (WorkItemReassigned, "awaiting:fetch")] if retried
            else [(WorkItemStarted, "action:fetch"), (WorkItemReassigned, "awaiting:fetch")])
    async with running(db, clock, [net], registry(handler, attempts=2)) as (store, rt):
        await run_clock(rt, clock)
        assert len(handler.calls) == calls, "the handed-over item was run again"
        case = await rt.complete(case_id, item.id, "big", by="esign")  # the callback
        assert item.id not in case.items
        assert (case.enabled_tasks() == ["Big"]) if retried else (case.status == "completed")


# An automatic task whose action waits before it runs (a deployment's delay).
LATER = net_of({
    "id": "later", "name": "Later", "version": 1,
    "tasks": [{"id": "Wait", "kind": "automatic", "action": "later"}],
    "flows": [{"from": "start", "to": "Wait"}, {"from": "Wait", "to": "end"}],
})


@pytest.mark.parametrize("waiting", ["a delay before the action", "backoff after a failure"])
async def test_actions_waiting_on_the_clock_do_not_hold_up_the_others(
        db: str, waiting: str) -> None:
    """Actions waiting for their time (a delay such as the e-signature's local one, a
    dispatch window, a backoff) are not running: however many there are, an action
    that is due runs now. They used to sleep in one of the `max_action_workers`, so
    that many waiting items froze every other automatic task until the first woke."""
    reg = ActionRegistry(RetryPolicy(attempts=3, base_delay=3600.0, jitter=0.0), seed=1)
    if waiting.startswith("a delay"):
        reg.register("later", Flaky(0, {}), delay=3600.0)
    else:
        reg.register("later", Flaky(10**6))  # fails every time: backs off an hour
    reg.register("fetch", Flaky(0))
    clock = VirtualClock(0.0)
    async with running(db, clock, [LATER, FETCH], reg, max_action_workers=2) as (_, rt):
        for n in range(3):  # more waiting items than workers
            await rt.create("later", f"w{n}", {})
        await rt.create("fetch", "f1", {})
        with anyio.fail_after(5):
            await rt.wait_idle()
        assert (await rt.get("f1")).enabled_tasks() == ["Big"]
        assert clock.now() == 0.0
        waiters = [await rt.get(f"w{n}") for n in range(3)]
        assert [c.status for c in waiters] == ["active"] * 3
        await run_clock(rt, clock)  # and the waiting ones still run when their time comes
        waiters = [await rt.get(f"w{n}") for n in range(3)]
        if waiting.startswith("a delay"):
            assert [c.status for c in waiters] == ["completed"] * 3
        else:
            assert [i.state for c in waiters for i in c.work_items()] == ["failed"] * 3
            assert len(rt.incidents) == 3 and all(i.attempts == 3 for i in rt.incidents)


async def test_an_answer_the_store_could_not_write_for_now_is_written_later_not_rerun(
        db: str) -> None:
    # Found in review: a lock held by another process when an action's completion was
    # written (StoreBusy) left the item enabled with nobody to resume it, and a
    # restart would have run the action (an e-signature request, an invoice) again.
    from adapters.sqlite_writer import StoreBusy
    handler = Flaky(0)
    clock = VirtualClock(50.0)
    async with running(db, clock, [FETCH], registry(handler)) as (store, rt):
        real, calls = store.append, {"n": 0}

        async def append(batch: Any) -> None:  # the lock is taken twice: the completion
            calls["n"] += 1  # and its first retry meet it
            if calls["n"] in (2, 3):
                raise StoreBusy("the database is locked by another process")
            await real(batch)

        store.append = append
        await rt.create("fetch", "f1", {})
        await run_clock(rt, clock)
        case = await rt.get("f1")
        assert case.enabled_tasks() == ["Big"]  # the action's answer, written
        assert len(handler.calls) == 1 and rt.incidents == []
        assert clock.now() >= 50.0 + 1.0 + 2.0  # waited out: 1 s, then 2 s
