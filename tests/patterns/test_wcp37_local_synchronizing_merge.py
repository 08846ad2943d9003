"""WCP-37 Local Synchronizing Merge (acyclic OR-join): branches chosen by an earlier
multi-choice converge; the join waits for every branch that was actually started
and passes control on exactly once, and it can decide this from local information
(which inputs can still receive a token). In caseloop A is an `or` split (B and/or C
by the data) and D an `or` join: D is enabled when it holds a token and no token or
running work item can still reach one of its empty inputs.
"""

from engine import NotEnabled

SPEC = {
    "id": "wcp37",
    "tasks": [
        {"id": "A", "split": "or"}, {"id": "B"}, {"id": "C"}, {"id": "D", "join": "or"},
    ],
    "flows": [
        {"from": "start", "to": "A"},
        {"from": "A", "to": "B", "when": "b", "default": True},
        {"from": "A", "to": "C", "when": "c"},
        {"from": "B", "to": "D"}, {"from": "C", "to": "D"}, {"from": "D", "to": "end"},
    ],
}


def test_waits_for_every_chosen_branch(new_case, refuses, replays):
    case = new_case(SPEC, {"b": True, "c": True})
    case.complete("A", 1.0)
    assert sorted(case.enabled_tasks()) == ["B", "C"]
    case.start("C", 2.0)  # a running item also counts as "can still arrive"
    case.complete("B", 3.0)
    assert sorted(case.enabled_tasks()) == ["C"]
    assert case.tokens_by_condition() == {"B->D": 1}
    refuses(case, NotEnabled, "complete", "D", 4.0)
    case.complete("C", 5.0)
    assert sorted(case.enabled_tasks()) == ["D"]
    assert case.tokens_by_condition() == {"B->D": 1, "C->D": 1}
    case.complete("D", 6.0)
    assert (case.status, case.tokens_by_condition()) == ("completed", {"end": 1})
    assert case.enabled_tasks() == []
    replays(case)


def test_fires_at_once_when_only_one_branch_was_chosen(new_case, replays):
    case = new_case(SPEC, {"b": False, "c": True})
    case.complete("A", 1.0)
    assert sorted(case.enabled_tasks()) == ["C"]
    case.complete("C", 2.0)
    assert sorted(case.enabled_tasks()) == ["D"]
    assert case.tokens_by_condition() == {"C->D": 1}
    replays(case)


def test_default_branch_when_no_guard_holds(new_case, replays):
    case = new_case(SPEC, {"b": False, "c": False})
    case.complete("A", 1.0)
    assert sorted(case.enabled_tasks()) == ["B"]
    case.complete("B", 2.0)
    assert sorted(case.enabled_tasks()) == ["D"]
    case.complete("D", 3.0)
    assert case.status == "completed"
    replays(case)
