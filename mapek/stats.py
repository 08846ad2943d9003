"""Statistics that say how sure they are: estimates with intervals, sizes and confidence.

Theory of operation
-------------------
Every number the Analyze stage claims is an `Estimate`: a value, an interval at
`LEVEL` (95 %), the sample size it rests on, and -- for a claimed *effect* -- a
confidence. Below `MIN_SAMPLE` observations the helpers return None: a median of
twelve approvals is an anecdote, and the loop must not act on anecdotes.

Intervals come from resampling where a formula would assume a shape work times do
not have (they are skewed, heavy-tailed, multi-modal by hour): the percentile
bootstrap, drawn all at once as a (resamples x n) index matrix with a numpy
Generator, in row chunks so memory stays bounded. Two closed forms are used where
they are exact or better than resampling: the Wilson interval for a share and the
order-statistic interval for a quantile (distribution-free: which ranks bracket the
quantile follows from the binomial, whatever the times look like).

Confidence is `1 - p` of a permutation test, p = (1 + #{null >= observed}) / (1 + R):
under no effect p is (super-)uniform, so P(confidence >= c) <= 1 - c. That is the
sense in which it is a calibrated probability: of all the "90 % sure" statements
made about effects that do not exist, at most one in ten clears that bar. A claim
is made only at `CLAIM` or above. Selection (the best of 24 hours, the most
different of ten people) is repeated inside every permutation, so the max over the
null pays for the look-elsewhere effect.

`QuantileSketch` is the streaming counterpart of a quantile: log-spaced buckets with
a bounded relative error, for aggregates that must not keep every duration.

Kaplan-Meier turns closed work plus still-open work (right-censored: we only know
it has taken at least this long) into a survival curve, so breach risk is not
biased towards the fast items that happened to finish.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import NormalDist

import msgspec
import numpy as np

MIN_SAMPLE = 30  # below this many observations nothing is claimed
LEVEL = 0.95  # interval coverage
CLAIM = 0.95  # confidence at or above which an effect is claimed
RESAMPLES = 1000
_CELLS = 4_000_000  # elements per resampling chunk: bounds memory to ~32 MB a matrix


class Estimate(msgspec.Struct, frozen=True, gc=False):
    value: float
    low: float
    high: float
    n: int
    confidence: float | None = None  # 1 - p of a permutation test (effects only)


def _z(level: float) -> float:
    return NormalDist().inv_cdf(0.5 + level / 2.0)


def _chunks(resamples: int, n: int) -> list[int]:
    rows = max(1, _CELLS // max(n, 1))
    return [min(rows, resamples - i) for i in range(0, resamples, rows)]


def bootstrap(sample: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray],
              rng: np.random.Generator, *, resamples: int = RESAMPLES,
              level: float = LEVEL, minimum: int = MIN_SAMPLE) -> Estimate | None:
    """Percentile bootstrap. `statistic` reduces a (rows x n) matrix along axis 1
    (e.g. ``lambda a: a.mean(axis=1)``) and is also applied to the sample itself."""
    x = np.asarray(sample, dtype=float)
    n = x.size
    if n < minimum:
        return None
    draws = np.concatenate([statistic(x[rng.integers(0, n, (rows, n))])
                            for rows in _chunks(resamples, n)])
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return Estimate(float(statistic(x[None, :])[0]), float(lo), float(hi), n)


def bootstrap_means(sample: np.ndarray, rng: np.random.Generator,
                    resamples: int = RESAMPLES) -> np.ndarray:
    """`resamples` bootstrap means of a sample (the building block of two-sample
    intervals: resampling each group apart keeps the group sizes fixed)."""
    x = np.asarray(sample, dtype=float)
    n = x.size
    return np.concatenate([x[rng.integers(0, n, (rows, n))].mean(axis=1)
                           for rows in _chunks(resamples, n)])


def percentile_interval(draws: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def permutation_confidence(observed: float | np.ndarray, null: np.ndarray) -> np.ndarray:
    """1 - p for each observed statistic against R draws of the statistic under the
    null (larger = more extreme). The +1s count the observed arrangement itself, which
    keeps p strictly positive and the test exact."""
    null = np.sort(np.asarray(null, dtype=float))
    obs = np.atleast_1d(np.asarray(observed, dtype=float))
    at_least = null.size - np.searchsorted(null, obs, side="left")
    return 1.0 - (1.0 + at_least) / (1.0 + null.size)


def permutation_test(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, *,
                     resamples: int = RESAMPLES, minimum: int = MIN_SAMPLE,
                     ) -> Estimate | None:
    """Difference of means a - b with a bootstrap interval (each group resampled
    apart) and a two-sided permutation confidence (group labels shuffled)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size < minimum or b.size < minimum:
        return None
    pooled = np.concatenate([a, b])
    n, m = pooled.size, a.size
    observed = a.mean() - b.mean()
    null = []
    for rows in _chunks(resamples, n):
        keys = rng.random((rows, n))
        # The m smallest random keys of each row pick a random m-subset: a shuffle.
        pick = np.argpartition(keys, m - 1, axis=1)[:, :m]
        sa = pooled[pick].sum(axis=1)
        null.append(np.abs(sa / m - (pooled.sum() - sa) / (n - m)))
    diff = bootstrap_means(a, rng, resamples) - bootstrap_means(b, rng, resamples)
    lo, hi = percentile_interval(diff)
    conf = float(permutation_confidence(abs(observed), np.concatenate(null))[0])
    return Estimate(float(observed), lo, hi, int(n), conf)


