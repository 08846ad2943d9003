"""WCP-19 Cancel Task: an enabled task is withdrawn before it starts, or a running one is
halted and removed. caseloop offers both forms: `Case.cancel_item` withdraws an offered
item together with its input tokens (that thread dies, it is not offered again) or stops
a started one (for one instance of a multiple-instance task, the task stops waiting for
it); and a task's cancellation region (`cancels: [B]`) does the same when that task
completes. Here B and C run in parallel into an OR join, so the join stops waiting for a
branch whose task was cancelled; with every thread withdrawn the case is failed.
"""

import pytest

from engine import AlreadyDone, NotEnabled
from engine.events import WorkItemCancelled

SPEC = {
    "id": "wcp19",
    "tasks": [{"id": "A", "split": "and"}, {"id": "B"}, {"id": "C", "cancels": ["B"]},
              {"id": "D", "join": "or"}],
    "flows": [
        {"from": "start", "to": "A"},
        {"from": "A", "to": "B"},
        {"from": "A", "to": "C"},
        {"from": "B", "to": "D"},
        {"from": "C", "to": "D"},
        {"from": "D", "to": "end"},
    ],
}


@pytest.mark.parametrize("started", [False, True])
def test_cancel_item_withdraws_the_thread(new_case, refuses, replays, started):
    c = new_case(SPEC)
    c.complete("A", 1.0)
    if started:
        c.start("B", 2.0)
    (b,) = [it.id for it in c.work_items() if c.net.tasks[it.task].id == "B"]
    events = c.cancel_item("B", 3.0)
    assert [(e.item, bool(e.consumed)) for e in events] == [(b, not started)]
    assert (sorted(c.enabled_tasks()), c.tokens_by_condition()) == (["C"], {"A->C": 1})
    refuses(c, NotEnabled, "start", "B", 4.0)
    refuses(c, AlreadyDone, "complete", b, 4.0)
    c.complete("C", 5.0)
    assert sorted(c.enabled_tasks()) == ["D"]  # the OR join does not wait for B
    c.complete("D", 6.0)
    assert c.status == "completed"
    replays(c)


@pytest.mark.parametrize("started", [False, True])
def test_cancellation_region_removes_b(new_case, replays, started):
    c = new_case(SPEC)
    c.complete("A", 1.0)
    if started:
        c.start("B", 2.0)
    events = c.complete("C", 3.0)
    assert [e.reason for e in events if isinstance(e, WorkItemCancelled)] == ["cancelled by C"]
    assert (sorted(c.enabled_tasks()), c.tokens_by_condition()) == (["D"], {"C->D": 1})
    replays(c)


def test_region_has_nothing_to_cancel_once_b_is_done(new_case, replays):
    c = new_case(SPEC)
    c.complete("A", 1.0)
    c.complete("B", 2.0)
    assert sorted(c.enabled_tasks()) == ["C"]  # the OR join waits for C
    c.complete("C", 3.0)
    assert c.tokens_by_condition() == {"B->D": 1, "C->D": 1}
    replays(c)


def test_withdrawing_every_thread_leaves_a_failed_case(new_case, replays):
    c = new_case(SPEC)
    c.complete("A", 1.0)
    c.cancel_item("B", 2.0)
    c.cancel_item("C", 3.0)
    assert (c.status, c.enabled_tasks(), c.tokens_by_condition()) == ("failed", [], {})
    replays(c)


MI_SPEC = {
    "id": "wcp19-mi",
    "tasks": [{"id": "A"}, {"id": "Review", "multiple_instance": {"min": 3, "max": 3}},
              {"id": "C"}],
    "flows": [
        {"from": "start", "to": "A"},
        {"from": "A", "to": "Review"},
        {"from": "Review", "to": "C"},
        {"from": "C", "to": "end"},
    ],
}


def test_cancelling_one_instance_withdraws_only_that_instance(new_case, replays):
    c = new_case(MI_SPEC)
    c.complete("A", 1.0)
    i1, i2, i3 = sorted(it.id for it in c.work_items() if it.parent >= 0)
    c.cancel_item(i1, 2.0)
    assert sorted(it.id for it in c.work_items() if it.parent >= 0) == [i2, i3]
    c.complete(i2, 3.0)
    c.complete(i3, 4.0)  # every instance left is done: the task completes
    assert (sorted(c.enabled_tasks()), c.tokens_by_condition()) == (["C"], {"Review->C": 1})
    replays(c)
