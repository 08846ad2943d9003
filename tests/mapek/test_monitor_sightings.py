"""The Monitor's slim reading (mapek.sightings) folds into exactly what the full one did.

The oracle is the Monitor's fold as it was before sightings: the engine's own events,
decoded in full by the engine's decoder, folded by the code below (kept verbatim but for
names). A real log -- the simulated RevOps pipeline, every workflow, hand-overs, SLA
breaches, automatic items -- read through the SQLite store's encoded tail, and random
logs of every event type, must give the same observations, breaches, counts and case
attributes, in the same order.
"""

from __future__ import annotations

import pathlib
import shutil
from collections import Counter
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import astuple

from adapters.sqlite_store import SQLiteStore
from engine.events import (
    EVENT_TYPES,
    CaseCancelled,
    CaseCompleted,
    CaseCreated,
    CaseHandedOn,
    SlaBreached,
    SlaResolved,
    TaskFired,
    TimerFired,
    TimerSet,
    TokensAdded,
    WorkItemCancelled,
    WorkItemCompleted,
    WorkItemEnabled,
    WorkItemFailed,
    WorkItemHeld,
    WorkItemReassigned,
    WorkItemRetried,
    WorkItemStarted,
    decode_events,
    encode_events,
)
from mapek.monitor import Breach, Monitor, Observation
from mapek.sightings import ATTRIBUTES, SIGHTINGS, Kept, decode_append

_KEPT = frozenset(ATTRIBUTES)


class FullFold:
    """The Monitor's fold before sightings, over the engine's own events."""

    def __init__(self, role_of: Any = None) -> None:
        self.role_of = role_of
        self.closed: list[Observation] = []
        self.open: dict[tuple[str, int], Observation] = {}
        self.breaches: list[Breach] = []
        self._open_breach: dict[tuple[str, int], Breach] = {}
        self.fired: Counter[tuple[str, str]] = Counter()
        self.attributes: dict[str, dict[str, Any]] = {}
        self.workflow: dict[str, str] = {}

    def observe(self, case_id: str, events: list[Any]) -> None:
        open_, role_of = self.open, self.role_of
        for e in events:
            t = type(e)
            if t is WorkItemEnabled:
                if e.parent < 0:
                    wf = self.workflow.get(case_id, "")
                    o = open_[(case_id, e.item)] = Observation(case_id, wf, e.task, e.item,
                                                               e.at)
                    if role_of is not None:
                        o.role = role_of(wf, e.task)
            elif t is WorkItemCompleted or t is WorkItemCancelled:
                o = open_.pop((case_id, e.item), None)
                if o is not None:
                    o.closed_at = e.at
                    if t is WorkItemCompleted:
                        o.outcome, o.result = "completed", e.result
                        o.by = e.by or o.by
                    else:
                        o.outcome = "cancelled"
                    self.closed.append(o)
                if t is WorkItemCompleted and e.output and not _KEPT.isdisjoint(e.output):
                    self._remember(case_id, e.output)
            elif t is WorkItemStarted:
                o = self.open.get((case_id, e.item))
                if o is not None:
                    o.started_at, o.by = e.at, e.by
            elif t is WorkItemHeld:
                o = self.open.get((case_id, e.item))
                if o is not None:
                    o.held_until = e.until
            elif t is TaskFired:
                self.fired[(self.workflow.get(case_id, ""), e.task)] += 1
            elif t is CaseCreated or t is CaseHandedOn:
                self.workflow[case_id] = e.workflow_id
                self._remember(case_id, e.data if t is CaseCreated else e.defaults or {})
            elif t is SlaBreached:
                b = Breach(case_id, self.workflow.get(case_id, ""), e.item, e.task, e.at,
                           e.target, e.alert)
                self.breaches.append(b)
                self._open_breach[(case_id, e.item)] = b
            elif t is SlaResolved:
                b = self._open_breach.pop((case_id, e.item), None)
                if b is not None:
                    b.resolved_at = e.at

    def _remember(self, case_id: str, data: dict[str, Any]) -> None:
        if _KEPT.isdisjoint(data):
            return
        kept = {k: data[k] for k in ATTRIBUTES if k in data}
        if kept:
            self.attributes.setdefault(case_id, {}).update(kept)


def assert_same(monitor: Monitor, full: FullFold) -> None:
    assert [astuple(o) for o in monitor.closed] == [astuple(o) for o in full.closed]
    assert ({k: astuple(o) for k, o in monitor.open.items()}
            == {k: astuple(o) for k, o in full.open.items()})
    assert list(monitor.open) == list(full.open)  # same order: observations() follows it
    assert [astuple(b) for b in monitor.breaches] == [astuple(b) for b in full.breaches]
    assert monitor.fired == full.fired
    assert monitor.attributes == full.attributes


def role_of(workflow_id: str, task: str) -> str:
    return f"{workflow_id}/{task}"


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("batch", [10_000, 97])
async def test_the_simulated_pipeline_folds_the_same_read_slim_as_read_in_full(
        anyio_backend: str, batch: int, simulated_db: pathlib.Path,
        tmp_path: pathlib.Path) -> None:
    db = tmp_path / "pipeline.db"
    shutil.copy(simulated_db, db)
    async with SQLiteStore(str(db)) as store:
        monitor = Monitor(store, batch=batch, role_of=role_of)
        await monitor.catch_up()
        full, pos = FullFold(role_of), 0
        while rows := await store.read_events(pos, 5000):
            for pos, case_id, _first, events in rows:  # noqa: B007 -- pos carries on
                full.observe(case_id, events)
        kinds = Counter(type(e).__name__ for _, _, _, evs in await store.read_events(0, 10**9)
                        for e in evs)
    assert monitor.pos == pos > 0
    assert_same(monitor, full)
    # The log exercises what the fold does: hand-overs, breaches and their resolution,
    # automatic and human items, open ones left right-censored.
    assert {"CaseHandedOn", "SlaBreached", "SlaResolved", "TaskFired"} <= set(kinds)
    assert len(monitor.closed) > 1000 and monitor.open and monitor.attributes