def wilson(successes: int, n: int, level: float = LEVEL) -> Estimate | None:
    """A share with its Wilson score interval (good coverage even near 0 and 1)."""
    if n <= 0:
        return None
    z = _z(level)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact at the edges,
    high = 1.0 if successes == n else min(1.0, centre + half)  # not off by rounding
    return Estimate(p, low, high, n)


def quantile_interval(sample: np.ndarray, q: float, level: float = LEVEL,
                      minimum: int = 1) -> Estimate | None:
    """The q-quantile and a distribution-free interval: the number of observations
    below the true quantile is Binomial(n, q), so the ranks n*q -+ z*sd bracket it
    (normal approximation to that binomial)."""
    x = np.asarray(sample, dtype=float)
    n = x.size
    if n < max(1, minimum):
        return None
    z = _z(level)
    sd = math.sqrt(n * q * (1 - q))
    lo_rank = max(0, math.floor(n * q - z * sd) - 1)
    hi_rank = min(n - 1, math.ceil(n * q + z * sd))
    value = float(np.quantile(x, q))
    part = np.partition(x, sorted({lo_rank, hi_rank}))
    return Estimate(value, float(min(part[lo_rank], value)),
                    float(max(part[hi_rank], value)), n)


class Survival(msgspec.Struct, frozen=True):
    """A Kaplan-Meier curve: S(t) = survival[i] for times[i] <= t < times[i+1]
    (1.0 before the first event time)."""

    times: list[float]
    survival: list[float]
    n: int  # observations it rests on (events + censored)
    events: int


def kaplan_meier(durations: np.ndarray, observed: np.ndarray) -> Survival:
    """Product-limit estimate from durations, `observed` False for right-censored ones.
    At a tie, censored observations count as still at risk at the event time."""
    d = np.asarray(durations, dtype=float)
    e = np.asarray(observed, dtype=bool)
    if d.size == 0:
        return Survival([], [], 0, 0)
    times, inverse = np.unique(d, return_inverse=True)
    deaths = np.bincount(inverse, weights=e, minlength=times.size)
    leaving = np.bincount(inverse, minlength=times.size)
    at_risk = d.size - np.concatenate([[0], np.cumsum(leaving)[:-1]])
    keep = deaths > 0
    factor = 1.0 - deaths[keep] / at_risk[keep]
    return Survival(times[keep].tolist(), np.cumprod(factor).tolist(), int(d.size),
                    int(e.sum()))


