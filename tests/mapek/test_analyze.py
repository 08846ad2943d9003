"""The Analyze stage on planted histories: it finds what was planted (a slow branch, a
slow hour, a slow person), claims nothing where nothing was planted even when who
works when is confounded with a slow hour, reads hours on the person's clock, sweeps
load correctly, and breach risk grows with the time an item has already taken."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mapek.analyze import (
    Analysis,
    ItemFrame,
    analyze,
    assignee_effect,
    bottlenecks,
    breach_risk,
    dispatch_effect,
    slo_compliance,
)
from mapek.monitor import Observation
from mapek.stats import CLAIM, MIN_SAMPLE, kaplan_meier, survival_at

T0 = 1_704_067_200.0  # 2024-01-01 00:00 UTC, a Monday
H = 3600.0


def done(case: str, task: str, enabled: float, hours: float, by: str | None,
         wf: str = "wf", item: int = 1) -> Observation:
    return Observation(case, wf, task, item, enabled, enabled, enabled + hours * H,
                       "completed", by=by)


def utc(_person: str | None) -> str:
    return "UTC"


def hourly(rng: np.random.Generator, n: int, people: list[str], *,
           hour_of: dict[str, np.ndarray] | None = None, slow_hours: tuple[int, ...] = (),
           slow_person: str | None = None, factor: float = 2.0) -> list[Observation]:
    """One task's items spread over 60 days, dispatched at whole local hours (UTC).
    `hour_of[p]`: the distribution of p's dispatch hours (default uniform)."""
    out = []
    who = rng.choice(people, n)
    for i, p in enumerate(who.tolist()):
        probs = None if hour_of is None else hour_of[p]
        hour = int(rng.choice(24, p=probs))
        at = T0 + int(rng.integers(0, 60)) * 86400 + hour * H
        hours = rng.lognormal(0.5, 0.5)
        hours *= factor if hour in slow_hours else 1.0
        hours *= 1.5 if p == slow_person else 1.0
        out.append(done(f"c{i}", "Approve", at, hours, p))
    return out


def test_the_frame_reads_hours_on_each_persons_clock_across_dst() -> None:
    zones = {"ana": "America/New_York", "raj": "Asia/Kolkata"}
    at = [datetime(2024, 3, 10, h, 30, tzinfo=UTC).timestamp() for h in range(3, 12)]
    obs = [done(f"c{i}", "T", t, 1.0, who) for i, t in enumerate(at) for who in zones]
    obs.append(Observation("open", "wf", "T", 1, at[0]))  # nobody yet: the default zone
    frame = ItemFrame.from_observations(obs, at[-1] + 86400,
                                        lambda p: zones.get(p or "", "Europe/Berlin"))
    for i, o in enumerate(obs):
        d = datetime.fromtimestamp(o.enabled_at,
                                   ZoneInfo(zones.get(o.by or "", "Europe/Berlin")))
        assert (frame.hour[i], frame.weekday[i]) == (d.hour, d.weekday())
    assert frame.person[-1] == -1 and np.isnan(frame.closed[-1])
    assert sorted(frame.people) == ["ana", "raj"]


def test_load_at_pickup_counts_the_persons_other_items_in_progress() -> None:
    obs = [
        Observation("a", "wf", "T", 1, T0, T0, T0 + 10, "completed", by="x"),
        Observation("b", "wf", "T", 1, T0, T0 + 5, T0 + 20, "completed", by="x"),
        Observation("c", "wf", "T", 1, T0, T0 + 12, None, by="x"),  # still open
        Observation("d", "wf", "T", 1, T0, None, T0 + 15, "completed", by="x"),  # straight
        Observation("e", "wf", "T", 1, T0, T0 + 5, T0 + 6, "completed", by="y"),
        Observation("f", "wf", "T", 1, T0),  # nobody
    ]
    frame = ItemFrame.from_observations(obs, T0 + 100)
    assert frame.load.tolist() == [0, 1, 1, 2, 0, 0]


def test_slo_compliance_counts_closed_open_and_open_over_target() -> None:
    obs = [done(f"c{i}", "T", T0, h, "x") for i, h in enumerate([1, 2, 3, 4, 10])]
    obs += [Observation("o1", "wf", "T", 1, T0 + 97 * H), Observation("o2", "wf", "T", 1, T0)]
    now = T0 + 100 * H
    frame = ItemFrame.from_observations(obs, now)
    (row,) = slo_compliance(frame, lambda wf, t: 5.0 if t == "T" else None, now)
    assert (row.closed, row.open, row.open_over_target) == (5, 2, 1)
    assert row.p50_hours == pytest.approx(3.0)
    assert row.compliance is not None and row.compliance.value == pytest.approx(0.8)
    assert row.compliance.low < 0.8 < row.compliance.high


