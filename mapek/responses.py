"""How long simulated people and customers take: the twin's response-time models.

Theory of operation
-------------------
A person's response to a work item is *working time*: a duration drawn from a
lognormal (median and sigma per role), spent only inside the person's working hours
in their own time zone, counted from the moment the item is put in front of them
(dispatch: enabled, or released from a dispatch hold). An approval of "2 working
hours" dispatched at 16:30 on a Friday in New York is therefore done Monday at 10:30.
The median is scaled by a multiplier for the local hour of dispatch (people answer
morning mail faster than end-of-day mail) and by a multiplier per person (some are
slower); both default to 1.

Customers are not on our calendar: an e-signature, a manual signature, an amendment
round or a payment takes calendar time, drawn from its own lognormal.

`people_from_observations` fits the per-role model from observed work (the monitor's
observations): for each role, the log of the working time each completed item took
from dispatch gives the median (exp of the mean) and sigma (the standard deviation);
per person, the ratio of their geometric mean to the role's. Only completed items
are used (open ones are right-censored and ignored), so with many slow items still
open the fit is optimistic -- the caller should say how many were left out.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Annotated
from zoneinfo import ZoneInfo

import msgspec

HOUR = 3600.0
DAY = 86400.0
Positive = Annotated[float, msgspec.Meta(gt=0)]
Sigma = Annotated[float, msgspec.Meta(ge=0, le=5)]
Share = Annotated[float, msgspec.Meta(ge=0, le=1)]


class WorkingHours(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    start: Annotated[float, msgspec.Meta(ge=0, lt=24)] = 9.0  # local hour, 8.5 = 08:30
    end: Annotated[float, msgspec.Meta(gt=0, le=24)] = 17.0
    weekdays: tuple[int, ...] = (0, 1, 2, 3, 4)  # Monday = 0

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError("working hours: end must be after start")
        if not self.weekdays or not all(0 <= d <= 6 for d in self.weekdays):
            raise ValueError("working hours: weekdays are 0 (Monday) .. 6, at least one")


class RoleModel(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Working time a role's people take on an item: lognormal(median, sigma)."""

    median_hours: Positive = 2.0
    sigma: Sigma = 0.8
    hours: WorkingHours | None = None  # default: the model's working_hours
    hour_multipliers: dict[int, Positive] = {}  # local hour of dispatch -> x median


