"""WCP-30 Structured Partial Join: m branches from one parallel split converge; the
thread of control passes on as soon as n of them (n < m) have arrived, the remaining
arrivals are absorbed without effect, and the join resets once all have arrived. In
caseloop J is an empty task with `join: partial` and `threshold: 2` over the three
branches of A's AND split. E may finish before the third branch does; the case then
ends and the straggler is cancelled (`completion: cancel_remaining`, WCP-43).
"""

from engine import NotEnabled

SPEC = {
    "id": "wcp30",
    "completion": "cancel_remaining",
    "tasks": [
        {"id": "A"}, {"id": "B"}, {"id": "C"}, {"id": "F"},
        {"id": "J", "kind": "empty", "join": "partial", "threshold": 2}, {"id": "E"},
    ],
    "flows": [
        {"from": "start", "to": "A"}, {"from": "A", "to": "B"}, {"from": "A", "to": "C"},
        {"from": "A", "to": "F"}, {"from": "B", "to": "J"}, {"from": "C", "to": "J"},
        {"from": "F", "to": "J"}, {"from": "J", "to": "E"}, {"from": "E", "to": "end"},
    ],
}


def test_two_of_three_pass_the_third_is_absorbed(new_case, refuses, replays):
    case = new_case(SPEC)
    case.complete("A", 1.0)
    assert sorted(case.enabled_tasks()) == ["B", "C", "F"]
    case.complete("F", 2.0)
    assert sorted(case.enabled_tasks()) == ["B", "C"]
    assert case.tokens_by_condition() == {"A->B": 1, "A->C": 1, "F->J": 1}
    refuses(case, NotEnabled, "complete", "E", 3.0)
    case.complete("B", 4.0)
    assert sorted(case.enabled_tasks()) == ["C", "E"]
    assert case.tokens_by_condition() == {"A->C": 1, "J->E": 1}
    events = case.complete("C", 5.0)
    assert [e.absorbed_by for e in events if type(e).__name__ == "TokensRemoved"] == ["J"]
    assert sorted(case.enabled_tasks()) == ["E"]
    assert case.tokens_by_condition() == {"J->E": 1}
    case.complete("E", 6.0)
    assert (case.status, case.tokens_by_condition()) == ("completed", {"end": 1})
    assert sum(type(e).__name__ == "TaskFired" for e in case.events) == 1
    replays(case)


def test_straggler_cancelled_when_the_case_ends(new_case, replays):
    case = new_case(SPEC)
    case.complete("A", 1.0)
    case.complete("B", 2.0)
    case.complete("C", 3.0)
    case.start("F", 4.0)
    assert sorted(case.enabled_tasks()) == ["E", "F"]
    case.complete("E", 5.0)
    assert (case.status, case.work_items()) == ("completed", [])
    assert case.tokens_by_condition() == {"end": 1}
    replays(case)