def survival_at(curve: Survival, t: np.ndarray | float) -> np.ndarray:
    """S(t) for one or many t (vectorized step lookup)."""
    s = np.concatenate([[1.0], np.asarray(curve.survival, dtype=float)])
    idx = np.searchsorted(np.asarray(curve.times, dtype=float), np.atleast_1d(t),
                          side="right")
    return s[idx]


def wild_bootstrap(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, *,
                   resamples: int = RESAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """Least squares of y on the design x and `resamples` wild-bootstrap replicates
    of its coefficients: each item keeps its row and its fitted value, and its
    residual is flipped by a random sign (Rademacher), so heteroskedastic items -- a
    slow hour is also a noisy hour -- carry their own noise. Residuals are first
    inflated by 1/sqrt(1 - leverage) (HC2), which keeps small groups honest.
    The design is fixed, so every replicate is one product with a k-vector per item:
    O(resamples x n x k) in BLAS instead of a refit. Returns (coef (k,), draws (R, k))."""
    xtx = x.T @ x
    inv = np.linalg.pinv(xtx)
    coef = inv @ (x.T @ y)
    lever = np.einsum("ij,jk,ik->i", x, inv, x)
    resid = (y - x @ coef) / np.sqrt(np.clip(1.0 - lever, 1e-6, None))
    score = x * resid[:, None]
    draws = []
    for rows in _chunks(resamples, y.size):
        signs = rng.integers(0, 2, (rows, y.size), dtype=np.int8) * 2.0 - 1.0
        draws.append(coef + (signs @ score) @ inv.T)
    return coef, np.concatenate(draws)


class QuantileSketch:
    """Counts per log-spaced bucket (gamma = (1+a)/(1-a)): a value x > `floor` lands in
    bucket ceil(log_gamma x), and every value of bucket k is within relative error
    `ALPHA` of 2 gamma^k / (gamma + 1). Quantiles are of the "lower" kind (the value at
    rank floor(q (n-1)), as numpy's method="lower"). Memory: at most `MAX_BUCKETS`
    buckets -- past that the lowest ones merge, giving up accuracy at the fast end."""

    ALPHA = 0.01
    GAMMA = (1 + ALPHA) / (1 - ALPHA)
    LOG_GAMMA = math.log(GAMMA)
    FLOOR = 1e-3  # seconds; anything faster counts as zero
    MAX_BUCKETS = 2048
    __slots__ = ("buckets", "n", "zeros")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.zeros = 0
        self.n = 0

    ZERO = -(2**62)  # the bucket of values at or below FLOOR

    @classmethod
    def bucket(cls, x: float) -> int:
        return cls.ZERO if x <= cls.FLOOR else math.ceil(math.log(x) / cls.LOG_GAMMA)

    @classmethod
    def buckets_of(cls, x: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            k = np.ceil(np.log(x) / cls.LOG_GAMMA)
        return np.where(x > cls.FLOOR, k, cls.ZERO).astype(np.int64)

    def add(self, x: float) -> None:
        self.add_bucket(self.bucket(x))

    def add_bucket(self, k: int) -> None:
        self.n += 1
        if k == self.ZERO:
            self.zeros += 1
            return
        b = self.buckets
        b[k] = b.get(k, 0) + 1
        if len(b) > self.MAX_BUCKETS:  # merge the lowest eighth: amortized, not per add
            keys = sorted(b)
            cut = keys[self.MAX_BUCKETS // 8]
            b[cut] += sum(b.pop(k) for k in keys[:self.MAX_BUCKETS // 8])

    def quantile(self, q: float) -> float | None:
        if self.n == 0:
            return None
        rank = q * (self.n - 1)
        seen = self.zeros
        if seen > rank:
            return 0.0
        for k in sorted(self.buckets):
            seen += self.buckets[k]
            if seen > rank:
                return 2.0 * self.GAMMA ** k / (self.GAMMA + 1.0)
        return 2.0 * self.GAMMA ** max(self.buckets) / (self.GAMMA + 1.0)
