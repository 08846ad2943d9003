"""WCP-16 Deferred Choice: several branches are offered at once and the choice between
them is made by the environment, not by data: the first branch that is taken up wins and
the others are withdrawn. caseloop expresses it with a condition feeding several tasks:
all are offered as work items; starting (or directly completing) one of them takes the
shared token, and the other offers are withdrawn (`WorkItemCancelled`).
The environment may be the clock: a branch with a timer is taken when the timer fires.
"""

import pytest

from engine import NotEnabled
from engine.events import WorkItemCancelled

DAY = 86400.0
SPEC = {
    "id": "wcp16",
    "conditions": [{"id": "waiting"}],
    "tasks": [
        {"id": "Invoice"},
        {"id": "PaymentReceived"},
        {"id": "Collections", "timer": {"after": "60d", "on_timeout": "complete"}},
    ],
    "flows": [
        {"from": "start", "to": "Invoice"},
        {"from": "Invoice", "to": "waiting"},
        {"from": "waiting", "to": "PaymentReceived"},
        {"from": "waiting", "to": "Collections"},
        {"from": "PaymentReceived", "to": "end"},
        {"from": "Collections", "to": "end"},
    ],
}


def withdrawn(events):
    return [e.item for e in events if isinstance(e, WorkItemCancelled)]


def item(c, task):
    (iid,) = [it.id for it in c.work_items() if c.net.tasks[it.task].id == task]
    return iid


@pytest.mark.parametrize(("chosen", "other"), [
    ("PaymentReceived", "Collections"), ("Collections", "PaymentReceived")])
def test_starting_one_withdraws_the_others(new_case, refuses, replays, chosen, other):
    c = new_case(SPEC)
    c.complete("Invoice", 1.0)
    assert sorted(c.enabled_tasks()) == ["Collections", "PaymentReceived"]
    assert c.tokens_by_condition() == {"waiting": 1}  # one token, offered twice
    loser = item(c, other)
    assert withdrawn(c.start(chosen, 2.0)) == [loser]
    assert (sorted(c.enabled_tasks()), c.tokens_by_condition()) == ([chosen], {})
    refuses(c, NotEnabled, "start", other, 3.0)
    refuses(c, NotEnabled, "complete", other, 3.0)
    replays(c)
    c.complete(chosen, 4.0)
    assert (c.status, c.tokens_by_condition()) == ("completed", {"end": 1})
    replays(c)


def test_completing_an_offer_directly_also_decides(new_case, replays):
    c = new_case(SPEC)
    c.complete("Invoice", 1.0)
    loser = item(c, "Collections")
    assert withdrawn(c.complete("PaymentReceived", 2.0)) == [loser]
    assert (c.status, c.tokens_by_condition()) == ("completed", {"end": 1})
    assert c.pending_timers() == []
    replays(c)


def test_the_clock_decides_when_nobody_acts(new_case, replays):
    c = new_case(SPEC)
    c.complete("Invoice", 1.0)
    [(timer, due)] = c.pending_timers()
    assert due == 1.0 + 60 * DAY
    assert c.fire_timer(timer, due - 1.0) == []  # not yet due: nothing happens
    assert sorted(c.enabled_tasks()) == ["Collections", "PaymentReceived"]
    loser = item(c, "PaymentReceived")
    assert withdrawn(c.fire_timer(timer, due)) == [loser]
    assert (c.status, c.tokens_by_condition()) == ("completed", {"end": 1})
    replays(c)
