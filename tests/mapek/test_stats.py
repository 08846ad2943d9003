"""Statistics that say how sure they are: intervals cover what they claim to cover,
confidences are calibrated under no effect, nothing is claimed below MIN_SAMPLE, and
Kaplan-Meier reduces to the empirical survival when nothing is censored."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from mapek.stats import (
    CLAIM,
    MIN_SAMPLE,
    bootstrap,
    kaplan_meier,
    permutation_test,
    quantile_interval,
    survival_at,
    wild_bootstrap,
    wilson,
)


def mean_rows(a: np.ndarray) -> np.ndarray:
    return a.mean(axis=1)


@given(st.lists(st.integers(1, 50), min_size=1, max_size=60))
def test_kaplan_meier_without_censoring_is_the_empirical_survival(durations) -> None:
    d = np.array(durations, dtype=float)
    curve = kaplan_meier(d, np.ones(d.size, bool))
    grid = np.arange(0, 52) + 0.5
    probes = np.concatenate([grid, np.unique(d)])  # between and exactly at event times
    assert np.allclose(survival_at(curve, probes), [(d > t).mean() for t in probes])
    assert curve.n == curve.events == d.size


def test_kaplan_meier_counts_censored_items_as_at_risk_until_they_leave() -> None:
    # Textbook: events at 1, 3, 4; censored at 2 and 5 (still running).
    curve = kaplan_meier(np.array([1, 2, 3, 4, 5.0]), np.array([1, 0, 1, 1, 0], bool))
    assert np.allclose(curve.survival, [4 / 5, 4 / 5 * 2 / 3, 4 / 5 * 2 / 3 * 1 / 2])
    assert survival_at(curve, 10.0)[0] > 0  # the censored 5 keeps the tail open
    assert survival_at(curve, 0.5)[0] == 1.0


def test_the_bootstrap_interval_covers_the_true_mean_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(11)
    covered = 0
    repeats = 200
    for _ in range(repeats):
        est = bootstrap(rng.normal(5.0, 2.0, 60), mean_rows, rng, resamples=600)
        assert est is not None
        covered += est.low <= 5.0 <= est.high
    assert 0.89 <= covered / repeats <= 0.99


def test_permutation_confidence_is_uniform_when_there_is_no_effect() -> None:
    rng = np.random.default_rng(3)
    conf = []
    for _ in range(300):
        est = permutation_test(rng.lognormal(0, 1, 40), rng.lognormal(0, 1, 40), rng,
                               resamples=200)
        assert est is not None and est.confidence is not None
        conf.append(est.confidence)
    c = np.array(conf)
    # 1 - p with p super-uniform: P(confidence >= x) <= 1 - x, and close to it.
    assert 0.12 <= (c >= 0.8).mean() <= 0.28
    assert 0.35 <= (c >= 0.5).mean() <= 0.65
    assert (c >= CLAIM).mean() <= 0.09


def test_a_real_difference_is_found_with_high_confidence_and_a_covering_interval() -> None:
    rng = np.random.default_rng(4)
    est = permutation_test(rng.normal(1.0, 1.0, 80), rng.normal(0.0, 1.0, 80), rng)
    assert est is not None and est.confidence is not None
    assert est.confidence >= CLAIM
    assert est.low <= 1.0 <= est.high and est.low > 0
    assert est.n == 160


def test_nothing_is_claimed_below_the_minimum_sample() -> None:
    rng = np.random.default_rng(0)
    small = rng.normal(size=MIN_SAMPLE - 1)
    assert bootstrap(small, mean_rows, rng) is None
    assert permutation_test(small, rng.normal(size=100), rng) is None
    assert bootstrap(rng.normal(size=MIN_SAMPLE), mean_rows, rng) is not None


def test_wilson_interval_stays_inside_0_1_and_is_honest_at_the_edges() -> None:
    none = wilson(0, 10)
    assert none is not None and none.value == 0.0 and none.low == 0.0
    assert 0.25 < none.high < 0.31  # the rule of three, roughly: not zero
    all_ = wilson(10, 10)
    assert all_ is not None and all_.high == 1.0 and all_.low < 0.75
    half = wilson(500, 1000)
    assert half is not None and abs(half.high - half.low - 2 * 1.96 * 0.0158) < 0.002
    assert wilson(0, 0) is None


def test_the_quantile_interval_covers_the_true_median() -> None:
    rng = np.random.default_rng(8)
    true_median = np.exp(0.0)  # lognormal(0, 1)
    hits = sum(
        (e := quantile_interval(rng.lognormal(0, 1, 101), 0.5)) is not None
        and e.low <= true_median <= e.high
        for _ in range(300))
    assert 0.92 <= hits / 300 <= 0.995


def test_the_wild_bootstrap_is_centred_on_least_squares_and_covers_the_slope() -> None:
    rng = np.random.default_rng(5)
    covered = 0
    for _ in range(100):
        x = np.column_stack([np.ones(200), rng.normal(size=200)])
        noise = rng.normal(size=200) * (0.5 + np.abs(x[:, 1]))  # heteroskedastic
        y = 1.0 + 2.0 * x[:, 1] + noise
        coef, draws = wild_bootstrap(x, y, rng, resamples=400)
        assert np.allclose(coef, np.linalg.lstsq(x, y, rcond=None)[0])
        lo, hi = np.quantile(draws[:, 1], [0.025, 0.975])
        covered += lo <= 2.0 <= hi
    assert covered >= 88
