"""The tail's fold in C (mapek/_tailfold.c) answers what the Python fold answers.

Both folds of adapters.monitor_tail -- TailFold over the log's bytes, PythonFold a
Monitor made with `hands_over=True` -- are fed the same random logs (every event type
the engine has, in random batches, as the store keeps them), and asked what changed at
random moments, in parts of random sizes; every answer is the same bytes (as msgspec
encodes `Changes`). A log with an error in it is refused by both, none of its batch
folded.
The tail process runs TailFold wherever it is built (test_monitor_tail holds the mirror
to the log read in full through it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_monitor_sightings import AT, BY, CONDS, DATA, LOG

from adapters.monitor_tail import FOLD_ENV, PythonFold, fold_in, new_fold
from adapters.sqlite_store import _array_header
from engine.events import (
    EVENT_TYPES,
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
    encode_events,
)
from mapek.monitor import Changes

tailfold = pytest.importorskip(
    "mapek._tailfold", reason="mapek/_tailfold.c is not built (no C compiler at install: "
    "pip install -e . builds it); the tail then folds in Python")
TAGS = tuple(c.__name__ for c in EVENT_TYPES)
decode = msgspec.msgpack.Decoder(Changes).decode


def batch(appends: list[tuple[int, str, list[Any]]]) -> tuple[list[int], list[str], bytes]:
    """Appends as the store's read_encoded hands them over."""
    return ([p for p, _, _ in appends], [c for _, c, _ in appends],
            _array_header(len(appends)) + b"".join(encode_events(e) for _, _, e in appends))


STEPS = st.lists(st.tuples(st.integers(1, 6), st.booleans(), st.integers(1, 5),
                          st.booleans()), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(LOG, STEPS)
def test_any_log_answers_the_same_from_c_as_from_python(
        log: list[tuple[str, list[Any]]], steps: list[tuple[int, bool, int, bool]]) -> None:
    """Batches of 1-6 appends; after some, an answer in parts of 1-5 closed items,
    said `behind` or not, taken part after part (or left between parts a while)."""
    answer_the_same(log, steps)


# Wider than LOG: many cases and items (the tables grow, items leave them), long and
# non-ASCII strings, ints of every width, negative items.
WIDE_ITEM = st.integers(-2**40, 2**40) | st.integers(-200, 300)
WIDE_TEXT = st.text(max_size=40) | st.text(min_size=250, max_size=300)
WIDE_CASE = st.integers(0, 400).map(lambda i: f"deal-{i:05d}-" + "x" * (i % 40))


@st.composite
def wide_log(draw: st.DrawFn) -> list[tuple[str, list[Any]]]:
    log: list[tuple[str, list[Any]]] = []
    items = st.shared(st.lists(WIDE_ITEM, min_size=1, max_size=6), key="items")
    for _ in range(draw(st.integers(0, 120))):
        case_id, item = draw(WIDE_CASE), draw(st.sampled_from(draw(items)))
        event = draw(st.one_of(
            st.builds(CaseCreated, st.just(case_id), WIDE_TEXT, st.just(1), DATA, AT),
            st.builds(CaseHandedOn, WIDE_TEXT, st.just(1), AT, st.none() | DATA),
            st.builds(WorkItemEnabled, st.just(item), WIDE_TEXT, AT,
                      st.sampled_from([-1, -1, -1, 5])),
            st.builds(WorkItemEnabled, st.just(item), st.just("Call"), AT),
            st.builds(WorkItemStarted, st.just(item), AT, CONDS, BY | WIDE_TEXT),
            st.builds(WorkItemHeld, st.just(item), AT, AT),
            st.builds(WorkItemCompleted, st.just(item), AT, st.none() | WIDE_TEXT,
                      st.none() | DATA, CONDS, CONDS, BY | WIDE_TEXT),
            st.builds(WorkItemCancelled, st.just(item), AT),
            st.builds(TaskFired, WIDE_TEXT, AT),
            st.builds(SlaBreached, st.just(item), AT, WIDE_TEXT, AT, AT),
            st.builds(SlaResolved, st.just(item), AT)))
        log.append((case_id, [event]))
    return log


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wide_log(), STEPS)
def test_a_wide_log_answers_the_same_from_c_as_from_python(
        log: list[tuple[str, list[Any]]], steps: list[tuple[int, bool, int, bool]]) -> None:
    answer_the_same(log, steps)


