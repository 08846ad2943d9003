"""The Monitor's observations and streaming aggregates: roles and holds are recorded,
the real runtime's events fold into observations and per-key counts, sketch quantiles
stay within their relative error of the exact ones, memory stays bounded, and the
local dispatch hour is the person's, across daylight-saving changes."""

from __future__ import annotations

import json
import pathlib
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors import Runtime, VirtualClock, placeholder_actions
from engine import compile_document
from engine.events import (
    CaseCreated,
    WorkItemCompleted,
    WorkItemEnabled,
    WorkItemHeld,
    WorkItemStarted,
)
from mapek.memory_store import MemoryStore
from mapek.monitor import (
    Monitor,
    Observation,
    QuantileSketch,
    local_clocks,
    local_hour,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]
APPROVALS = ("SendToSalesManager", "SendToLegal", "SendToFinance", "ExecutiveCheck")
ZONES = {"ana": "America/New_York", "raj": "Asia/Kolkata", "lea": "Europe/Berlin"}
T0 = 1_717_236_000.0  # 2024-06-01 10:00 UTC, a Saturday


def stamp(zone: str, at: float) -> tuple[int, int]:
    d = datetime.fromtimestamp(at, ZoneInfo(zone))
    return d.hour, d.weekday()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_runtime_log_folds_into_observations_and_aggregates(anyio_backend) -> None:
    net = compile_document((ROOT / "specs" / "deal-approval-gate.json").read_text())
    deal = json.loads((ROOT / "specs" / "examples" / "techcorp-deal.json").read_text())
    clock = VirtualClock(T0)
    store = MemoryStore()
    people = list(ZONES)
    async with Runtime(store, clock, placeholder_actions()) as rt:
        rt.add_net(net)
        for i in range(6):
            await rt.create("deal-approval-gate", f"d{i}", dict(deal))
            for k, task in enumerate(APPROVALS):
                clock.advance_to(clock.now() + 600 * (k + 1))
                await rt.complete(f"d{i}", task, "approved", {"approval": "APPROVED"},
                                  people[(i + k) % 3])
        await rt.wait_idle()
    monitor = Monitor(store, role_of=lambda wf, task: f"role:{task}",
                      time_zone_of=lambda p: ZONES.get(p or "", "UTC"))
    await monitor.catch_up()
    legal = [o for o in monitor.closed if o.task == "SendToLegal"]
    assert len(legal) == 6 and all(o.role == "role:SendToLegal" for o in legal)
    assert all(o.outcome == "completed" and o.by in ZONES for o in legal)
    assert monitor.attributes["d0"]["deal_acv"] == deal["deal_acv"]
    p = monitor.percentiles("deal-approval-gate", "SendToLegal")
    assert p is not None and p.completed == 6 and p.cancelled == 0
    exact = np.quantile([o.hours(0) for o in legal], 0.5, method="lower")
    assert p.p50_hours == pytest.approx(exact, rel=QuantileSketch.ALPHA)
    by_person = sum(monitor.percentiles("deal-approval-gate", "SendToLegal",
                                        resource=who).completed  # type: ignore[union-attr]
                    for who in {o.by for o in legal})
    assert by_person == 6
    by_hour = [monitor.percentiles("deal-approval-gate", "SendToLegal", hour=h)
               for h in range(24)]
    assert sum(x.completed for x in by_hour if x is not None) == 6
    for o in legal:  # each counted at its person's local hour
        hour, _ = stamp(ZONES[o.by], o.dispatched_at)  # type: ignore[index]
        assert monitor.percentiles("deal-approval-gate", "SendToLegal", hour=hour)
    # Reading again folds nothing twice.
    await monitor.catch_up()
    assert monitor.percentiles("deal-approval-gate", "SendToLegal").completed == 6  # type: ignore[union-attr]


