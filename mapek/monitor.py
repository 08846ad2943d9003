"""Monitor: the event log, followed off the hot path, turned into observations of work.

Theory of operation
-------------------
The store numbers every append (`pos`); the monitor reads the appends after the last
position it saw and folds their events into one `Observation` per work item: when it
was enabled, started and closed, by whom, with what result, in which workflow, and a
few attributes of its case (ACV, contract type, discount). Items still open are kept
as right-censored observations (closed_at None), never dropped: a slow approval that
has not finished yet is exactly the one that matters. SLA breaches and their
resolutions are observations too.

Nothing here runs on the command path: the fold runs on demand (`catch_up()` before
answering a question; the server also calls it every second), so a burst of
completions costs the monitor nothing until then but what the store keeps for it (two
containers a round). A restart rebuilds everything from the log.

Where the appends come from. A store that can hand its appends on as they commit
(`follow()`: the SQLite store) gives the monitor the engine's own event objects with
their positions, in a bounded queue; they are folded as they are, with nothing read
back or decoded -- on bench/durable.py reading and decoding cost more than the fold
itself. That queue is a hint, not the truth: wherever its positions do not continue
the monitor's (it overflowed, a round was written piecewise, another process wrote),
and after draining it, the monitor reads the log. What is read is decoded slim
(`mapek.sightings`): only the fields the fold keeps, the rest of each event skipped
unbuilt. A store that can hand its appends over still encoded (`read_encoded`: the
SQLite store) passes them a few hundred at a time, as one value SQLite builds off the
event loop's thread; a log that holds decoded events (the in-memory one) passes the
engine's events, folded as handed-on ones are. Both kinds of event carry the fields
the fold reads under the same names; only a data map differs (a dict from the engine,
a `Kept` read slim), and only the attributes kept of it are remembered.

Each observation knows the role its task is offered to (`role_of`) and when a
dispatch policy released it (`WorkItemHeld`: `dispatched_at` is then the release, not
the enabling). Closed items are also counted into streaming aggregates keyed per
(workflow, task), per (workflow, task, resource) and per (workflow, task, local
dispatch hour) -- the hour on the clock of the person who did the work
(`time_zone_of`), since "Monday 9:00" means their morning, not the server's. Each
aggregate holds counts and two `QuantileSketch`es (response: dispatched -> closed;
cycle: enabled -> closed): log-spaced buckets, so any quantile is within 1 % relative
error and memory stays bounded however many items pass, unlike a list of durations.
In the same spirit as reading on demand, the items closed since the last question
are folded in (vectorized) when an aggregate is asked for, not one by one as their
events are read: tailing the log stays as cheap as the fold of the events itself.

Where the fold runs. In a server the event loop's process is the busy one: the commands
and the store's rounds are all its work. Folding there, a Monitor caught up every second
cost bench/durable.py 11 % of its completions at 1,000 concurrent cases (80 pairs;
bench/README, "The fold in a process of its own"): 5.5-7 us more of that process's CPU
per completion, in the fold, the decoding and the collections they bring. So a server's
Monitor is a mirror: another process tails the log and folds it (`Tail`:
adapters.monitor_tail: `_fold` and `hand_over`'s rules kept in C over the log's bytes,
mapek/_tailfold.c, or where that is not built a Monitor made with `hands_over=True`),
and `catch_up` takes from it what changed since the last time (`Changes`: the items
closed, the open ones touched, breaches and their resolutions, empty tasks fired,
attributes), each piece once, and merges it (the process's CPU per completion barely
grows; with the fold in C, 1.7 % fewer completions with the tail's catch-up after the
peak counted, none measurable while serving: bench/README, "The tail's fold in C").
The tail forgets what it handed over but what later events need (open items, open
breaches, the cases' workflows). The mirror then
holds what a Monitor folding here would hold, in the same order. A tail lost is
replaced by another (at most once in ten minutes: adapters.monitor_tail), whose first
answer is `fresh`: the mirror takes the new tail's fold of all of it in place of what
came from the log -- staged until its last part is in, then swapped in at once, so
that nobody reads a part of it. Lost again sooner, the mirror forgets it too, and folds
the log here from the start, as a Monitor without a tail does -- and asks the tail
again ten minutes on (twice as long after each loss, a day at most: ASK_LOST_AFTER).
Another process started then, its fold replaces what was folded here, as after the
first loss.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

import anyio
import msgspec
import numpy as np
from msgspec import UNSET
from msgspec.structs import astuple

from engine.events import (
    CaseCreated,
    CaseHandedOn,
    SlaBreached,
    SlaResolved,
    TaskFired,
    WorkItemCancelled,
    WorkItemCompleted,
    WorkItemEnabled,
    WorkItemHeld,
    WorkItemStarted,
)
from mapek.sightings import (
    ATTRIBUTES,
    NOTHING_KEPT,
    Breached,
    Cancelled,
    Completed,
    Created,
    Enabled,
    Fired,
    HandedOn,
    Held,
    Kept,
    Resolved,
    Started,
    decode_appends,
)
from mapek.stats import QuantileSketch

RoleOf = Callable[[str, str], "str | None"]  # (workflow_id, task) -> role
TimeZoneOf = Callable[["str | None"], str]  # person (None: nobody) -> IANA zone name


class EventLog(Protocol):
    async def read_events(self, after_pos: int = 0, limit: int = 10_000,
                          ) -> list[tuple[int, str, int, list[Any]]]: ...


class EncodedLog(EventLog, Protocol):
    """A log that can also hand over its appends undecoded: (positions, case_ids,
    events), one entry per append, `events` one msgpack array of each append's event
    array as engine.events encodes it. The monitor then decodes only the fields it
    folds (mapek.sightings)."""

    async def read_encoded(self, after_pos: int = 0, limit: int = 10_000,
                           ) -> tuple[list[int], list[str], bytes]: ...


class Following(Protocol):
    """Rounds of appends handed on as they commit, in commit order: (the log position
    of the round's first append, (its appends' case ids, their events)); bounded,
    the oldest rounds dropped."""

    def __bool__(self) -> bool: ...
    def peek(self) -> tuple[int, tuple[Sequence[str], Sequence[Sequence[Any]]]]: ...
    def pop(self) -> tuple[int, tuple[Sequence[str], Sequence[Sequence[Any]]]]: ...


class FollowedLog(EventLog, Protocol):
    """A log that also hands its appends on as they commit, for as long as the
    follower holds what `follow()` returned."""

    def follow(self, limit: int) -> Following: ...


class TailLost(RuntimeError):
    """The process folding the log for this Monitor is gone (or stopped answering)."""


class TailRefused(TailLost):
    """A lost tail asked again starts no other process (not yet: too soon after the
    last; or it is closed) -- not a loss of its own."""


class Tail(Protocol):
    """Another process folding the log (see the module's docstring): `changes()` folds
    every append committed before the call, then answers what changed since the last
    call -- in parts while `more` -- or raises TailLost. `changes(more=True)` asks for
    the next part of an answer under way (a catch-up whose asking was cancelled between
    parts asks anew: its next catch-up must see what was committed meanwhile). A tail
    that raised TailLost may answer a later `changes()` again, with its fold of the
    whole log from the start (`fresh`), or refuse (TailRefused) without trying."""

    async def changes(self, more: bool = False) -> Changes: ...


# The types the fold tells apart, in the order `_fold` unpacks them: read slim from a
# log, or the engine's own (handed on live by the store).
_READ_KINDS = (Completed, Enabled, Created, HandedOn, Fired, Started, Held, Cancelled,
               Breached, Resolved)
_LIVE_KINDS = (WorkItemCompleted, WorkItemEnabled, CaseCreated, CaseHandedOn, TaskFired,
               WorkItemStarted, WorkItemHeld, WorkItemCancelled, SlaBreached, SlaResolved)
_KEPT = frozenset(ATTRIBUTES)
# The fold gives the GIL away every this many appends (see _fold).
YIELD_EVERY = 32
# A catch-up lets the event loop run after folding about this many appends handed on
# (see catch_up).
LOOP_TURN_EVERY = 256
_UNASKED = object()
# A lost tail is asked again this long after (seconds; adapters.monitor_tail starts
# another process once in ten minutes at most) -- twice as long after each loss since
# (one that came back and then folded for over a day starts the count again), a day at
# most: a tail that keeps dying (on an event it cannot fold, say) costs this process a
# fold of the whole log each time. A tail that refuses (TailRefused: not yet) is asked
# again as long after.
ASK_LOST_AFTER = 600.0
ASK_LOST_MOST = 86_400.0
# Releases the GIL and lets the OS run a thread that waits for it (os.sched_yield);
# where there is none, time.sleep(0) releases it too.
_give_way: Callable[[], object] = getattr(os, "sched_yield", None) or (lambda: time.sleep(0))


class Observation(msgspec.Struct, array_like=True, gc=False):
    case_id: str
    workflow_id: str
    task: str
    item: int
    enabled_at: float
    started_at: float | None = None
    closed_at: float | None = None  # None: still open (right-censored)
    outcome: str | None = None  # completed | cancelled
    by: str | None = None
    result: str | None = None
    role: str | None = None  # the role the task is offered to (None: automatic/unknown)
    held_until: float | None = None  # dispatch held by a policy until then (WorkItemHeld)
    source: str = "log"  # "log": this engine's events; "import": history from a CSV

    @property
    def dispatched_at(self) -> float:
        """When the work was put in front of someone: enabled, or released from a hold."""
        h = self.held_until
        return self.enabled_at if h is None or h < self.enabled_at else h

    def hours(self, now: float) -> float:
        """Time from enabled to closed (or to `now` for an open item), in hours."""
        return ((self.closed_at if self.closed_at is not None else now)
                - self.enabled_at) / 3600.0


class Breach(msgspec.Struct, gc=False):
    case_id: str
    workflow_id: str
    item: int  # 0: the stay in the workflow
    task: str
    at: float
    target: float
    alert: float
    resolved_at: float | None = None


class Changes(msgspec.Struct, array_like=True, gc=False):
    """What a tail folded since it last handed over, as it goes from its process to the
    mirror's, in parts: items closed come `limit` at a time, the rest with the last
    part. `more`: ask again (parts are left, or the tail has more of the log to fold).
    `pos`: everything up to there is in the parts handed over so far."""

    pos: int
    closed: list[Observation]
    more: bool = False
    opened: list[Observation] = []  # open items enabled, started or held since
    breaches: list[Breach] = []
    # (case, item, when the breach was, resolved at) for breaches handed over before
    resolved: list[tuple[str, int, float, float]] = []
    fired: list[tuple[str, str, int]] = []  # (workflow, task, how many more)
    attributes: dict[str, dict[str, Any]] = {}  # per case, the attributes kept since
    appends: int = 0  # appends folded into this (the last part counts them)
    # The first part a tail hands over: it folded the log from the start (a tail that
    # replaces a lost one, too), and what the mirror had from the log is to be replaced
    # by this fold, once its last part is in.
    fresh: bool = False


# ------------------------------------------------------------------ local clocks
_QUARTER = 900.0  # every UTC offset and DST switch in use falls on a quarter hour
_offsets: dict[tuple[str, int], float] = {}
_zones: dict[str, ZoneInfo] = {}


def utc_offset(zone: str, at: float) -> float:
    """Seconds east of UTC in `zone` at epoch time `at`, cached per quarter hour:
    a zoneinfo lookup costs microseconds, a cached one a dictionary probe."""
    key = (zone, int(at // _QUARTER))
    off = _offsets.get(key)
    if off is None:
        tz = _zones.get(zone) or _zones.setdefault(zone, ZoneInfo(zone))
        delta = datetime.fromtimestamp(key[1] * _QUARTER, tz).utcoffset()
        off = delta.total_seconds() if delta is not None else 0.0
        if len(_offsets) > 100_000:  # a cache, not a history
            _offsets.clear()
        _offsets[key] = off
    return off


def local_hour(zone: str, at: float) -> tuple[int, int]:
    """(hour 0-23, weekday 0=Monday) of epoch time `at` on the clock of `zone`."""
    local = at + utc_offset(zone, at)
    return int(local // 3600.0) % 24, (int(local // 86400.0) + 3) % 7  # 1970-01-01: Thu


def local_clocks(at: np.ndarray, zone: np.ndarray, zones: Sequence[str],
                 ) -> tuple[np.ndarray, np.ndarray]:
    """`local_hour` for many times at once: `zone[i]` indexes `zones`. An offset is
    looked up once per UTC day and zone, and per quarter hour only on the days whose
    offset changes (a DST switch), so 100 000 items cost a few hundred lookups."""
    at = np.asarray(at, dtype=float)
    offset = np.zeros(at.size)
    quarter = np.floor(at / _QUARTER).astype(np.int64)
    for z, name in enumerate(zones):
        mask = zone == z
        if not mask.any():
            continue
        quarters, inverse = np.unique(quarter[mask], return_inverse=True)
        days = quarters // 96
        uniq_days = np.unique(days)
        start = np.array([utc_offset(name, d * 86400.0) for d in uniq_days.tolist()])
        end = np.array([utc_offset(name, (d + 1) * 86400.0) for d in uniq_days.tolist()])
        per_quarter = start[np.searchsorted(uniq_days, days)]
        for d in uniq_days[start != end].tolist():  # a switch that day: look closer
            for i in np.flatnonzero(days == d).tolist():
                per_quarter[i] = utc_offset(name, float(quarters[i]) * _QUARTER)
        offset[mask] = per_quarter[inverse]
    local = at + offset
    return ((np.floor(local / 3600.0) % 24).astype(np.int8),
            ((np.floor(local / 86400.0) + 3) % 7).astype(np.int8))


# ------------------------------------------------------------------ aggregates
class Tally:
    """Counts and sketches of the items one aggregate key has seen close."""

    __slots__ = ("cancelled", "completed", "cycle", "response")

    def __init__(self) -> None:
        self.completed = 0
        self.cancelled = 0
        self.response = QuantileSketch()  # dispatched -> closed, seconds
        self.cycle = QuantileSketch()  # enabled -> closed, seconds


class Percentiles(msgspec.Struct, frozen=True):
    completed: int
    cancelled: int
    p50_hours: float | None
    p90_hours: float | None
    p95_hours: float | None


class Monitor:
    def __init__(self, log: EventLog, batch: int = 256, *,
                 role_of: RoleOf | None = None,
                 time_zone_of: TimeZoneOf | None = None, live_limit: int = 20_000,
                 tail: Tail | None = None, hands_over: bool = False) -> None:
        self.log = log
        self.role_of = role_of
        self.time_zone_of: TimeZoneOf = time_zone_of or (lambda _person: "UTC")
        # ("task", wf, task) | ("resource", wf, task, person) | ("hour", wf, task, h)
        self.tallies: dict[tuple[Any, ...], Tally] = {}
        self._folded = 0  # self.closed[:_folded] are counted in the tallies
        # Appends per read. A read's appends are decoded together, a list each: a few
        # hundred stay under the garbage collector's threshold, where thousands set it
        # off mid-fold to scan the runtime's young objects too (callgrind over
        # bench/durable.py at 1000 concurrent cases: the monitor's instructions 4-5 %
        # fewer than with reads of 10 000).
        self.batch = batch
        self.pos = 0
        self.closed: list[Observation] = []
        self.open: dict[tuple[str, int], Observation] = {}
        self.breaches: list[Breach] = []
        self._open_breach: dict[tuple[str, int], Breach] = {}
        self.fired: Counter[tuple[str, str]] = Counter()  # (workflow, task) empty tasks
        self.attributes: dict[str, dict[str, Any]] = {}
        self._workflow: dict[str, str] = {}
        self._lock = anyio.Lock()
        self._absorbed = 0
        self.revision = 0  # absorbs and forgets of imported history (see stamp())
        # forget_imported calls and logs folded again (a lost tail): positions in
        # `closed` moved, `breaches` are new records
        self.forgotten = 0
        # Appends folded as handed on by the store, and as read back from the log.
        self.appends_handed_on = 0
        self.appends_read = 0
        self.appends_tailed = 0  # ... and as folded by the tail (a mirror's)
        self._handed_at = 0  # (a tail's) pos at the last hand_over
        # (a mirror's) a part of an answer taken since the log was last forgotten --
        # `pos` alone does not say: a first answer's parts but the last leave it at 0
        self._taken = False
        # (a mirror's) a new tail's fold of the whole log, taken in parts, until its last
        # (see _take_from)
        self._staged: Monitor | None = None
        self._fresh = True  # (a tail's) nothing handed over yet
        # At most `live_limit` appends wait to be folded (the store drops older ones,
        # which are then read back): about two seconds of a busy server's commits.
        self._live_limit = live_limit
        self._live: Following | None = None
        # A mirror of a tail follows nothing itself (unless the tail is lost: then it is
        # asked again, see ASK_LOST_AFTER, until it answers).
        self._tail = tail
        self._lost_tail: Tail | None = None
        self._losses = 0  # of the tail, with this process folding after each
        self._ask_at = 0.0  # when the lost tail is asked again
        self._back_at: float | None = None  # when it came back, if it has since its loss
        if tail is None:
            self._follow()
        # The tail's side (hands_over): the open items enabled, started or held since
        # the last hand-over, in the order first touched (the mirror's `open` keeps the
        # order of enabling, as here; an item closed leaves it, so that one enabled again
        # comes after those enabled meanwhile), and the breaches resolved.
        self._touched: dict[tuple[str, int], None] | None = {} if hands_over else None
        self._resolutions: list[Breach] | None = (
            [] if hands_over else None)

    @property
    def mirrors(self) -> bool:
        """Whether a tail process folds the log for this Monitor (not lost)."""
        return self._tail is not None

    def _follow(self) -> None:
        follow = getattr(self.log, "follow", None)
        self._live = follow(self._live_limit) if follow is not None else None

    async def catch_up(self) -> None:
        """Fold every append committed since the last call (and those committed while
        it folds, the event loop running between rounds: see below)."""
        async with self._lock:
            tail, first = self._tail, None
            if tail is None and self._lost_tail is not None:
                first = await self._ask_again(self._lost_tail)
                tail = self._tail
            if tail is not None:
                try:
                    return await self._take_from(tail, first)
                except TailLost as exc:
                    self._tail, self._lost_tail = None, tail
                    self._lost(f"{exc}; folding the log in this process from the start")
                    self._forget_the_log()
            live = self._live
            while True:
                if live:
                    # A second of a busy server's rounds is tens of thousands of appends,
                    # 50-100 ms of folding. Folded in one go, that is as long a pause for
                    # every command, and (writer process) for the writer, which gets no
                    # new round meanwhile. A round or a few at a time, the loop between.
                    self._fold_live(live, LOOP_TURN_EVERY)
                    if live and live.peek()[0] <= self.pos + 1:  # more that continue
                        await anyio.lowlevel.checkpoint()
                        continue
                    if live:  # a gap before what was handed on: the log has it
                        gap = live.peek()[0] - self.pos - 1
                        if not await self._read_log(min(gap, self.batch)):
                            self._fold_live(live, across_gap=True)  # it does not
                        continue
                # What nobody handed on (another process's appends, a round written
                # piecewise) is in the log; one read, usually empty, finds it.
                if await self._read_log(self.batch) < self.batch:
                    return

    async def _ask_again(self, tail: Tail) -> Changes | None:
        """Ask a lost tail again, when due (see ASK_LOST_AFTER): one that answers has
        started another process, whose first answer is its fold of the log from the
        start. It then folds for this Monitor again: the store hands nothing on any
        more, and what was folded here from the log is replaced by that fold once all
        of it is in (imports kept; _take_from). -> that first answer (None: lost
        still)."""
        if anyio.current_time() < self._ask_at:
            return None
        try:
            first = await tail.changes()
        except TailRefused:
            self._ask_at = anyio.current_time() + ASK_LOST_AFTER
            return None
        except TailLost as exc:  # the process it started is lost too
            self._lost(f"{exc}; folding the log in this process still")
            return None
        if not first.fresh:  # not the whole log: what is folded here stays
            self._lost("the tail process answers again, but not from the start; folding "
                       "the log in this process still")
            return None
        print("monitor: the tail process answers again; it folds the log from now on, "
              "not this process", file=sys.stderr, flush=True)
        self._live = None  # (what was folded here stays until the new fold replaces it)
        self._tail, self._lost_tail = tail, None
        self._back_at = anyio.current_time()
        return first

    def _lost(self, why: str) -> None:
        """Say why the tail is lost (stderr), count the loss and say when to ask it
        again (see ASK_LOST_AFTER: twice as long as after the last loss, unless it then
        folded for a day)."""
        print(f"monitor: {why}", file=sys.stderr, flush=True)
        now = anyio.current_time()
        if self._back_at is not None and now - self._back_at > ASK_LOST_MOST:
            self._losses = 0
        self._back_at = None
        self._losses += 1
        self._ask_at = now + min(ASK_LOST_AFTER * 2.0 ** min(self._losses - 1, 20),
                                 ASK_LOST_MOST)

    async def _take_from(self, tail: Tail, changes: Changes | None = None) -> None:
        """Merge what `tail` answers, part after part (`changes`: its first part, asked
        already). A new tail's fold of the whole log (`fresh`), where this Monitor holds
        a fold of it already (a lost tail's, or its own), replaces that one whole: its
        parts are merged into a staging Monitor, swapped in after the last part. Readers
        between the parts -- who need not catch up: MapeK's background analysis, a page
        awaiting the store after its catch-up -- see the old fold, never a part of the
        new one (and a catch-up cancelled between the parts goes on staging next time).
        Until the swap both folds are held: twice the observations' memory, for as long
        as the new fold takes (seconds for a long log; across a cancelled catch-up, until
        the next) -- after a tail's loss only."""
        if changes is None:
            changes = await tail.changes()
        while True:
            if changes.fresh and (self._taken or self.pos):
                self._staged = Monitor(self.log, self.batch, role_of=self.role_of,
                                       time_zone_of=self.time_zone_of, tail=tail)
            into = self._staged or self
            into._merge(changes)
            self._taken = True
            if not changes.more:
                if self._staged is not None:
                    self._swap_in(self._staged)
                return
            await anyio.lowlevel.checkpoint()  # (a few ms a part: commands between)
            changes = await tail.changes(more=True)

    def _swap_in(self, fold: Monitor) -> None:
        """Replace what came from the log with `fold`, a staging Monitor's merge of a new
        tail's answer: as forgetting the log and merging it here would leave it --
        imported history kept, in front; attributes kept, updated -- at once."""
        self._staged = None
        self._drop(lambda o: o.source != "import")
        self.closed.extend(fold.closed)
        self.open.update(fold.open)
        self.breaches, self._open_breach, self.fired = (
            fold.breaches, fold._open_breach, fold.fired)
        for case_id, kept in fold.attributes.items():
            self.attributes.setdefault(case_id, {}).update(kept)
        self._workflow.clear()
        self.pos = fold.pos
        self.appends_tailed += fold.appends_tailed

    def _merge(self, ch: Changes) -> None:
        """Take a tail's changes in: what its fold did there, done here."""
        open_, role_of = self.open, self.role_of
        # This process knows the workflows' roles, the tail not: an item already here
        # keeps the role it was given when it came (enabled: the version deployed
        # then, as folding here), a new one -- or one enabled again -- is given its
        # task's role now.
        roles: dict[tuple[str, str], str | None] = {}
        for pool in (ch.closed, ch.opened):
            closing = pool is ch.closed
            for o in pool:
                key = (o.case_id, o.item)
                had = open_.pop(key, None) if closing else open_.get(key)
                if had is not None and (had.enabled_at, had.task, had.workflow_id) == (
                        o.enabled_at, o.task, o.workflow_id):
                    o.role = had.role
                elif role_of is not None:
                    task = (o.workflow_id, o.task)
                    role = roles.get(task, _UNASKED)
                    if role is _UNASKED:
                        role = roles[task] = role_of(*task)
                    o.role = role  # type: ignore[assignment]
                if not closing:
                    open_[key] = o
        self.closed.extend(ch.closed)
        open_breach = self._open_breach
        for case_id, item, at, resolved_at in ch.resolved:
            b = open_breach.get((case_id, item))
            if b is not None and b.at == at:  # (not a later breach of the same item)
                b.resolved_at = resolved_at
                del open_breach[(case_id, item)]
        for b in ch.breaches:
            self.breaches.append(b)
            if b.resolved_at is None:
                open_breach[(b.case_id, b.item)] = b
            else:
                open_breach.pop((b.case_id, b.item), None)
        for workflow_id, task, n in ch.fired:
            self.fired[(workflow_id, task)] += n
        for case_id, kept in ch.attributes.items():
            mine = self.attributes.get(case_id)
            if mine is None:
                self.attributes[case_id] = kept
            else:
                mine.update(kept)
        self.appends_tailed += ch.appends
        self.pos = ch.pos

    def hand_over(self, limit: int) -> Changes:
        """The tail's side (a Monitor made with `hands_over=True`): what changed since
        the last call, forgotten here once handed over, but for the open items, the
        breaches still open and the cases' workflows, which later events need."""
        assert self._touched is not None and self._resolutions is not None
        first, self._fresh = self._fresh, False
        closed = self.closed
        if len(closed) > limit:
            part = closed[:limit]
            del closed[:limit]
            return Changes(self._handed_at, part, more=True, fresh=first)
        open_ = self.open
        opened = [o for key in self._touched if (o := open_.get(key)) is not None]
        # Only the resolutions of breaches handed over before: one raised since goes
        # with its resolved_at (and the mirror's breach of the same item, raised before
        # it, is not the one resolved -- even at the same time).
        raised = {id(b) for b in self.breaches}
        resolved = [(b.case_id, b.item, b.at, b.resolved_at) for b in self._resolutions
                    if id(b) not in raised and b.resolved_at is not None]
        changes = Changes(self.pos, closed, False, opened, self.breaches, resolved,
                          [(wf, task, n) for (wf, task), n in self.fired.items()],
                          self.attributes, self.pos - self._handed_at, first)
        self.closed, self.breaches, self._resolutions = [], [], []
        self.fired, self.attributes = Counter(), {}
        self._touched.clear()
        self._handed_at = self.pos
        return changes

    def _forget_the_log(self) -> None:
        """Drop what came from the log (keeping imported history), to fold it again from
        the start here, following the store from now on (a tail lost; a new tail's fold
        replaces the old one whole instead: _swap_in)."""
        self._drop(lambda o: o.source != "import")
        self._staged = None  # (a new tail's fold under way is the log's too)
        self.breaches.clear()
        self._open_breach.clear()
        self.fired.clear()
        self._workflow.clear()
        self.pos = 0
        self._taken = False
        self._follow()

    async def _read_log(self, limit: int) -> int:
        """Fold the next `limit` appends read from the log. -> how many there were."""
        read_encoded = getattr(self.log, "read_encoded", None)
        if read_encoded is not None:
            return self.fold_encoded(*await read_encoded(self.pos, limit))
        rows = await self.log.read_events(self.pos, limit)  # the engine's own events
        self._fold(((p, c, evs) for p, c, _first, evs in rows), _LIVE_KINDS)
        self.appends_read += len(rows)
        return len(rows)

    def fold_encoded(self, positions: list[int], case_ids: list[str], events: bytes) -> int:
        """Fold appends as `EncodedLog.read_encoded` gives them. -> how many."""
        self._fold(zip(positions, case_ids, decode_appends(events), strict=True))
        self.appends_read += len(positions)
        return len(positions)

    def _fold_live(self, live: Following, enough: int | None = None, *,
                   across_gap: bool = False) -> None:
        """Fold the rounds handed on that continue the log from `pos` (the first may
        jump a gap `across_gap`), whole rounds until `enough` appends (None: all); what
        was already read from the log is skipped."""
        folded = 0
        while live and (enough is None or folded < enough):
            first, (case_ids, events) = live.peek()
            skip = self.pos + 1 - first
            if skip < 0:  # a gap: the log has what is missing
                if not across_gap:
                    return
                skip = 0
            live.pop()
            across_gap = False
            if skip < len(case_ids):
                self.appends_handed_on += len(case_ids) - skip
                folded += len(case_ids) - skip
                self._fold(zip(range(first + skip, first + len(case_ids)),
                               case_ids[skip:], events[skip:], strict=True), _LIVE_KINDS)

    def observe(self, case_id: str, events: Iterable[Any]) -> None:
        """Fold one case's events (the engine's own types) into the observations; the
        position in the log stays where it is."""
        self._fold(((self.pos, case_id, list(events)),), _LIVE_KINDS)

    def _fold(self, appends: Iterable[tuple[int, str, Sequence[Any]]],
              kinds: tuple[type, ...] = _READ_KINDS) -> None:
        # The rules here and in hand_over are also mapek/_tailfold.c's, which a tail
        # process runs: change one, change the other (tests/mapek/test_tail_fold.py
        # holds them to each other). Paid per event on every append folded in Python:
        # the most frequent kinds are tested first and names are bound locally. The
        # position moves once an append is folded, so a fold that fails part way
        # resumes at the append it failed on.
        open_, closed, role_of, workflow = self.open, self.closed, self.role_of, self._workflow
        # The kinds by the sightings' names (shadowing them: the live kinds are others).
        (Completed, Enabled, Created, HandedOn, Fired,
         Started, Held, Cancelled, Breached, Resolved) = kinds
        live = kinds is _LIVE_KINDS  # data maps are dicts, not `Kept`
        disjoint, fired = _KEPT.isdisjoint, self.fired
        touched, resolutions = self._touched, self._resolutions  # (a tail's: hand_over)
        done = self.pos
        # Every YIELD_EVERY appends the fold gives the GIL away for a moment. The
        # store's writer thread binds its rows one by one, taking the GIL back for each;
        # a fold that kept it (up to the 5 ms switch interval at a time) held the
        # writer off for its whole length, and the write -- which every waiting
        # command is waiting for -- grew by the fold. Given away, the writer binds a
        # row and goes back into SQLite's C code beside the rest of the fold.
        # (bench/durable.py --alternate at N = 1,000, catch-ups every 50 ms, eight
        # runs of 10 pairs each way, in turns: 7.7 % fewer completions/s without, 4.9 %
        # with; lower in 7 of the 8 pairs of runs; the same CPU.) A tail's process has
        # no writer thread to let in: its fold never gives way (-1).
        give_way, every, n = _give_way, YIELD_EVERY if touched is None else -1, 0
        try:
            for pos, case_id, events in appends:
                n += 1
                if n == every:
                    give_way()
                    n = 0
                for e in events:
                    t = type(e)
                    if t is Completed:
                        key = (case_id, e.item)
                        o = open_.pop(key, None)
                        if o is not None:
                            o.closed_at = e.at
                            o.outcome = "completed"
                            o.result = e.result
                            o.by = e.by or o.by
                            closed.append(o)
                            if touched is not None:  # (enabled again: last in the order)
                                touched.pop(key, None)
                        out = e.output  # most carry no attribute: no call for those
                        if out is not None and (not disjoint(out) if live
                                                else out != NOTHING_KEPT):
                            self._remember(case_id, out)
                    elif t is Enabled:
                        if e.parent < 0:
                            wf = workflow.get(case_id, "")
                            key = (case_id, e.item)
                            o = open_[key] = Observation(case_id, wf, e.task, e.item, e.at)
                            if role_of is not None:
                                o.role = role_of(wf, e.task)
                            if touched is not None:
                                touched[key] = None
                    elif t is Created or t is HandedOn:
                        workflow[case_id] = e.workflow_id
                        data = e.data if t is Created else e.defaults
                        if data is not None and (not disjoint(data) if live
                                                 else data != NOTHING_KEPT):
                            self._remember(case_id, data)
                    elif t is Fired:
                        fired[(workflow.get(case_id, ""), e.task)] += 1
                    elif t is Started:
                        o = open_.get((case_id, e.item))
                        if o is not None:
                            o.started_at, o.by = e.at, e.by
                            if touched is not None:
                                touched[(case_id, e.item)] = None
                    elif t is Held:
                        o = open_.get((case_id, e.item))
                        if o is not None:
                            o.held_until = e.until
                            if touched is not None:
                                touched[(case_id, e.item)] = None
                    elif t is Cancelled:
                        o = open_.pop((case_id, e.item), None)
                        if o is not None:
                            o.closed_at = e.at
                            o.outcome = "cancelled"
                            closed.append(o)
                            if touched is not None:
                                touched.pop((case_id, e.item), None)
                    elif t is Breached:
                        b = Breach(case_id, workflow.get(case_id, ""), e.item, e.task, e.at,
                                   e.target, e.alert)
                        self.breaches.append(b)
                        self._open_breach[(case_id, e.item)] = b
                    elif t is Resolved:
                        b = self._open_breach.pop((case_id, e.item), None)
                        if b is not None:
                            b.resolved_at = e.at
                            if resolutions is not None:
                                resolutions.append(b)
                done = pos
        finally:
            self.pos = done

    def absorb(self, observations: Iterable[Observation]) -> None:
        """Add observations that did not come from this log (imported history)."""
        self.revision += 1
        for o in observations:
            if o.closed_at is None:
                self._absorbed += 1  # negative keys: never matched by a log event
                self.open[(f"import:{o.case_id}", -self._absorbed)] = o
            else:
                self.closed.append(o)

    def forget_imported(self, workflow_id: str) -> None:
        """Drop a workflow's imported observations (to absorb them again as a later
        import updated them); the aggregates are counted again at the next fold. Items
        after them in `closed` move down: whoever reads `closed` by position starts
        again when `forgotten` changes."""
        self._drop(lambda o: o.source == "import" and o.workflow_id == workflow_id)

    def _drop(self, gone: Callable[[Observation], bool]) -> None:
        """Drop the observations `gone` says, closed and open; the aggregates are
        counted again at the next fold, and readers of `closed` by position told."""
        self.revision += 1
        self.forgotten += 1
        self.closed[:] = [o for o in self.closed if not gone(o)]
        for key in [k for k, o in self.open.items() if gone(o)]:
            del self.open[key]
        self.tallies.clear()
        self._folded = 0

    def stamp(self) -> tuple[int, int, int]:
        """Changes whenever the observations do: the log's position, the items closed,
        and the imports absorbed or forgotten."""
        return self.pos, len(self.closed), self.revision

    def fold(self) -> None:
        """Count the items closed since the last fold into their three aggregates.
        Durations, buckets and local hours are computed as arrays; what is left per
        item is three dictionary updates."""
        new = self.closed[self._folded:]
        self._folded = len(self.closed)
        if not new:
            return
        zone_names: dict[str, int] = {}
        zone_of: dict[str | None, int] = {}
        for by in {o.by for o in new}:
            zone_of[by] = zone_names.setdefault(self.time_zone_of(by), len(zone_names))
        enabled = np.fromiter((o.enabled_at for o in new), float, len(new))
        dispatched = np.fromiter((o.dispatched_at for o in new), float, len(new))
        closed = np.fromiter((o.closed_at or 0.0 for o in new), float, len(new))
        zone = np.fromiter((zone_of[o.by] for o in new), np.int32, len(new))
        hours, _ = local_clocks(dispatched, zone, list(zone_names))
        responses = QuantileSketch.buckets_of(closed - dispatched).tolist()
        cycles = QuantileSketch.buckets_of(closed - enabled).tolist()
        tallies = self.tallies
        for o, hour, k_resp, k_cycle in zip(new, hours.tolist(), responses, cycles,
                                            strict=True):
            wf, task, completed = o.workflow_id, o.task, o.outcome == "completed"
            keys = [("task", wf, task), ("hour", wf, task, hour)]
            if o.by is not None:
                keys.append(("resource", wf, task, o.by))
            for key in keys:
                tally = tallies.get(key)
                if tally is None:
                    tally = tallies[key] = Tally()
                if completed:
                    tally.completed += 1
                    tally.response.add_bucket(k_resp)
                    tally.cycle.add_bucket(k_cycle)
                else:
                    tally.cancelled += 1

    def _remember(self, case_id: str, data: Kept | dict[str, Any]) -> None:
        kept = self.attributes.get(case_id)
        if kept is None:
            kept = self.attributes[case_id] = {}
        if isinstance(data, dict):
            for k in ATTRIBUTES:
                if k in data:
                    kept[k] = data[k]
        else:
            for k, v in zip(ATTRIBUTES, astuple(data), strict=True):
                if v is not UNSET:
                    kept[k] = v

    # ------------------------------------------------------------------ queries
    def observations(self, workflow_id: str | None = None, task: str | None = None,
                     since: float = float("-inf")) -> Iterator[Observation]:
        """Closed and open observations of items enabled since `since`."""
        for pool in (self.closed, self.open.values()):
            for o in pool:
                if (o.enabled_at >= since and (workflow_id is None or o.workflow_id == workflow_id)
                        and (task is None or o.task == task)):
                    yield o

    def percentiles(self, workflow_id: str, task: str, *, resource: str | None = None,
                    hour: int | None = None,
                    measure: Literal["response", "cycle"] = "response",
                    ) -> Percentiles | None:
        """p50/p90/p95 hours of the completed items of a task (or of one resource's, or
        of those dispatched at one local hour), from the streaming sketch: within 1 %
        of the exact quantile. None if nothing of that key has closed."""
        if resource is not None:
            key: tuple[Any, ...] = ("resource", workflow_id, task, resource)
        elif hour is not None:
            key = ("hour", workflow_id, task, hour)
        else:
            key = ("task", workflow_id, task)
        self.fold()
        tally = self.tallies.get(key)
        if tally is None:
            return None
        sketch = tally.response if measure == "response" else tally.cycle

        def h(q: float) -> float | None:
            v = sketch.quantile(q)
            return None if v is None else v / 3600.0

        return Percentiles(tally.completed, tally.cancelled, h(0.5), h(0.9), h(0.95))

    def completions(self, workflow_id: str, task: str) -> int:
        """How many times a task completed (work items and empty tasks)."""
        return self.fired[(workflow_id, task)] + sum(
            1 for o in self.closed
            if o.outcome == "completed" and o.workflow_id == workflow_id and o.task == task)

    def cases_completing(self, workflow_id: str, task: str) -> set[str]:
        return {o.case_id for o in self.closed if o.outcome == "completed"
                and o.workflow_id == workflow_id and o.task == task}