def answer_the_same(log: list[tuple[str, list[Any]]],
                    steps: list[tuple[int, bool, int, bool]]) -> None:
    c, py = tailfold.TailFold(TAGS), PythonFold()
    appends = [(i + 1, case_id, events) for i, (case_id, events) in enumerate(log)]
    at, parts_left = 0, False
    for size, ask, part, behind in steps * 3:
        if at < len(appends):
            chunk = batch(appends[at:at + size])
            assert c.fold(*chunk) == py.fold(*chunk) == len(chunk[0])
            at += len(chunk[0])
            assert c.pos == py.pos
        if ask or parts_left:
            (ours, left), (theirs, their_left) = c.hand_over(part, behind), py.hand_over(
                part, behind)
            assert ours == theirs, (decode(ours), decode(theirs))
            assert left == their_left
            parts_left = left
    while True:  # the rest
        (ours, left), (theirs, _) = c.hand_over(7, False), py.hand_over(7, False)
        assert ours == theirs, (decode(ours), decode(theirs))
        if not left:
            break
    assert c.open == len(py.monitor.open)


def test_an_answer_carries_the_items_breaches_tasks_and_attributes_it_says() -> None:
    """Not only equal to Python's: what a case did is there, in the fields Changes has."""
    fold = tailfold.TailFold(TAGS)
    fold.fold(*batch([
        (1, "deal-1", [CaseCreated("deal-1", "deal-approval", 1,
                                   {"deal_acv": 120_000, "segment": "enterprise",
                                    "notes": "not kept"}, 10.0)]),
        (2, "deal-1", [WorkItemEnabled(1, "FinanceApproval", 11.0),
                       WorkItemEnabled(2, "LegalApproval", 11)]),
        (3, "deal-1", [WorkItemCompleted(1, 20.5, "approved", {"discount_percent": 12},
                                         by="ana")]),
    ]))
    ch = decode(fold.hand_over(100, False)[0])
    assert ch.pos == 3 and ch.appends == 3 and ch.fresh and not ch.more
    [done] = ch.closed
    assert (done.case_id, done.workflow_id, done.task, done.item, done.enabled_at,
            done.closed_at, done.outcome, done.result, done.by, done.source) == (
        "deal-1", "deal-approval", "FinanceApproval", 1, 11.0, 20.5, "completed",
        "approved", "ana", "log")
    [waiting] = ch.opened
    assert (waiting.task, waiting.enabled_at, waiting.closed_at) == ("LegalApproval", 11.0,
                                                                      None)
    assert ch.attributes == {"deal-1": {"deal_acv": 120_000, "segment": "enterprise",
                                        "discount_percent": 12}}
    again = decode(fold.hand_over(100, True)[0])  # nothing since: only `more` as told
    assert (again.closed, again.opened, again.attributes, again.fresh, again.more) == (
        [], [], {}, False, True)


@pytest.mark.parametrize(("body", "says", "pos"), [
    (b"\x91\x91\x82\xa4type\xa7Unknown\xa2at\x01", "an unknown event type, Unknown", 0),
    (b"\x91\x91\x81\xa2at\x01", "without its tag", 0),
    (b"\x91\x91\x82\xa4type\xafWorkItemEnabled\xa4item\x01", "without a field it requires",
     0),
    (b"\x91\x91\x83\xa4type\xafWorkItemEnabled\xa4item\xa1x\xa2at\x01", "expected an int",
     0),
    (b"\x91\x91\x82\xa4type\xafWorkItemEnabled", "truncated", 0),
    (b"\x91\x90\x90", "bytes after the last append", 0),
    (b"\x91\x91\x83\xa4type\xafWorkItemEnabled\xa4item\x01\xa4task\xdb\xff\xff\xff\xff",
     "truncated", 0),  # a str32 whose length would wrap 32 bits
    (b"\x91\x91\x84\xa4type\xafWorkItemEnabled\xa4item\x01\xa2at\x01\xa4task\xa1\xff",
     "not UTF-8", 0),
    (b"\x91\x91\x81\xa4type\xdb\xff\xff\xff\xfb", "truncated", 0),
])
def test_a_malformed_log_is_refused_with_what_is_wrong(body: bytes, says: str,
                                                       pos: int) -> None:
    fold = tailfold.TailFold(TAGS)
    with pytest.raises(ValueError, match=says):
        fold.fold([1], ["deal-1"], body)
    assert fold.pos == pos
    with pytest.raises((ValueError, msgspec.DecodeError)):  # the Python fold too
        PythonFold().fold([1], ["deal-1"], body)


