"""The digital twin's parts: the in-memory store against the SQLite one, the one-task
twin the planner calls (with and without a dispatch hold), arrival patterns and
working-time response models. Real runtime, real stores, no mocks."""

from __future__ import annotations

import datetime as dt
import math
import pathlib
import random
import statistics
from collections import Counter
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from actors import ActionContext, Runtime, VirtualClock, placeholder_actions
from actors.actions import AWAIT_CALLBACK
from actors.ports import Append, AppendConflict, CaseRow, SpecRow
from adapters.sqlite_store import SQLiteStore
from engine import compile_document
from engine.events import CaseCreated
from mapek.responses import after_working_time, working_time_between
from mapek.twin import (
    Agenda,
    MemoryStore,
    Observed,
    PeopleModel,
    RoleModel,
    WorkingHours,
    arrivals,
    people_from_observations,
    run_task_twin,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
DAY, HOUR = 86400.0, 3600.0
MONDAY = dt.datetime(2025, 11, 3, tzinfo=dt.UTC).timestamp()  # a Monday, 00:00 UTC
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def net(name: str) -> Any:
    return compile_document((SPECS / f"{name}.json").read_text(encoding="utf-8"))


# ------------------------------------------------------- MemoryStore conformance
async def scenario(store: Any) -> dict[str, Any]:
    """The runtime drives deals through approvals, a hand-over, a contract awaiting its
    e-signature and a timer; -> everything the port answers afterwards."""
    actions = placeholder_actions()

    async def await_signature(ctx: ActionContext) -> Any:
        return AWAIT_CALLBACK

    actions.register("e_signature", await_signature)
    clock = VirtualClock(MONDAY)
    nets = [net("deal-approval-gate"), net("contract-processing")]
    deal = {"deal_name": "D", "customer_name": "C", "deal_acv": 40000,
            "discount_percent": 0}
    async with Runtime(store, clock, actions, snapshot_every=3) as rt:
        for n in nets:
            rt.add_net(n)
        await store.save_spec(SpecRow("w", 1, "d", "{}", MONDAY))
        await store.save_spec(SpecRow("w", 1, "other", "{}", MONDAY))  # ignored
        # Quiet after every command, so that automatic work commits in the same order
        # on both stores (on SQLite an append suspends; in memory it does not).
        for i in range(3):
            await rt.create("deal-approval-gate", f"deal-{i}", deal)
            await rt.wait_idle()
        clock.advance_to(MONDAY + HOUR)
        for task in ("SendToSalesManager", "SendToFinance"):
            await rt.complete("deal-0", task, "approved", None, "marcus")
            await rt.wait_idle()
        await rt.complete("deal-1", "SendToFinance", "approved", None, "james")
        await rt.start("deal-2", "SendToFinance", "james")
        await rt.wait_idle()
    stored = {cid: await store.load(cid) for cid in ("deal-0", "deal-1", "deal-2", "none")}
    return {
        "load": {cid: None if s is None else (s.snapshot_seq, s.snapshot is not None,
                                              s.events)
                 for cid, s in stored.items()},
        "exists": [await store.case_exists(c) for c in ("deal-0", "nope")],
        "timers": [(t.case_id, t.item, t.due) for t in await store.pending_timers()],
        "open": [(i.case_id, i.item, i.task, i.kind, i.role, i.state, i.enabled_at, i.due,
                  i.assignee) for i in await store.open_items()],
        "automatic": [(i.case_id, i.task) for i in await store.open_items("automatic")],
        "phases": sorted(await store.open_phases()),
        "log": await store.read_events(0),
        "tail": await store.read_events(3, 2),
        "counts": await store.open_counts(["james", "awaiting:e_signature", "nobody"]),
        "specs": [(r.workflow_id, r.version, r.digest) for r in await store.specs()],
    }


async def test_memory_store_answers_like_the_sqlite_store(tmp_path: pathlib.Path) -> None:
    memory = await scenario(MemoryStore())
    async with SQLiteStore(str(tmp_path / "conformance.db")) as sqlite:  # type: ignore[arg-type]
        disk = await scenario(sqlite)
    assert memory == disk
    # The scenario did reach what it is meant to compare.
    assert memory["load"]["deal-0"][1], "deal-0 has a snapshot (snapshot_every=3)"
    assert memory["load"]["none"] is None
    assert ("deal-0", "awaiting:e_signature") not in memory["counts"].items()
    assert memory["counts"] == {"james": 1, "awaiting:e_signature": 1}
    assert memory["timers"], "the sales manager's 24 h timers are pending"
    assert {wf for _, wf, _ in memory["phases"]} == {"deal-approval-gate",
                                                     "contract-processing"}


async def test_memory_store_refuses_an_append_that_does_not_continue_the_log() -> None:
    store = MemoryStore()
    row = CaseRow("c", "w", 1, "active", 0.0, 0.0, None, 1)
    event = CaseCreated("c", "w", 1, {}, 0.0)
    await store.append(Append("c", 1, [event], row, [], []))
    for first in (1, 3):  # taken, and a gap
        with pytest.raises(AppendConflict):
            await store.append(Append("c", first, [event], row, [], []))
    await store.append(Append("c", 2, [event, event], row, [], []))
    assert len(await store.events("c")) == 3
    assert [p for p, *_ in await store.read_events(0)] == [1, 2]


async def test_a_runtime_restarted_over_a_memory_store_rebuilds_its_cases() -> None:
    store, clock = MemoryStore(), VirtualClock(MONDAY)
    gate = net("deal-approval-gate")
    deal = {"deal_name": "D", "customer_name": "C", "deal_acv": 600000}
    async with Runtime(store, clock, placeholder_actions(), snapshot_every=2) as rt:
        rt.add_net(gate)
        await rt.create("deal-approval-gate", "big", deal)
        for task in ("SendToLegal", "ExecutiveCheck"):
            await rt.complete("big", task, "approved")
        before = await rt.get("big")
        state = (before.version, sorted(before.enabled_tasks()), dict(before.data))
    async with Runtime(store, clock, placeholder_actions()) as again:
        again.add_net(gate)
        after = await again.get("big")
        assert (after.version, sorted(after.enabled_tasks()), dict(after.data)) == state
        await again.complete("big", "SendToSalesManager", "approved")  # continues the log


# ------------------------------------------------------------- run_task_twin
async def test_twin_completes_each_item_respond_seconds_after_dispatch() -> None:
    times = [MONDAY + i * 600.0 for i in range(50)] + [MONDAY + 10.0]  # unsorted is fine
    asked: list[tuple[int, float]] = []

    def respond(i: int, at: float) -> float:
        asked.append((i, at))
        return 300.0 + 60.0 * (i % 5)

    run = await run_task_twin(times, respond, workflow_id="wf", task="Approve")
    assert run.enabled_at == times  # no hold: enabled at arrival, dispatched at once
    assert run.dispatched_at == times
    assert run.completed_at == [t + 300.0 + 60.0 * (i % 5) for i, t in enumerate(times)]
    assert sorted(asked) == [(i, t) for i, t in enumerate(times)]


class OddHoursHeld:
    """A dispatch policy: work enabled in an odd UTC hour waits for the next hour."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def hold_until(self, workflow_id: str, task: str, at: float) -> tuple[float, int] | None:
        self.asked.append((workflow_id, task))
        hour = math.floor(at / HOUR)
        return ((hour + 1) * HOUR, 7) if hour % 2 else None


async def test_twin_dispatch_honours_the_policys_hold() -> None:
    times = [MONDAY + i * 1500.0 for i in range(40)]
    policy = OddHoursHeld()
    run = await run_task_twin(times, lambda i, at: 120.0, dispatch=policy,
                              workflow_id="wf", task="Approve")
    assert set(policy.asked) == {("wf", "Approve")}
    held = 0
    for t, enabled, sent, done in zip(times, run.enabled_at, run.dispatched_at,
                                      run.completed_at, strict=True):
        assert enabled == t
        hour = math.floor(t / HOUR)
        expected = (hour + 1) * HOUR if hour % 2 else t
        held += expected > t
        assert sent == expected
        assert done == sent + 120.0
    assert held >= 10


async def test_twin_is_deterministic_and_keeps_arrival_order() -> None:
    rng = random.Random(5)
    times = sorted(MONDAY + rng.uniform(0, DAY) for _ in range(300))
    draws = [rng.expovariate(1 / 900.0) for _ in times]
    one = await run_task_twin(times, lambda i, at: draws[i])
    two = await run_task_twin(times, lambda i, at: draws[i])
    assert one == two
    assert not any(math.isnan(x) for x in one.completed_at)


# ------------------------------------------------------------- arrival patterns
def per_day(times: list[float], start: float) -> Counter[int]:
    return Counter(int((t - start) // DAY) for t in times)


def test_every_pattern_puts_exactly_n_sorted_arrivals_in_the_period() -> None:
    for pattern in ("base", "seasonal", "burst", "decline"):
        times = arrivals(pattern, 1234, 10, MONDAY, random.Random(1))
        assert len(times) == 1234
        assert times == sorted(times)
        assert times[0] >= MONDAY and times[-1] < MONDAY + 10 * DAY
        assert times == arrivals(pattern, 1234, 10, MONDAY, random.Random(1))
    with pytest.raises(ValueError):
        arrivals("spiky", 10, 1, MONDAY, random.Random(1))


def test_base_comes_in_office_hours_on_weekdays() -> None:
    times = arrivals("base", 5000, 28, MONDAY, random.Random(2))
    local = [dt.datetime.fromtimestamp(t, dt.UTC) for t in times]
    office = sum(1 for d in local if d.weekday() < 5 and 8 <= d.hour < 18)
    assert office / len(times) > 0.75


def test_seasonal_has_more_on_weekdays_and_at_month_end() -> None:
    start = dt.datetime(2025, 10, 1, tzinfo=dt.UTC).timestamp()  # all of October
    times = arrivals("seasonal", 20000, 31, start, random.Random(3))
    days = per_day(times, start)
    date = {d: dt.date(2025, 10, 1) + dt.timedelta(days=d) for d in range(31)}
    weekday = [days[d] for d in range(27) if date[d].weekday() < 5]
    weekend = [days[d] for d in range(27) if date[d].weekday() >= 5]
    assert statistics.mean(weekday) > 3 * statistics.mean(weekend)
    month_end = [days[d] for d in range(27, 31) if date[d].weekday() < 5]  # 28th-31st
    assert statistics.mean(month_end) > 1.6 * statistics.mean(weekday)
    mondays = [days[d] for d in range(27) if date[d].weekday() == 0]
    fridays = [days[d] for d in range(27) if date[d].weekday() == 4]
    assert statistics.mean(mondays) > statistics.mean(fridays)


def test_decline_decreases_over_the_period() -> None:
    times = arrivals("decline", 9000, 28, MONDAY, random.Random(4))
    weeks = Counter(int((t - MONDAY) // (7 * DAY)) for t in times)
    assert weeks[0] > weeks[1] > weeks[2] > weeks[3]
    assert weeks[0] > 2.5 * weeks[3]


def test_burst_has_short_spikes_above_the_base() -> None:
    times = arrivals("burst", 6000, 30, MONDAY, random.Random(6))
    hours = Counter(int((t - MONDAY) // HOUR) for t in times)
    office = sorted(hours[h] for h in range(30 * 24)
                    if (h // 24) % 7 < 5 and 8 <= h % 24 < 18)
    typical = statistics.median(office)
    spikes = [h for h in range(30 * 24) if hours[h] > 5 * typical]
    assert 3 * 4 <= len(spikes) <= 3 * 12, "three spikes of 4-12 hours"
    base = Counter(int((t - MONDAY) // HOUR)
                   for t in arrivals("base", 6000, 30, MONDAY, random.Random(6)))
    assert max(base.values()) < 3 * statistics.median(
        base[h] for h in range(30 * 24) if (h // 24) % 7 < 5 and 8 <= h % 24 < 18)


# ------------------------------------------------------------ response models
NEW_YORK = ZoneInfo("America/New_York")


def test_working_time_only_runs_in_the_persons_office_hours() -> None:
    friday = dt.datetime(2025, 11, 21, 16, 30, tzinfo=NEW_YORK).timestamp()
    done = after_working_time(friday, 2 * HOUR, NEW_YORK, WorkingHours())
    assert dt.datetime.fromtimestamp(done, NEW_YORK) == dt.datetime(2025, 11, 24, 10, 30,
                                                                    tzinfo=NEW_YORK)
    assert working_time_between(friday, done, NEW_YORK, WorkingHours()) == 2 * HOUR


def test_sampled_responses_end_inside_working_hours_and_scale_by_multipliers() -> None:
    model = PeopleModel(roles={"legal_counsel": RoleModel(median_hours=3.0, sigma=0.6,
                                                          hour_multipliers={16: 2.0})},
                        people={"slow@acme.com": 2.0})
    rng = random.Random(7)
    starts = [MONDAY + rng.uniform(0, 7 * DAY) for _ in range(400)]
    for t in starts:
        done = t + model.response("p@acme.com", "legal_counsel", "America/New_York", t, rng)
        local = dt.datetime.fromtimestamp(done, NEW_YORK)
        assert local.weekday() < 5 and 9 <= local.hour + local.minute / 60 <= 17

    def median_work(person: str) -> float:
        r = random.Random(8)
        t = dt.datetime(2025, 11, 3, 9, tzinfo=NEW_YORK).timestamp()
        return statistics.median(
            working_time_between(t, t + model.response(person, "legal_counsel",
                                                       "America/New_York", t, r),
                                 NEW_YORK, WorkingHours()) for _ in range(500))

    assert median_work("p@acme.com") == pytest.approx(3 * HOUR, rel=0.12)
    assert median_work("slow@acme.com") == pytest.approx(6 * HOUR, rel=0.12)


def test_people_fitted_from_observations_recover_the_model() -> None:
    truth = PeopleModel(roles={"finance_manager": RoleModel(median_hours=1.5, sigma=0.5)},
                        people={"james@acme.com": 1.0, "ann@acme.com": 2.0})
    rng, seen = random.Random(9), []
    zones = {"james@acme.com": "America/Chicago", "ann@acme.com": "America/New_York"}
    for k in range(1200):
        who = "ann@acme.com" if k % 3 == 0 else "james@acme.com"
        t = MONDAY + rng.uniform(0, 21 * DAY)
        seen.append(Observed(who, "finance_manager", t,
                             t + truth.response(who, "finance_manager", zones[who], t, rng)))
    fitted = people_from_observations(seen, zones)
    m = fitted.roles["finance_manager"]
    # The role's median is the geometric mean over both people (ann is twice as slow).
    assert m.median_hours == pytest.approx(1.5 * 2 ** (1 / 3), rel=0.1)
    assert m.sigma == pytest.approx(0.5 + 0.1, abs=0.15)  # the people mix widens it
    ratio = fitted.people["ann@acme.com"] / fitted.people["james@acme.com"]
    assert ratio == pytest.approx(2.0, rel=0.12)


def test_agenda_breaks_ties_by_insertion_order() -> None:
    agenda = Agenda()

    def named(name: str) -> Any:
        async def act() -> None:
            return None
        act.__name__ = name
        return act

    for name in ("a", "b", "c"):
        agenda.at(5.0, named(name))
    agenda.at(1.0, named("first"))
    assert agenda.next_time() == 1.0 and len(agenda) == 4
    assert [agenda.pop().__name__ for _ in range(4)] == ["first", "a", "b", "c"]