def parallel(rng: np.random.Generator, cases: int, slow: str | None) -> list[Observation]:
    """Four approvals enabled together per case (an AND-split); `slow` takes 3x."""
    out = []
    for c in range(cases):
        at = T0 + c * 7 * H
        for k, task in enumerate(("Sales", "Legal", "Finance", "Exec")):
            hours = rng.lognormal(1.0, 0.5) * (3.0 if task == slow else 1.0)
            out.append(done(f"c{c}", task, at, hours, f"p{k}", wf="deal", item=k + 1))
        out.append(done(f"c{c}", "Qualify", at - 5 * H, 2.0, "q", wf="deal", item=0))
    return out


def test_bottlenecks_find_the_planted_slow_branch() -> None:
    obs = parallel(np.random.default_rng(1), 150, "Legal")
    # A deferred choice: two items enabled together, one cancelled -- not a join.
    obs += [done("z", "PayNow", T0, 1.0, "x", wf="deal"),
            Observation("z", "deal", "Timeout", 2, T0, None, T0 + H, "cancelled")]
    (join,) = bottlenecks(ItemFrame.from_observations(obs, T0 + 10_000 * H))
    assert sorted(join.tasks) == ["Exec", "Finance", "Legal", "Sales"]
    assert join.n == 150 and join.bottleneck == "Legal"
    top = join.by_task[0]
    assert top.task == "Legal" and top.share.value > 0.6
    assert top.share.confidence is not None and top.share.confidence >= CLAIM
    assert top.extra_wait_hours is not None and top.extra_wait_hours.low > 0
    assert sum(t.decided for t in join.by_task) == join.n


def test_bottlenecks_claim_nothing_when_the_branches_are_alike() -> None:
    claims = sum(
        bottlenecks(ItemFrame.from_observations(
            parallel(np.random.default_rng(seed), 120, None), T0 + 10_000 * H),
            )[0].bottleneck is not None
        for seed in range(10))
    assert claims <= 1


def test_dispatch_effect_finds_the_fast_hours() -> None:
    rng = np.random.default_rng(2)
    off_hours = (*range(0, 9), *range(18, 24))
    obs = hourly(rng, 3000, ["a", "b", "c"], slow_hours=off_hours)
    frame = ItemFrame.from_observations(obs, T0 + 90 * 86400, utc)
    d = dispatch_effect(frame, "wf", "Approve")
    assert d is not None and d.n == 3000 and len(d.by_hour) == 24
    assert d.best_hour is not None and 9 <= d.best_hour < 18
    assert d.effect is not None and d.effect.high < 0.8 and d.claimed
    assert d.hours_saved is not None and d.hours_saved > 0
    assert {s.key for s in d.by_day} == {"weekday", "weekend"}


def test_dispatch_effect_claims_nothing_without_an_effect_or_enough_data() -> None:
    claims = 0
    for seed in range(40):  # at CLAIM = 0.95, one in twenty by chance: 2 expected
        obs = hourly(np.random.default_rng(seed), 1000, ["a", "b"])
        d = dispatch_effect(ItemFrame.from_observations(obs, T0 + 90 * 86400, utc), "wf",
                            "Approve", resamples=200)
        assert d is not None and d.effect is not None
        claims += d.claimed
    assert claims <= 5  # P(6 or more | calibrated) ~ 1.4 %
    few = hourly(np.random.default_rng(0), MIN_SAMPLE - 1, ["a"])
    assert dispatch_effect(ItemFrame.from_observations(few, T0 + 90 * 86400), "wf",
                           "Approve") is None


def test_assignee_effect_recovers_a_planted_slow_person() -> None:
    obs = hourly(np.random.default_rng(3), 2400, ["a", "b", "c", "slow"],
                 slow_person="slow")
    a = assignee_effect(ItemFrame.from_observations(obs, T0 + 90 * 86400, utc), "wf",
                        "Approve")
    assert a is not None and a.n == 2400
    top = a.people[0]
    assert top.person == "slow" and top.claimed and top.effect is not None
    truth = 1.5 ** 0.75  # against the average of four, one of them slow
    assert top.effect.low <= truth <= top.effect.high
    assert top.extra_hours is not None and top.extra_hours > 0
    assert not any(p.claimed for p in a.people if p.effect and p.effect.value > 1.0
                   and p.person != "slow")