def test_a_hold_moves_the_dispatch_time_and_response_is_measured_from_it() -> None:
    monitor = Monitor(MemoryStore())
    monitor.observe("c1", [
        CaseCreated("c1", "wf", 1, {"segment": "enterprise"}, T0),
        WorkItemEnabled(1, "Call", T0),
        WorkItemHeld(1, T0, T0 + 3 * 3600),
        WorkItemStarted(1, T0 + 4 * 3600, by="ana"),
        WorkItemCompleted(1, T0 + 5 * 3600, result="done", by="ana"),
    ])
    (o,) = monitor.closed
    assert o.held_until == T0 + 3 * 3600 and o.dispatched_at == o.held_until
    assert monitor.attributes["c1"] == {"segment": "enterprise"}
    response = monitor.percentiles("wf", "Call")
    cycle = monitor.percentiles("wf", "Call", measure="cycle")
    assert response is not None and cycle is not None
    assert response.p50_hours == pytest.approx(2.0, rel=0.011)
    assert cycle.p50_hours == pytest.approx(5.0, rel=0.011)
    # Dispatched 13:00 UTC on a Saturday; the default clock is UTC.
    assert monitor.percentiles("wf", "Call", hour=13) is not None


def test_absorbed_history_counts_in_the_aggregates_and_open_items_stay_open() -> None:
    monitor = Monitor(MemoryStore())
    monitor.absorb([
        Observation("a", "wf", "Sign", 1, T0, T0, T0 + 7200, "completed", by="lea"),
        Observation("b", "wf", "Sign", 1, T0, T0, T0 + 100, "cancelled"),
        Observation("c", "wf", "Sign", 1, T0),
    ])
    p = monitor.percentiles("wf", "Sign")
    assert p is not None and (p.completed, p.cancelled) == (1, 1)
    assert p.p95_hours == pytest.approx(2.0, rel=0.011)
    assert len(monitor.open) == 1 and len(list(monitor.observations("wf"))) == 3
    assert monitor.percentiles("wf", "Sign", resource="lea").completed == 1  # type: ignore[union-attr]
    assert monitor.percentiles("wf", "Nope") is None


@given(st.lists(st.floats(1e-2, 1e8), min_size=1, max_size=300),
       st.sampled_from([0.0, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0]))
def test_sketch_quantiles_are_within_the_bucket_error_of_exact_ones(values, q) -> None:
    sketch = QuantileSketch()
    for v in values:
        sketch.add(v)
    exact = float(np.quantile(values, q, method="lower"))
    got = sketch.quantile(q)
    assert got is not None
    assert abs(got - exact) <= QuantileSketch.ALPHA * exact * (1 + 1e-9)


def test_vectorized_buckets_agree_with_the_scalar_ones() -> None:
    x = np.random.default_rng(2).lognormal(5, 4, 5000)
    x[:10] = 0.0  # at or below the floor: the zero bucket
    assert QuantileSketch.buckets_of(x).tolist() == [QuantileSketch.bucket(v) for v in x]


def test_sketch_memory_is_bounded_however_wide_the_values() -> None:
    sketch = QuantileSketch()
    for v in np.geomspace(1e-2, 1e300, 40_000):
        sketch.add(float(v))
    assert len(sketch.buckets) <= QuantileSketch.MAX_BUCKETS
    assert sketch.n == 40_000
    top = sketch.quantile(1.0)
    assert top is not None and top == pytest.approx(1e300, rel=QuantileSketch.ALPHA)


def test_local_hour_follows_the_person_across_daylight_saving() -> None:
    # New York springs forward on 2024-03-10 at 02:00 EST (07:00 UTC).
    before = datetime(2024, 3, 10, 6, 30, tzinfo=UTC).timestamp()
    after = datetime(2024, 3, 10, 7, 30, tzinfo=UTC).timestamp()
    assert local_hour("America/New_York", before) == (1, 6)  # 01:30 EST, Sunday
    assert local_hour("America/New_York", after) == (3, 6)  # 03:30 EDT
    # Kolkata is +05:30 all year: 20:45 UTC Sunday is 02:15 Monday there.
    late = datetime(2024, 3, 10, 20, 45, tzinfo=UTC).timestamp()
    assert local_hour("Asia/Kolkata", late) == (2, 0)


@given(st.lists(st.floats(1_700_000_000, 1_760_000_000), min_size=1, max_size=200))
def test_vectorized_local_clocks_match_zoneinfo(times) -> None:
    zones = ["America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "Europe/Berlin"]
    at = np.array(times)
    which = np.arange(at.size) % len(zones)
    hour, weekday = local_clocks(at, which, zones)
    expected = [stamp(zones[z], t) for z, t in zip(which.tolist(), times, strict=True)]
    assert list(zip(hour.tolist(), weekday.tolist(), strict=True)) == expected
    assert [local_hour(zones[z], t) for z, t in zip(which.tolist(), times,
                                                    strict=True)] == expected
