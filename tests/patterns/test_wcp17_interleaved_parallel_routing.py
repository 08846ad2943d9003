"""WCP-17 Interleaved Parallel Routing: a set of tasks must all run, in any order, but no
two of them at the same time. caseloop expresses it with a mutex condition: A puts one
token on `mutex`; B and C each AND-join their own input with the mutex and give the token
back when they complete, and D takes it back at the end. Both tasks are offered while the
mutex is free; starting one takes the token and withdraws the other's offer until it is
returned.
"""

import pytest

from engine import NotEnabled

SPEC = {
    "id": "wcp17",
    "conditions": [{"id": "mutex"}],
    "tasks": [
        {"id": "A", "split": "and"},
        {"id": "B", "join": "and", "split": "and"},
        {"id": "C", "join": "and", "split": "and"},
        {"id": "D", "join": "and"},
    ],
    "flows": [
        {"from": "start", "to": "A"},
        {"from": "A", "to": "B"}, {"from": "A", "to": "C"}, {"from": "A", "to": "mutex"},
        {"from": "mutex", "to": "B"}, {"from": "mutex", "to": "C"}, {"from": "mutex", "to": "D"},
        {"from": "B", "to": "mutex"}, {"from": "C", "to": "mutex"},
        {"from": "B", "to": "D"}, {"from": "C", "to": "D"},
        {"from": "D", "to": "end"},
    ],
}


@pytest.mark.parametrize(("first", "second"), [("B", "C"), ("C", "B")])
def test_either_order_never_both_at_once(new_case, refuses, replays, first, second):
    c = new_case(SPEC)
    c.complete("A", 1.0)
    assert sorted(c.enabled_tasks()) == ["B", "C"]
    assert c.tokens_by_condition() == {"A->B": 1, "A->C": 1, "mutex": 1}
    c.start(first, 2.0)  # takes the mutex
    assert sorted(c.enabled_tasks()) == [first]
    assert c.tokens_by_condition() == {f"A->{second}": 1}
    refuses(c, NotEnabled, "start", second, 3.0)
    refuses(c, NotEnabled, "complete", second, 3.0)
    c.complete(first, 4.0)  # gives the mutex back
    assert sorted(c.enabled_tasks()) == [second]
    assert c.tokens_by_condition() == {f"A->{second}": 1, "mutex": 1, f"{first}->D": 1}
    c.start(second, 5.0)
    assert [it.state for it in c.work_items()] == ["started"]
    replays(c)
    c.complete(second, 6.0)
    assert sorted(c.enabled_tasks()) == ["D"]
    c.complete("D", 7.0)
    assert (c.status, c.tokens_by_condition()) == ("completed", {"end": 1})
    replays(c)
