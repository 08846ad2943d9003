"""WCP-33 Generalised AND-Join: a join over branches that may each carry more than
one thread in the same case; it fires once for every complete set (one token on each
input), and surplus tokens on one input wait for their partners instead of being lost
or firing the join again. In caseloop an `and` join consumes one token per input per
firing and stays enabled while another full set is present. Here two threads reach
`left` (B1, B2) and two reach `right` (C1, C2); J must run exactly twice. With more
than one thread per branch the case cannot end on a single `end` token, so it uses
implicit termination (WCP-11) and J drains into the `archive` condition.
"""

from engine import AlreadyDone, NotEnabled

BRANCHES = ["B1", "B2", "C1", "C2"]
SPEC = {
    "id": "wcp33",
    "completion": "implicit",
    "conditions": [{"id": "left"}, {"id": "right"}, {"id": "archive"}],
    "tasks": [{"id": "A"}, *({"id": b} for b in BRANCHES), {"id": "J", "join": "and"}],
    "flows": [
        {"from": "start", "to": "A"}, *({"from": "A", "to": b} for b in BRANCHES),
        {"from": "B1", "to": "left"}, {"from": "B2", "to": "left"},
        {"from": "C1", "to": "right"}, {"from": "C2", "to": "right"},
        {"from": "left", "to": "J"}, {"from": "right", "to": "J"},
        {"from": "J", "to": "archive"},
    ],
}


def test_fires_once_per_complete_set(new_case, refuses, replays):
    case = new_case(SPEC)
    case.complete("A", 1.0)
    case.complete("B1", 2.0)
    case.complete("B2", 3.0)
    assert sorted(case.enabled_tasks()) == ["C1", "C2"]
    assert case.tokens_by_condition() == {"left": 2, "A->C1": 1, "A->C2": 1}
    refuses(case, NotEnabled, "complete", "J", 4.0)  # two on one input are not a set
    case.complete("C1", 5.0)
    assert sorted(case.enabled_tasks()) == ["C2", "J"]
    [first] = [i.id for i in case.work_items() if case.net.tasks[i.task].id == "J"]
    case.complete("J", 6.0)
    assert sorted(case.enabled_tasks()) == ["C2"]  # the surplus `left` token waits
    assert case.tokens_by_condition() == {"left": 1, "archive": 1, "A->C2": 1}
    refuses(case, AlreadyDone, "complete", first, 7.0)
    case.complete("C2", 8.0)
    assert sorted(case.enabled_tasks()) == ["J"]
    assert case.tokens_by_condition() == {"left": 1, "right": 1, "archive": 1}
    case.complete("J", 9.0)
    assert case.status == "completed"
    assert case.enabled_tasks() == []
    events = case.events
    assert sum(type(e).__name__ == "WorkItemCompleted" for e in events) == 7
    replays(case)


def test_sets_need_not_arrive_in_order(new_case, replays):
    case = new_case(SPEC)
    for n, task in enumerate(["A", "C1", "C2", "B2"]):
        case.complete(task, float(n))
    assert case.tokens_by_condition() == {"left": 1, "right": 2, "A->B1": 1}
    case.complete("J", 5.0)
    assert sorted(case.enabled_tasks()) == ["B1"]
    assert case.tokens_by_condition() == {"right": 1, "archive": 1, "A->B1": 1}
    case.complete("B1", 6.0)
    assert sorted(case.enabled_tasks()) == ["J"]
    case.complete("J", 7.0)
    assert case.status == "completed"
    replays(case)
