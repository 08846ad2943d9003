"""WCP-31 Blocking Partial Join: like the structured partial join (n of m branches
pass control on, the rest are absorbed), but arrivals that belong to a later round
are blocked until the join has reset, i.e. until every branch of the current round
has arrived. In caseloop J is an empty task with `join: partial`, `threshold: 2`;
E may loop back to A so that a second round overtakes the first. The case ends when
E exits, cancelling any branch still running (`completion: cancel_remaining`).
"""

SPEC = {
    "id": "wcp31",
    "completion": "cancel_remaining",
    "tasks": [
        {"id": "A", "join": "xor"}, {"id": "B"}, {"id": "C"}, {"id": "F"},
        {"id": "J", "kind": "empty", "join": "partial", "threshold": 2},
        {"id": "E", "split": "xor"},
    ],
    "flows": [
        {"from": "start", "to": "A"}, {"from": "A", "to": "B"}, {"from": "A", "to": "C"},
        {"from": "A", "to": "F"}, {"from": "B", "to": "J"}, {"from": "C", "to": "J"},
        {"from": "F", "to": "J"}, {"from": "J", "to": "E"},
        {"from": "E", "to": "A", "when": "result == 'again'"}, {"from": "E", "to": "end"},
    ],
}


def fired(case):
    return sum(type(e).__name__ == "TaskFired" for e in case.events)


def test_next_round_blocked_until_reset(new_case, replays):
    case = new_case(SPEC)
    case.complete("A", 1.0)
    case.complete("B", 2.0)
    case.complete("C", 3.0)
    assert (fired(case), sorted(case.enabled_tasks())) == (1, ["E", "F"])
    case.complete("E", 4.0, result="again")
    case.complete("A", 5.0)
    assert case.tokens_by_condition() == {"A->B": 1, "A->C": 1, "A->F": 2}
    case.complete("B", 6.0)
    case.complete("C", 7.0)  # two arrivals of round two: blocked, round one's F is due
    assert sorted(case.enabled_tasks()) == ["F"]
    assert case.tokens_by_condition() == {"A->F": 2, "B->J": 1, "C->J": 1}
    assert fired(case) == 1
    case.complete("F", 8.0)  # round one complete: reset, the blocked pair passes
    assert (fired(case), sorted(case.enabled_tasks())) == (2, ["E", "F"])
    assert case.tokens_by_condition() == {"A->F": 1, "J->E": 1}
    case.complete("F", 9.0)  # round two's straggler: absorbed
    assert case.tokens_by_condition() == {"J->E": 1}
    case.complete("E", 10.0)
    assert (case.status, case.tokens_by_condition()) == ("completed", {"end": 1})
    assert fired(case) == 2
    replays(case)


def test_one_blocked_arrival_does_not_pass_alone(new_case, replays):
    case = new_case(SPEC)
    for n, task in enumerate(["A", "B", "F"]):
        case.complete(task, float(n))
    case.complete("E", 3.0, result="again")
    case.complete("A", 4.0)
    case.complete("F", 5.0)  # round two's F blocked: F already arrived in round one
    assert case.tokens_by_condition() == {"A->B": 1, "A->C": 2, "F->J": 1}
    case.complete("C", 6.0)  # round one's C: reset; the blocked F alone is not enough
    assert sorted(case.enabled_tasks()) == ["B", "C"]
    assert case.tokens_by_condition() == {"A->B": 1, "A->C": 1, "F->J": 1}
    assert fired(case) == 1
    case.complete("B", 7.0)
    assert (fired(case), sorted(case.enabled_tasks())) == (2, ["C", "E"])
    replays(case)
