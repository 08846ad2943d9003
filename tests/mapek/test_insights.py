"""Insights (time and flow of work) on hand-computable histories: every number below can
be checked on paper, and the invariants (arrivals add up, a histogram holds its whole
sample) hold for any history hypothesis comes up with. The money and conversion numbers
are test_economics.py's."""

from __future__ import annotations

import itertools
import math

import pytest
from history_kit import T0, H, stay
from hypothesis import given
from hypothesis import strategies as st

from mapek.insights import (
    Phase,
    approvers,
    arrival_patterns,
    cycle_times,
    flow,
    histogram,
    task_times,
)
from mapek.monitor import Observation

D = 86_400.0


# ------------------------------------------------------------------ flow
def test_flow_buckets_arrivals_and_completions_per_day() -> None:
    phases = [
        stay("a", "leads", 1, 5),  # day 0 in, day 0 out
        stay("b", "leads", 23, 25),  # day 0 in, day 1 out
        stay("c", "leads", 30, None),  # day 1 in, still open
        stay("d", "leads", 40, 50, "cancelled"),  # cancelled: no completion
        stay("a", "deals", 6, 60),  # day 0 in, day 2 out
    ]
    series = flow(phases)
    assert [s.workflow_id for s in series] == ["leads", "deals"]  # order of first arrival
    leads, deals = series
    assert leads.starts == [T0, T0 + D, T0 + 2 * D]
    assert leads.arrivals == [2, 2, 0]
    assert leads.completions == [1, 1, 0]
    assert deals.starts == leads.starts  # one time axis for every workflow
    assert deals.arrivals == [1, 0, 0]
    assert deals.completions == [0, 0, 1]


def test_flow_range_is_half_open_and_buckets_aligned() -> None:
    phases = [stay("a", "w", 1), stay("b", "w", 25), stay("c", "w", 48)]
    s = flow(phases, start=T0 + 12 * H, end=T0 + 48 * H)[0]
    assert s.starts == [T0, T0 + D]  # aligned to midnight, not to `start`
    assert s.arrivals == [0, 1]  # 1 h is before start, 48 h is at end (excluded)
    hourly = flow(phases, bucket_seconds=H, start=T0, end=T0 + 3 * H)[0]
    assert hourly.arrivals == [0, 1, 0]


def test_flow_of_nothing() -> None:
    assert flow([]) == []
    with pytest.raises(ValueError):
        flow([stay("a", "w", 1)], bucket_seconds=0)


@given(st.lists(st.tuples(st.floats(0, 500), st.floats(0, 100) | st.none(),
                          st.sampled_from(["w1", "w2", "w3"])), max_size=60),
       st.floats(0, 300), st.floats(1, 300), st.sampled_from([H, 6 * H, D]))
def test_flow_arrivals_sum_to_phases_in_range(rows: list[tuple[float, float | None, str]],
                                              start_h: float, span_h: float,
                                              bucket: float) -> None:
    phases = [stay(f"c{i}", wf, e, None if d is None else e + d)
              for i, (e, d, wf) in enumerate(rows)]
    lo, hi = T0 + start_h * H, T0 + (start_h + span_h) * H
    series = flow(phases, bucket_seconds=bucket, start=lo, end=hi)
    assert sum(sum(s.arrivals) for s in series) == sum(
        1 for p in phases if lo <= p.entered_at < hi)
    assert sum(sum(s.completions) for s in series) == sum(
        1 for p in phases if p.left_at is not None and lo <= p.left_at < hi)
    whole = flow(phases, bucket_seconds=bucket)  # no range: everything counted
    assert sum(sum(s.arrivals) for s in whole) == len(phases)
    for s in series:
        assert len(s.starts) == len(s.arrivals) == len(s.completions)
        assert all(x % bucket == 0 for x in s.starts)
        assert all(b - a == bucket for a, b in zip(s.starts, s.starts[1:], strict=False))


