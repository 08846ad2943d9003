"""WCP-38 General Synchronizing Merge: an OR-join in an unstructured net with a
loop. The join cannot count the branches it waits for; it must wait as long as a
thread can still reach one of its empty inputs, however long that takes, and fire as
soon as none can. In caseloop D is an `or` join (YAWL semantics): the C branch may
loop through X back to C any number of times, and D waits while any token or running
item lies on that loop, firing the moment the loop is left or its thread dies.
"""

from engine import NotEnabled

SPEC = {
    "id": "wcp38",
    "tasks": [
        {"id": "A", "split": "or"}, {"id": "B"}, {"id": "C"},
        {"id": "X", "split": "xor"}, {"id": "D", "join": "or"},
    ],
    "flows": [
        {"from": "start", "to": "A"},
        {"from": "A", "to": "B", "when": "b", "default": True},
        {"from": "A", "to": "C", "when": "c"},
        {"from": "B", "to": "D"}, {"from": "C", "to": "X"},
        {"from": "X", "to": "C", "when": "result == 'again'"}, {"from": "X", "to": "D"},
        {"from": "D", "to": "end"},
    ],
}


def test_waits_while_the_loop_can_still_deliver(new_case, refuses, replays):
    case = new_case(SPEC, {"b": True, "c": True})
    case.complete("A", 1.0)
    case.complete("B", 2.0)
    for n in range(3):  # three rounds of the loop: D keeps waiting
        assert sorted(case.enabled_tasks()) == ["C"]
        case.complete("C", 3.0 + n)
        assert sorted(case.enabled_tasks()) == ["X"]
        assert case.tokens_by_condition() == {"B->D": 1, "C->X": 1}
        refuses(case, NotEnabled, "complete", "D", 3.5 + n)
        case.complete("X", 3.7 + n, result="again")
    assert case.tokens_by_condition() == {"B->D": 1, "X->C": 1}
    case.complete("C", 7.0)
    case.complete("X", 8.0)  # leaves the loop: nothing can reach D any more
    assert sorted(case.enabled_tasks()) == ["D"]
    assert case.tokens_by_condition() == {"B->D": 1, "X->D": 1}
    case.complete("D", 9.0)
    assert (case.status, case.tokens_by_condition()) == ("completed", {"end": 1})
    replays(case)


def test_fires_as_soon_as_the_loop_thread_dies(new_case, replays):
    case = new_case(SPEC, {"b": True, "c": True})
    case.complete("A", 1.0)
    case.complete("B", 2.0)
    case.complete("C", 3.0)
    case.complete("X", 4.0, result="again")
    assert sorted(case.enabled_tasks()) == ["C"]
    case.cancel_item("C", 5.0)  # withdraws the offered C with its token
    assert sorted(case.enabled_tasks()) == ["D"]
    assert case.tokens_by_condition() == {"B->D": 1}
    case.complete("D", 6.0)
    assert case.status == "completed"
    replays(case)


def test_no_waiting_when_the_loop_branch_was_not_chosen(new_case, replays):
    case = new_case(SPEC, {"b": True, "c": False})
    case.complete("A", 1.0)
    assert sorted(case.enabled_tasks()) == ["B"]
    case.complete("B", 2.0)
    assert sorted(case.enabled_tasks()) == ["D"]
    replays(case)


def test_loop_branch_alone_fires_on_leaving(new_case, replays):
    case = new_case(SPEC, {"b": False, "c": True})
    case.complete("A", 1.0)
    case.complete("C", 2.0)
    case.complete("X", 3.0, result="again")
    case.complete("C", 4.0)
    assert sorted(case.enabled_tasks()) == ["X"]
    case.complete("X", 5.0)
    assert sorted(case.enabled_tasks()) == ["D"]
    assert case.tokens_by_condition() == {"X->D": 1}
    replays(case)