def test_an_item_enabled_again_while_open_keeps_its_place_among_those_touched() -> None:
    """Python's `_touched` is a dict: setting a key it has keeps the key's place."""
    log = [(1, "a", [WorkItemEnabled(1, "Call", 1.0)]),
           (2, "b", [WorkItemEnabled(1, "Call", 2.0)]),
           (3, "a", [WorkItemEnabled(1, "Sign", 3.0)])]
    c, py = tailfold.TailFold(TAGS), PythonFold()
    c.fold(*batch(log))
    py.fold(*batch(log))
    ours = c.hand_over(10, False)[0]
    assert ours == py.hand_over(10, False)[0]
    assert [(o.case_id, o.task) for o in decode(ours).opened] == [("a", "Sign"), ("b", "Call")]


def test_an_event_whose_tag_is_not_first_folds_as_in_python() -> None:
    """msgspec writes the tag first, and reads it anywhere: so does the C."""
    event = {"item": 3, "task": "Call", "at": 5, "type": "WorkItemEnabled", "data": None}
    body = _array_header(1) + msgspec.msgpack.encode([event])
    c, py = tailfold.TailFold(TAGS), PythonFold()
    assert c.fold([1], ["a"], body) == py.fold([1], ["a"], body) == 1
    ours = c.hand_over(10, False)[0]
    assert ours == py.hand_over(10, False)[0]
    assert decode(ours).opened[0].enabled_at == 5.0


def test_a_batch_with_an_error_in_it_folds_none_of_it_as_in_python() -> None:
    """Monitor.fold_encoded decodes a batch whole before folding it: a good append
    before the bad one is not folded either, in C as in Python."""
    good = encode_events([WorkItemEnabled(1, "Call", 1.0)])
    for fold in (tailfold.TailFold(TAGS), PythonFold()):
        with pytest.raises((ValueError, msgspec.DecodeError)):
            fold.fold([1, 2], ["a", "b"], _array_header(2) + good + b"\x91\x80")
        assert fold.pos == 0
        fold.fold([1], ["a"], _array_header(1) + good)  # then a good one, from there
        assert fold.pos == 1
        assert decode(fold.hand_over(10, False)[0]).opened[0].task == "Call"


@settings(max_examples=300, deadline=None)
@given(LOG.filter(bool), st.data())
def test_a_log_damaged_anywhere_is_refused_or_folded_as_python_folds_it(
        log: list[tuple[str, list[Any]]], data: st.DataObject) -> None:
    """Bytes flipped or cut anywhere in a batch: the C fold refuses it (ValueError,
    never a crash or a read past the end), or answers what the Python fold answers --
    which then took it too."""
    positions, case_ids, body = batch([(i + 1, c, e) for i, (c, e) in enumerate(log)])
    damaged = bytearray(body)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(damaged) - 1))
        damaged[at] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        damaged = damaged[:data.draw(st.integers(0, len(damaged)))]
    c, py = tailfold.TailFold(TAGS), PythonFold()
    try:
        c.fold(positions, case_ids, bytes(damaged))
    except ValueError:
        assert c.pos == 0
        return
    py.fold(positions, case_ids, bytes(damaged))  # the C took it: so must Python
    assert c.hand_over(10_000, False)[0] == py.hand_over(10_000, False)[0]


def test_the_child_folds_in_c_where_it_is_built_and_in_python_when_told(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FOLD_ENV, raising=False)
    assert fold_in() == "c"
    assert type(new_fold()).__name__ == "TailFold"
    code = "from adapters.monitor_tail import new_fold; print(type(new_fold()).__name__)"
    told = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, FOLD_ENV: "python"}, check=True)
    assert told.stdout.strip() == "PythonFold"
