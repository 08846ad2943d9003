"""WCP-3 Synchronization: several concurrent branches converge into one thread, which goes
on only when every incoming branch has completed. caseloop expresses it with an AND join
(`join: and`): D needs a token on each of its inputs; an early arrival waits on its
condition and D is not offered, and cannot be forced, until the last branch arrives.
"""

import pytest

from engine import NotEnabled

SPEC = {
    "id": "wcp03",
    "tasks": [{"id": "A", "split": "and"}, {"id": "B"}, {"id": "C"}, {"id": "D", "join": "and"}],
    "flows": [
        {"from": "start", "to": "A"},
        {"from": "A", "to": "B"},
        {"from": "A", "to": "C"},
        {"from": "B", "to": "D"},
        {"from": "C", "to": "D"},
        {"from": "D", "to": "end"},
    ],
}


@pytest.mark.parametrize("order", ["BC", "CB"])
def test_join_waits_for_every_branch(new_case, refuses, replays, order):
    c = new_case(SPEC)
    c.complete("A", 1.0)
    first, second = order
    c.complete(first, 2.0)
    assert sorted(c.enabled_tasks()) == [second]
    assert c.tokens_by_condition() == {f"{first}->D": 1, f"A->{second}": 1}
    refuses(c, NotEnabled, "complete", "D", 3.0)
    refuses(c, NotEnabled, "start", "D", 3.0)
    c.start(second, 4.0)
    refuses(c, NotEnabled, "complete", "D", 5.0)  # a started branch has not arrived yet
    c.complete(second, 6.0)
    assert sorted(c.enabled_tasks()) == ["D"]
    assert c.tokens_by_condition() == {"B->D": 1, "C->D": 1}
    replays(c)
    c.complete("D", 7.0)
    assert (c.status, c.tokens_by_condition()) == ("completed", {"end": 1})
    replays(c)


def test_join_fires_once(new_case):
    c = new_case(SPEC)
    for i, task in enumerate("ABC"):
        c.complete(task, float(i))
    assert [c.net.tasks[it.task].id for it in c.work_items()] == ["D"]  # one item, not two
    c.complete("D", 5.0)
    assert c.status == "completed"
