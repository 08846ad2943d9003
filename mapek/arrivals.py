"""Arrival patterns for the twin: when new cases come in (seed 001's four traffic shapes).

Theory of operation
-------------------
A pattern is an intensity over time: a relative rate for every hour of the simulated
period, evaluated at the hour's midpoint in the business's time zone. `arrivals`
puts exactly `n` arrivals into the period by sampling hours in proportion to their
intensity (inverse CDF over the hourly weights) and a uniform moment inside each
chosen hour; the result is sorted. The intensity fixes the *shape*, `n` the volume,
so two patterns with the same `n` compare like for like.

The shapes (`business` below is the base weighting: weekdays 08:00-18:00 local 1.0,
weekday evenings and nights 0.15, weekends 0.08 -- people send leads and deals in
office hours):

* ``base``     -- business only: steady over the period.
* ``seasonal`` -- business x a daily cycle (a late-morning peak, 1 + 0.5 sin over the
  working day) x a weekly cycle (Monday 1.25 falling to Friday 0.8) x a month-end
  push (x2 in the last four days of a calendar month: deals close at month end).
* ``burst``    -- business plus a few short spikes: one per 10 days (at least one),
  each 4-12 hours long at a random moment, at 10x the weekday rate (a campaign, a
  launch). The spikes' places come from the same `rng`.
* ``decline``  -- business x exp(-ln(5) t/T): the rate falls to a fifth by the end
  of the period (a market cooling down, a churning segment).

Everything random comes from the `rng` passed in, so the same seed gives the same
arrivals.
"""

from __future__ import annotations

import bisect
import calendar
import datetime as dt
import math
import random
from collections.abc import Callable
from zoneinfo import ZoneInfo

HOUR = 3600.0
PATTERNS = ("base", "seasonal", "burst", "decline")

_WEEKLY = (1.25, 1.15, 1.05, 0.95, 0.8, 1.0, 1.0)  # Mon..Sun, on top of business()
_SPIKE = 10.0  # a burst's rate, relative to the weekday business rate


def business(local: dt.datetime) -> float:
    """The base weighting: office hours on weekdays, a trickle otherwise."""
    if local.weekday() >= 5:
        return 0.08
    return 1.0 if 8 <= local.hour < 18 else 0.15


def _daily(local: dt.datetime) -> float:
    h = local.hour + 0.5
    if not 8 <= h < 18:
        return 1.0
    return 1.0 + 0.5 * math.sin(math.pi * (h - 8) / 10)  # peaks around 13:00


def _month_end(local: dt.datetime) -> float:
    last = calendar.monthrange(local.year, local.month)[1]
    return 2.0 if last - local.day < 4 else 1.0


def intensity(pattern: str, days: float, start: float, rng: random.Random,
              time_zone: str = "UTC") -> list[float]:
    """The pattern's relative rate for each hour of the period (list index = hour)."""
    if pattern not in PATTERNS:
        raise ValueError(f"unknown arrival pattern {pattern!r} (one of {', '.join(PATTERNS)})")
    tz = ZoneInfo(time_zone)
    hours = max(1, math.ceil(days * 24))
    shape: Callable[[dt.datetime, float], float]
    if pattern == "seasonal":
        def shape(local: dt.datetime, frac: float) -> float:
            return (business(local) * _daily(local) * _WEEKLY[local.weekday()]
                    * _month_end(local))
    elif pattern == "decline":
        def shape(local: dt.datetime, frac: float) -> float:
            return business(local) * math.exp(-math.log(5.0) * frac)
    else:
        def shape(local: dt.datetime, frac: float) -> float:
            return business(local)
    weights = []
    for h in range(hours):
        mid = start + (h + 0.5) * HOUR
        local = dt.datetime.fromtimestamp(mid, tz)
        weights.append(shape(local, (h + 0.5) / hours))
    if pattern == "burst":
        for _ in range(max(1, round(days / 10))):
            length = rng.randint(4, 12)
            first = rng.randrange(0, max(1, hours - length))
            for h in range(first, min(hours, first + length)):
                weights[h] = max(weights[h], _SPIKE)
    return weights


def arrivals(pattern: str, n: int, days: float, start: float, rng: random.Random, *,
             time_zone: str = "UTC") -> list[float]:
    """Exactly `n` arrival times (epoch seconds, sorted) in [start, start + days),
    distributed by the pattern's intensity."""
    if n < 0 or days <= 0:
        raise ValueError("need n >= 0 arrivals over days > 0")
    weights = intensity(pattern, days, start, rng, time_zone)
    cum, total = [], 0.0
    for w in weights:
        total += w
        cum.append(total)
    end = start + days * 86400.0
    out = []
    for _ in range(n):
        h = min(bisect.bisect_right(cum, rng.random() * total), len(cum) - 1)
        out.append(min(start + (h + rng.random()) * HOUR, math.nextafter(end, start)))
    out.sort()
    return out