# ------------------------------------------------------------------ cycle times
def test_cycle_times_counts_percentiles_and_slo() -> None:
    phases = [stay(f"c{i}", "w", 0, h) for i, h in enumerate([1, 2, 3, 4, 10])]
    phases += [stay("x", "w", 0, 7, "cancelled"), stay("y", "w", 0, 1, "failed"),
               stay("o1", "w", 90), stay("o2", "w", 99)]
    (ct,) = cycle_times(phases, lambda wf: 3.0 if wf == "w" else None, now=T0 + 100 * H)
    assert (ct.closed, ct.open, ct.cancelled, ct.failed) == (5, 2, 1, 1)
    assert ct.p50_hours == 3.0
    assert ct.p90_hours == pytest.approx(4 + 0.6 * 6)  # linear between 4 and 10
    assert ct.mean_hours == 4.0
    assert ct.within_slo == pytest.approx(3 / 5)
    assert ct.open_over_slo == 1  # o1 is 10 h in, o2 only 1 h
    assert sum(ct.counts) == 5
    assert len(ct.bin_edges_hours) == len(ct.counts) + 1
    assert ct.bin_edges_hours[0] == 0.0 and ct.bin_edges_hours[-1] >= 10.0


def test_cycle_times_without_slo_or_completions() -> None:
    (ct,) = cycle_times([stay("o", "w", 0)], lambda wf: None, now=T0 + H)
    assert ct.closed == 0 and ct.open == 1
    assert ct.within_slo is None and ct.slo_hours is None and ct.p50_hours is None
    assert ct.counts == [0]


def test_histogram_bins_have_nice_widths() -> None:
    import numpy as np

    edges, counts = histogram(np.array([0.0, 5.0, 9.9, 47.0]), 10)
    assert edges[1] - edges[0] == 5.0  # 47 / 10 = 4.7 -> 5
    assert counts[0] == 1 and counts[1] == 2 and counts[-1] == 1


@given(st.lists(st.floats(0, 10_000), min_size=1, max_size=80), st.integers(1, 40))
def test_histogram_holds_its_whole_sample(hours: list[float], bins: int) -> None:
    import numpy as np

    edges, counts = histogram(np.array(hours), bins)
    assert sum(counts) == len(hours)
    assert len(counts) <= bins
    assert edges[0] == 0.0 and edges[-1] >= max(hours)
    assert all(b > a for a, b in itertools.pairwise(edges))


# ------------------------------------------------------------------ approvers
def item(case: str, task: str, by: str | None, enabled_h: float, closed_h: float | None,
         role: str | None = "sales_manager", outcome: str = "completed",
         held_h: float | None = None) -> Observation:
    return Observation(case, "deal-approval-gate", task, 1, T0 + enabled_h * H,
                       T0 + enabled_h * H, None if closed_h is None else T0 + closed_h * H,
                       None if closed_h is None else outcome, by=by, role=role,
                       held_until=None if held_h is None else T0 + held_h * H)


def test_approvers_response_times_per_person() -> None:
    obs = [
        item("a", "SendToSalesManager", "marcus", 0, 1),
        item("b", "SendToSalesManager", "marcus", 0, 3),
        item("c", "ExecutiveCheck", "marcus", 0, 5, role="cfo"),
        item("d", "SendToSalesManager", "marcus", 0, None),  # open: 10 h at now
        item("e", "SendToSalesManager", "marcus", 0, 2, outcome="cancelled"),
        item("f", "SendToFinance", "james", 0, 4, role="finance_manager", held_h=2),
        item("g", "ScoringDecision", None, 0, 0, role=None),  # automatic: not a person
        item("h", "ScoringDecision", "bot", 0, 0, role=None),  # no role: not an approver
    ]
    marcus, james = approvers(obs, now=T0 + 10 * H)
    assert marcus.person == "marcus" and marcus.role == "sales_manager"  # most items
    assert (marcus.completed, marcus.open) == (3, 1)
    assert marcus.p50_hours == 3.0
    assert marcus.p95_hours == pytest.approx(3 + 0.9 * 2)
    assert marcus.tasks == {"SendToSalesManager": 2, "ExecutiveCheck": 1}
    assert marcus.oldest_open_hours == 10.0
    assert james.p50_hours == 2.0  # from the release of the hold at 2 h, not enabling
    assert james.oldest_open_hours is None
    directory = {"marcus": "cfo", "james": "finance_manager"}
    own = approvers(obs, now=T0 + 10 * H, role_of_person=directory.get)
    assert [(a.person, a.role) for a in own] == [("marcus", "cfo"), ("james", "finance_manager")]
    # With a directory, only its people count: a timer closing an item is nobody.
    timed_out = [*obs, item("t", "CustomerSignature", "timer", 0, 9, role="sdr")]
    assert [a.person for a in approvers(timed_out, T0 + 10 * H,
                                        role_of_person=directory.get)] == ["marcus", "james"]
    # Imported history has no role: a person of the directory is counted all the same.
    imported = [*obs, item("i", "SendToFinance", "james", 0, 6, role=None)]
    james = approvers(imported, T0 + 10 * H, role_of_person=directory.get)[1]
    assert (james.person, james.completed, james.tasks) == ("james", 2, {"SendToFinance": 2})


