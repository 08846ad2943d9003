"""Policies: dispatch windows in a time zone (DST included), the longest wait, versions
that are never edited (apply makes one, restore makes one equal to an earlier one),
and the runtime ports' answers."""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mapek.policy import Change, DispatchWindow, Escalation, PolicyBook, PolicyError

PT = ZoneInfo("America/Los_Angeles")
W = DispatchWindow(14, 2, "America/Los_Angeles", max_wait_hours=24)


def at(y: int, m: int, d: int, h: int, minute: int = 0) -> float:
    return datetime(y, m, d, h, minute, tzinfo=PT).timestamp()


def test_release_is_the_next_opening_in_local_time_across_dst() -> None:
    # Saturday 7 March 2026 noon PST -> Monday 9 March 2pm PDT (DST began on the 8th).
    w = DispatchWindow(14, 2, "America/Los_Angeles", max_wait_hours=72)
    assert w.release(at(2026, 3, 7, 12)) == at(2026, 3, 9, 14)
    assert datetime.fromtimestamp(w.release(at(2026, 3, 7, 12)), PT).hour == 14


def test_inside_the_window_and_beyond_the_longest_wait_mean_now() -> None:
    assert W.release(at(2026, 11, 18, 14, 30)) is None  # Wednesday, inside
    assert W.release(at(2026, 11, 18, 10)) == at(2026, 11, 18, 14)
    assert W.release(at(2026, 11, 20, 17)) is None  # Friday 5pm: Monday is > 24h away
    short = DispatchWindow(14, 2, "America/Los_Angeles", max_wait_hours=3)
    assert short.release(at(2026, 11, 18, 10)) is None  # 4h away


@given(st.floats(min_value=1.7e9, max_value=1.9e9))
def test_a_release_is_always_an_opening_after_the_enable_and_within_the_wait(t: float) -> None:
    r = W.release(t)
    if r is None:
        return
    local = datetime.fromtimestamp(r, PT)
    assert r > t and r - t <= 24 * 3600
    assert (local.hour, local.minute, local.weekday() < 5) == (14, 0, True)


def test_describe_reads_like_a_person_wrote_it() -> None:
    assert W.describe() == "2pm to 4pm PT on weekdays"


def test_versions_are_made_not_edited_and_restore_brings_back_the_old_content() -> None:
    book = PolicyBook()
    v1 = book.apply(Change("dispatch_window", "wf", "Sign", window=W), 10.0, "why")
    v2 = book.apply(Change("routing", "wf", "Sign", prefer=("ann",), avoid=("bob",)), 20.0,
                    "why")
    assert (v1.version, v2.version) == (1, 2)
    assert book.hold_until("wf", "Sign", at(2026, 11, 18, 10)) == (at(2026, 11, 18, 14), 2)
    rule = book.rule("wf", "Sign")
    assert rule is not None and rule.prefer == ("ann",) and rule.avoid == ("bob",)
    v3 = book.restore(0, 30.0, "rollback")
    assert (v3.version, v3.based_on, v3.tasks) == (3, 0, ())
    assert book.hold_until("wf", "Sign", at(2026, 11, 18, 10)) is None
    assert book.rule("wf", "Sign") is None
    assert [v.version for v in book.history] == [0, 1, 2, 3]
    assert book.history[1].tasks[0].dispatch == W  # the old version is untouched


@pytest.mark.parametrize(("change", "field"), [
    (Change("dispatch_window", "wf", "T", window=DispatchWindow(25, 2, "UTC")),
     "change.window.start_hour"),
    (Change("dispatch_window", "wf", "T", window=DispatchWindow(9, 2, "Mars/Olympus")),
     "change.window.time_zone"),
    (Change("routing", "wf", "T", prefer=("a",), avoid=("a",)), "change.prefer"),
    (Change("routing", "wf", "T", avoid=("a",), assigned_at="AssignToSDR"),
     "change.assigned_at"),
    (Change("escalation", "wf", "T", escalation=Escalation(0.0, "director")),
     "change.escalation.after_hours"),
    (Change("escalation", "wf", "T", escalation=Escalation(math.inf, "director")),
     "change.escalation.after_hours"),
    (Change("escalation", "wf", "T", escalation=Escalation(2.0, "")),
     "change.escalation.to_role"),
])
def test_a_bad_change_is_refused_with_its_field(change: Change, field: str) -> None:
    book = PolicyBook()
    with pytest.raises(PolicyError) as e:
        book.apply(change, 0.0, "bad")
    assert e.value.field == field
    assert book.current.version == 0
