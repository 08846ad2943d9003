"""The Monitor's fold in C (mapek/_fold.c) does what the Python fold (`_fold_py`) does.

Both folds run over the same random logs of every event type -- the engine's own events
(as the store hands them on) and the slim sightings (as read back from the log) -- and
must leave the same observations, breaches, counts, case attributes and position, in
the same order; also when a call out of the fold raises part way. The other Monitor
tests (test_monitor_sightings, test_monitor_live, the server's) run whichever fold the
install built, against their own oracles; this file holds the two folds to each other,
so the Python one, which runs where no compiler did, stays tested too.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import astuple
from test_monitor_sightings import LOG, role_of

import mapek.monitor as monitor_module
from engine.events import WorkItemCompleted, WorkItemEnabled, decode_events, encode_events
from mapek.monitor import _LIVE_KINDS, _READ_KINDS, Monitor
from mapek.sightings import decode_append

pytestmark = pytest.mark.skipif(
    monitor_module._c_fold is None,
    reason="mapek._fold is not built (`pip install -e .` compiles it; needs a C compiler)"
           " or CASELOOP_MONITOR_FOLD=python is set")


class _NoLog:
    async def read_events(self, after_pos: int = 0, limit: int = 10_000) -> list[Any]:
        return []


def state(m: Monitor) -> tuple[Any, ...]:
    return (m.pos,
            [astuple(o) for o in m.closed],
            [(k, astuple(o)) for k, o in m.open.items()],  # order too: observations()
            [astuple(b) for b in m.breaches],
            [(k, astuple(b)) for k, b in m._open_breach.items()],
            list(m.fired.items()), m.attributes, m._workflow)


def both(log: list[tuple[str, list[Any]]], live: bool, role: Any = role_of,
         ) -> tuple[Monitor, Monitor, BaseException | None, BaseException | None]:
    """The log folded in C and in Python; the exception each raised, if any."""
    decode = decode_events if live else decode_append
    kinds = _LIVE_KINDS if live else _READ_KINDS
    appends = [(pos, case_id, decode(encode_events(events)))
               for pos, (case_id, events) in enumerate(log, 1)]
    c, py = Monitor(_NoLog(), role_of=role), Monitor(_NoLog(), role_of=role)
    raised: list[BaseException | None] = []
    for fold in (c._fold, py._fold_py):
        try:
            fold(iter(appends), kinds)
            raised.append(None)
        except Exception as exc:  # compared below
            raised.append(exc)
    return c, py, raised[0], raised[1]


@given(LOG, st.booleans())
def test_any_log_folds_the_same_in_c_as_in_python(log: list[tuple[str, list[Any]]],
                                                  live: bool) -> None:
    c, py, c_raised, py_raised = both(log, live)
    assert c_raised is None and py_raised is None
    assert state(c) == state(py)
    assert c.pos == len(log)


@given(LOG, st.booleans(), st.sampled_from(["t0", "t1", "approve"]))
def test_a_fold_that_fails_part_way_stops_at_the_same_append_in_both(
        log: list[tuple[str, list[Any]]], live: bool, bad_task: str) -> None:
    """A call out of the fold (here `role_of`) raises on one task: both folds raise it,
    keep what they folded before, and leave `pos` at the last append folded whole."""

    def role(workflow_id: str, task: str) -> str:
        if task == bad_task:
            raise LookupError(task)
        return f"{workflow_id}/{task}"

    c, py, c_raised, py_raised = both(log, live, role)
    assert type(c_raised) is type(py_raised)
    assert (c_raised is None) or c_raised.args == py_raised.args  # type: ignore[union-attr]
    assert state(c) == state(py)


def test_the_c_fold_gives_the_gil_away_every_yield_every_appends(
        monkeypatch: pytest.MonkeyPatch) -> None:
    gave: list[int] = []
    monkeypatch.setattr(monitor_module, "_give_way", lambda: gave.append(1))
    appends = [(pos, f"case-{pos}", [WorkItemEnabled(1, "t", float(pos))])
               for pos in range(1, 1001)]
    Monitor(_NoLog())._fold(iter(appends), _LIVE_KINDS)
    assert len(gave) == 1000 // monitor_module.YIELD_EVERY


def test_the_c_fold_keeps_no_reference_it_does_not_store() -> None:
    """Reference counts after a fold: what the Monitor keeps holds its references, and
    nothing else keeps one (a leak would grow a server's memory with every event)."""
    case_ids = [f"case-{i}-{'x' * 20}" for i in range(50)]  # not interned: counts are ours
    tasks = [f"task-{i}-{'y' * 20}" for i in range(5)]
    by = "rep-" + "z" * 30
    log = []
    for cid in case_ids:
        log.append((cid, [WorkItemEnabled(1, tasks[0], 1.0), WorkItemEnabled(2, tasks[1], 2.0)]))
        log.append((cid, [WorkItemCompleted(1, 3.0, "ok", {"deal_acv": 5}, (), (), by)]))
    before = ([sys.getrefcount(x) for x in case_ids], [sys.getrefcount(t) for t in tasks],
              sys.getrefcount(by))
    for fold in ("_fold", "_fold_py"):
        m = Monitor(_NoLog(), role_of=role_of)
        getattr(m, fold)(iter([(p, c, evs) for p, (c, evs) in enumerate(log, 1)]),
                         _LIVE_KINDS)
        assert len(m.closed) == 50 and len(m.open) == 50
        del m
        gc.collect()
        after = ([sys.getrefcount(x) for x in case_ids], [sys.getrefcount(t) for t in tasks],
                 sys.getrefcount(by))
        assert after == before, fold