class PeopleModel(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    working_hours: WorkingHours = WorkingHours()
    default: RoleModel = RoleModel()  # roles not listed
    roles: dict[str, RoleModel] = {}
    people: dict[str, Positive] = {}  # person -> x median (1: as the role)

    def role(self, role: str) -> RoleModel:
        return self.roles.get(role, self.default)

    def response(self, person: str, role: str, time_zone: str, dispatched: float,
                 rng: random.Random) -> float:
        """Seconds from dispatch until `person` (acting in `role`) has done the item."""
        m = self.role(role)
        hours = m.hours or self.working_hours
        tz = _zone(time_zone)
        mult = self.people.get(person, 1.0)
        if m.hour_multipliers:
            mult *= m.hour_multipliers.get(dt.datetime.fromtimestamp(dispatched, tz).hour, 1.0)
        work = rng.lognormvariate(math.log(m.median_hours * HOUR * mult), m.sigma)
        return after_working_time(dispatched, work, tz, hours) - dispatched


class Delay(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A calendar delay: lognormal with this median (hours) and sigma."""

    median_hours: Positive
    sigma: Sigma = 0.8
    # Local hour the request reached the customer -> x median (customers, too, answer
    # some hours faster: an e-signature request read before the end of their day).
    hour_multipliers: dict[int, Positive] = {}

    def sample(self, rng: random.Random, at: float | None = None,
               time_zone: str = "UTC") -> float:
        median = self.median_hours
        if self.hour_multipliers and at is not None:
            hour = dt.datetime.fromtimestamp(at, _zone(time_zone)).hour
            median *= self.hour_multipliers.get(hour, 1.0)
        return rng.lognormvariate(math.log(median * HOUR), self.sigma)


class CustomerModel(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    time_zone: str = "America/Los_Angeles"  # where customers read their mail
    # Standard contract, automated e-signature: sent 2pm-4pm the customer's time, signed
    # five times faster (the timing effect the MAPE-K loop is meant to find).
    e_signature: Delay = Delay(20.0, 1.0, {14: 0.2, 15: 0.2})
    signature: Delay = Delay(40.0, 0.8)  # custom / MSA: manual signature
    declines: Share = 0.03  # of signatures: the customer declines
    amendment: Delay = Delay(36.0, 0.7)  # a round of amendments (72 h timeout)
    prepay: Share = 0.15  # pay before any invoice is sent
    prepay_within: Delay = Delay(1.0, 0.5)  # how soon a prepaying customer pays
    payment: Delay = Delay(24.0 * 21, 0.5)  # invoice to payment (60 d: collections)


# ---------------------------------------------------------------- working time
@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _bounds(day: dt.date, hours: WorkingHours, tz: ZoneInfo) -> tuple[float, float]:
    midnight = dt.datetime(day.year, day.month, day.day, tzinfo=tz)
    # Wall-clock hours: on a DST day the span is still start..end local time.
    opens = (midnight + dt.timedelta(hours=hours.start)).timestamp()
    closes = (midnight + dt.timedelta(hours=hours.end)).timestamp()
    return opens, closes


def after_working_time(t: float, work: float, tz: ZoneInfo, hours: WorkingHours) -> float:
    """The moment `work` seconds of working time have passed from `t`."""
    day = dt.datetime.fromtimestamp(t, tz).date()
    for _ in range(3660):  # ten years of days: a bound, never reached
        if day.weekday() in hours.weekdays:
            opens, closes = _bounds(day, hours, tz)
            lo = max(t, opens)
            if lo < closes:
                if lo + work <= closes:
                    return lo + work
                work -= closes - lo
        day += dt.timedelta(days=1)
    raise ValueError("working time does not fit in ten years")


def working_time_between(a: float, b: float, tz: ZoneInfo, hours: WorkingHours) -> float:
    """Working seconds in [a, b] (the inverse of `after_working_time`)."""
    if b <= a:
        return 0.0
    total, day = 0.0, dt.datetime.fromtimestamp(a, tz).date()
    last = dt.datetime.fromtimestamp(b, tz).date()
    while day <= last:
        if day.weekday() in hours.weekdays:
            opens, closes = _bounds(day, hours, tz)
            total += max(0.0, min(b, closes) - max(a, opens))
        day += dt.timedelta(days=1)
    return total


# ------------------------------------------------------------------- fitting
OFFICE_HOURS = WorkingHours()


class Observed(msgspec.Struct, frozen=True):
    """One completed human work item: who did it in which role, dispatched when,
    done when (mapek.monitor.Observation has all of these)."""

    person: str
    role: str
    dispatched_at: float
    closed_at: float


def people_from_observations(observations: Iterable[Observed],
                             time_zones: Mapping[str, str], *,
                             hours: WorkingHours = OFFICE_HOURS,
                             min_items: int = 5) -> PeopleModel:
    """Fit a PeopleModel to completed work: per role with at least `min_items` items a
    lognormal of the working time from dispatch to completion; per person with at
    least `min_items` items a multiplier (their geometric mean over the role's).
    Items done in no working time at all (outside working hours) count as one minute.
    """
    logs: dict[str, list[tuple[str, float]]] = {}
    for o in observations:
        tz = _zone(time_zones.get(o.person, "UTC"))
        work = max(60.0, working_time_between(o.dispatched_at, o.closed_at, tz, hours))
        logs.setdefault(o.role, []).append((o.person, math.log(work / HOUR)))
    roles: dict[str, RoleModel] = {}
    people: dict[str, float] = {}
    for role in sorted(logs):
        values = [v for _, v in logs[role]]
        if len(values) < min_items:
            continue
        mu = sum(values) / len(values)
        sd = math.sqrt(sum((v - mu) ** 2 for v in values) / (len(values) - 1))
        roles[role] = RoleModel(median_hours=math.exp(mu), sigma=min(5.0, sd))
        per: dict[str, list[float]] = {}
        for p, v in logs[role]:
            per.setdefault(p, []).append(v)
        for p in sorted(per):
            if len(per[p]) >= min_items:
                people[p] = math.exp(sum(per[p]) / len(per[p]) - mu)
    return PeopleModel(working_hours=hours, roles=roles, people=people)