def test_assignee_effect_is_not_fooled_by_who_works_at_the_slow_hour() -> None:
    """Equal people; hour 8 is twice as slow and "x" is dispatched mostly at 8. The
    raw medians make x look slow; controlling for the hour, nothing is claimed."""
    busy_at_8 = np.full(24, 0.3 / 23)
    busy_at_8[8] = 0.7
    uniform = np.full(24, 1 / 24)
    claims, raw_gap = 0, []
    for seed in range(5):
        obs = hourly(np.random.default_rng(seed), 1600, ["x", "y", "z"], slow_hours=(8,),
                     hour_of={"x": busy_at_8, "y": uniform, "z": uniform})
        a = assignee_effect(ItemFrame.from_observations(obs, T0 + 90 * 86400, utc), "wf",
                            "Approve")
        assert a is not None
        medians = {p.person: p.median_hours for p in a.people}
        raw_gap.append(medians["x"] / medians["y"])
        x = next(p for p in a.people if p.person == "x")
        assert x.effect is not None and x.effect.low < 1.0 < x.effect.high
        claims += any(p.claimed for p in a.people)
    assert min(raw_gap) > 1.2  # what a naive comparison would blame on x
    assert claims <= 1


def test_assignee_effect_claims_nothing_for_a_person_below_the_minimum() -> None:
    obs = hourly(np.random.default_rng(4), 400, ["a", "b"], slow_person="b")
    obs += [done(f"r{i}", "Approve", T0 + i * H, 50.0, "rare") for i in range(MIN_SAMPLE - 1)]
    a = assignee_effect(ItemFrame.from_observations(obs, T0 + 90 * 86400, utc), "wf",
                        "Approve")
    assert a is not None
    rare = next(p for p in a.people if p.person == "rare")
    assert rare.effect is None and not rare.claimed and rare.n == MIN_SAMPLE - 1


def risk_history(rng: np.random.Generator, elapsed: list[float]) -> tuple[list[Observation],
                                                                           float]:
    now = T0 + 1000 * H
    obs = [done(f"c{i}", "T", T0 + i * H, float(h), "x")
           for i, h in enumerate(rng.lognormal(2.0, 0.8, 300))]
    obs += [Observation(f"o{i}", "wf", "T", 1, now - e * H, by="x")
            for i, e in enumerate(elapsed)]
    return obs, now


@given(st.lists(st.floats(0.0, 40.0), min_size=1, max_size=25, unique=True))
def test_breach_risk_grows_with_the_time_already_taken(elapsed) -> None:
    obs, now = risk_history(np.random.default_rng(0), elapsed)
    frame = ItemFrame.from_observations(obs, now)
    rows = breach_risk(frame, lambda wf, t: 24.0, now)
    assert len(rows) == sum(e < 24.0 for e in elapsed)  # over target already: not a risk
    probs = [r.probability for r in rows]
    assert probs == sorted(probs, reverse=True)
    by_elapsed = sorted(rows, key=lambda r: r.elapsed_hours)
    assert all(a.probability <= b.probability + 1e-12
               for a, b in itertools.pairwise(by_elapsed))
    if rows:
        idx = frame.members[0]
        is_open = np.isnan(frame.closed[idx])
        curve = kaplan_meier(np.where(is_open, now, frame.closed[idx]) / H
                             - frame.enabled[idx] / H, ~is_open)
        r = rows[-1]
        expect = survival_at(curve, 24.0)[0] / survival_at(curve, r.elapsed_hours)[0]
        assert r.probability == pytest.approx(min(1.0, expect))
        assert r.n == 300 + len(elapsed)


def test_breach_risk_needs_enough_completed_history() -> None:
    now = T0 + 100 * H
    obs = [done(f"c{i}", "T", T0, 2.0, "x") for i in range(MIN_SAMPLE - 1)]
    obs.append(Observation("o", "wf", "T", 1, now - H))
    assert breach_risk(ItemFrame.from_observations(obs, now), lambda wf, t: 8.0, now) == []


def test_analyze_bundles_everything_as_json_with_a_data_stamp() -> None:
    rng = np.random.default_rng(6)
    obs = parallel(rng, 80, "Legal")
    obs += [Observation(f"open{i}", "deal", "Legal", 2, T0 + 79 * 7 * H + i * H, by="p1")
            for i in range(3)]
    now = T0 + 80 * 7 * H

    def targets(wf: str, task: str) -> float | None:
        return 12.0 if wf == "deal" else None

    result = analyze(obs, targets, now, utc)
    assert isinstance(result, Analysis)
    assert result.stamp.observations == len(obs)
    assert result.stamp.latest == max(max(o.enabled_at, o.closed_at or 0) for o in obs)
    assert {s.task for s in result.slo} == {"Sales", "Legal", "Finance", "Exec", "Qualify"}
    assert result.bottlenecks[0].bottleneck == "Legal"
    assert {r.task for r in result.breach_risk} <= {"Legal"}
    again = analyze(obs, targets, now, utc)
    assert msgspec.json.encode(again) == msgspec.json.encode(result)  # deterministic
    decoded = msgspec.json.decode(msgspec.json.encode(result), type=Analysis)
    assert decoded == result