# ------------------------------------------------------------------ random logs
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                   st.floats(allow_nan=False), st.text(max_size=6),
                   st.lists(st.integers(0, 9), max_size=3))
KEYS = st.sampled_from([*ATTRIBUTES, "approval", "score", "deal_name"])
DATA = st.dictionaries(KEYS, VALUES, max_size=5)
AT = st.floats(0, 1e9, allow_nan=False)
ITEM = st.integers(0, 3)
TASK = st.sampled_from(["Call", "Sign", "Legal"])
BY = st.sampled_from([None, "", "ana", "raj"])
CONDS = st.lists(st.integers(0, 20), max_size=3).map(tuple)
EVENT = st.one_of(
    st.builds(CaseCreated, st.just("?"), st.sampled_from(["wf1", "wf2"]), st.just(1),
              DATA, AT),
    st.builds(CaseHandedOn, st.sampled_from(["wf2", "wf3"]), st.just(1), AT,
              st.none() | DATA),
    st.builds(WorkItemEnabled, ITEM, TASK, AT, st.sampled_from([-1, -1, 0, 3]),
              st.none() | DATA),
    st.builds(WorkItemHeld, ITEM, AT, AT, st.integers(0, 3)),
    st.builds(WorkItemStarted, ITEM, AT, CONDS, BY),
    st.builds(WorkItemCompleted, ITEM, AT, st.none() | st.text(max_size=4),
              st.none() | DATA, CONDS, CONDS, BY),
    st.builds(WorkItemCancelled, ITEM, AT, st.text(max_size=4), CONDS),
    st.builds(WorkItemFailed, ITEM, AT, st.text(max_size=4)),
    st.builds(WorkItemRetried, ITEM, AT, BY),
    st.builds(WorkItemReassigned, ITEM, AT, BY),
    st.builds(TaskFired, TASK, AT, CONDS, CONDS, st.none() | DATA),
    st.builds(SlaBreached, ITEM, AT, TASK, AT, AT),
    st.builds(SlaResolved, ITEM, AT),
    st.builds(TimerSet, ITEM, AT),
    st.builds(TimerFired, ITEM, AT),
    st.builds(TokensAdded, CONDS, AT),
    st.builds(CaseCompleted, AT, st.none() | TASK),
    st.builds(CaseCancelled, AT, st.text(max_size=4)),
)


@st.composite
def lifecycle(draw: st.DrawFn) -> list[Any]:
    """One work item from enabled to closed (held, started, breached on the way), so
    the events meet the observation they update -- random events mostly miss it."""
    item = draw(ITEM)
    events: list[Any] = [WorkItemEnabled(item, draw(TASK), draw(AT),
                                         draw(st.sampled_from([-1, -1, -1, 0])))]
    if draw(st.booleans()):
        events.append(WorkItemHeld(item, draw(AT), draw(AT)))
    if draw(st.booleans()):
        events.append(WorkItemStarted(item, draw(AT), (), draw(BY)))
    if draw(st.booleans()):
        events.append(SlaBreached(item, draw(AT), draw(TASK), draw(AT), draw(AT)))
    events.append(draw(st.builds(WorkItemCompleted, st.just(item), AT,
                                 st.none() | st.text(max_size=4), st.none() | DATA, CONDS,
                                 CONDS, BY)
                       | st.builds(WorkItemCancelled, st.just(item), AT)))
    if draw(st.booleans()):
        events.append(SlaResolved(item, draw(AT)))
    return events


APPEND = st.lists(EVENT, min_size=1, max_size=6) | lifecycle()
LOG = st.lists(st.tuples(st.sampled_from(["c1", "c2", "c3"]), APPEND), max_size=25)


@given(LOG)
def test_any_log_folds_the_same_slim_as_in_full(log: list[tuple[str, list[Any]]]) -> None:
    monitor, full = Monitor(_NoLog(), role_of=role_of), FullFold(role_of)
    for case_id, events in log:
        body = encode_events(events)  # what the store keeps; both read these bytes
        monitor.observe(case_id, decode_events(body))
        full.observe(case_id, decode_events(body))
    assert_same(monitor, full)


@given(st.lists(EVENT, min_size=1, max_size=8))
def test_a_sighting_carries_the_engine_events_fields_as_the_engine_decodes_them(
        events: list[Any]) -> None:
    body = encode_events(events)
    for seen, event in zip(decode_append(body), decode_events(body), strict=True):
        assert seen.__struct_config__.tag == type(event).__name__
        for field in seen.__struct_fields__:
            got, want = getattr(seen, field), getattr(event, field)
            if isinstance(got, Kept):  # a data map: its kept keys, nothing else
                got = {k: v for k, v in zip(ATTRIBUTES, astuple(got), strict=True)
                       if v is not msgspec.UNSET}
                want = {k: v for k, v in (want or {}).items() if k in _KEPT}
            assert got == want and type(got) is type(want), (field, got, want)


def test_every_engine_event_has_a_sighting() -> None:
    assert ({c.__struct_config__.tag for c in SIGHTINGS}
            == {c.__name__ for c in EVENT_TYPES})
    assert ATTRIBUTES == ("deal_acv", "contract_type", "discount_percent", "company_size",
                          "industry", "segment")


class _NoLog:
    async def read_events(self, after_pos: int = 0, limit: int = 10_000,
                          ) -> list[tuple[int, str, int, list[Any]]]:
        return []