@given(st.lists(st.tuples(st.sampled_from(["p", "q", "r"]), st.floats(0, 50),
                          st.floats(0, 50) | st.none()), max_size=40))
def test_approvers_account_for_every_item(rows: list[tuple[str, float, float | None]],
                                          ) -> None:
    obs = [item(f"c{i}", "T", who, e, None if d is None else e + d)
           for i, (who, e, d) in enumerate(rows)]
    stats = approvers(obs, now=T0 + 200 * H)
    assert sum(a.completed + a.open for a in stats) == len(rows)
    assert [a.completed for a in stats] == sorted((a.completed for a in stats), reverse=True)
    for a in stats:
        assert sum(a.tasks.values()) == a.completed
        if a.completed:
            assert a.p50_hours is not None and a.p95_hours is not None
            assert a.p50_hours <= a.p95_hours + 1e-9
        else:
            assert a.p50_hours is None
    assert math.isfinite(sum(a.completed for a in stats))


def test_histogram_gives_a_long_tail_one_bin() -> None:
    import numpy as np

    sample = np.array([*range(1, 100), 10_000.0])
    edges, counts = histogram(sample, 10)
    assert edges[-1] == 10_000.0 and counts[-1] >= 1
    widths = [b - a for a, b in itertools.pairwise(edges[:-1])]
    assert len(set(widths)) == 1  # equal bins up to the 99th percentile
    assert edges[-2] >= np.quantile(sample, 0.99) and len(counts) <= 10
    assert sum(counts) == sample.size


# ------------------------------------------------------------------ where time goes
def test_task_times_rank_tasks_by_total_hours() -> None:
    obs = [item("a", "Slow", "p", 0, 10), item("b", "Slow", "p", 0, 20),
           item("c", "Quick", "p", 0, 1), item("d", "Quick", None, 0, None),
           item("e", "Quick", "p", 0, 5, outcome="cancelled")]
    slow, quick = task_times(obs, now=T0 + 30 * H)
    assert (slow.task, slow.completed, slow.total_hours, slow.p50_hours) == ("Slow", 2, 30.0, 15.0)
    assert (quick.completed, quick.open, quick.oldest_open_hours) == (1, 1, 30.0)


# ------------------------------------------------------------------ arrivals
MON = T0  # Monday 00:00 UTC


def test_arrival_patterns_read_the_local_clock() -> None:
    phases = [Phase("a", "w", MON + 9.5 * H), Phase("b", "w", MON + 23.5 * H),
              Phase("c", "w", MON + (5 * 24 + 12) * H)]  # Saturday noon UTC
    (ny,) = arrival_patterns(phases, "America/New_York")  # UTC-5 in January
    assert ny.arrivals == 3
    assert [h for h, n in enumerate(ny.by_hour) if n] == [4, 7, 18]
    assert ny.by_weekday == [2, 0, 0, 0, 0, 1, 0]
    assert ny.by_hour_of_week[4] == 1 and ny.by_hour_of_week[5 * 24 + 7] == 1
    assert ny.office_share == 0.0 and ny.days == 6
    (utc,) = arrival_patterns(phases)
    assert utc.office_share == pytest.approx(1 / 3) and utc.peak_hour == 9


@given(st.lists(st.tuples(st.floats(0, 24 * 60), st.sampled_from(["w1", "w2"])),
                max_size=50),
       st.sampled_from(["UTC", "America/Los_Angeles", "Asia/Kolkata", "Europe/Berlin"]),
       st.floats(0, 24 * 30), st.floats(1, 24 * 30))
def test_arrival_breakdowns_each_sum_to_the_arrivals_in_range(
        rows: list[tuple[float, str]], zone: str, start_h: float, span_h: float) -> None:
    phases = [Phase(f"c{i}", wf, MON + h * H) for i, (h, wf) in enumerate(rows)]
    lo, hi = MON + start_h * H, MON + (start_h + span_h) * H
    patterns = arrival_patterns(phases, zone, start=lo, end=hi)
    assert sum(p.arrivals for p in patterns) == sum(1 for p in phases
                                                    if lo <= p.entered_at < hi)
    for p in patterns:
        assert sum(p.by_hour_of_week) == sum(p.by_hour) == sum(p.by_weekday) == p.arrivals
        assert len(p.by_hour_of_week) == 168
