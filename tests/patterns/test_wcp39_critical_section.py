"""WCP-39 Critical Section: two or more parts of a case that otherwise run
concurrently each contain a critical section, and at most one critical section may
be active at any time. caseloop expresses the mutual exclusion with a `mutex`
condition marked by the parallel split: each critical task (B2, C2) AND-joins its
branch with `mutex` and puts the mutex token back when it completes. Both are
offered together (a deferred choice); starting one withdraws the other until the
first has finished.
"""

from engine import NotEnabled

SPEC = {
    "id": "wcp39",
    "conditions": [{"id": "mutex"}],
    "tasks": [
        {"id": "A"}, {"id": "B1"}, {"id": "C1"},
        {"id": "B2", "join": "and"}, {"id": "C2", "join": "and"},
        {"id": "Close", "kind": "empty", "join": "and"},
    ],
    "flows": [
        {"from": "start", "to": "A"}, {"from": "A", "to": "B1"}, {"from": "A", "to": "C1"},
        {"from": "A", "to": "mutex"},
        {"from": "B1", "to": "B2"}, {"from": "C1", "to": "C2"},
        {"from": "mutex", "to": "B2"}, {"from": "mutex", "to": "C2"},
        {"from": "B2", "to": "mutex"}, {"from": "C2", "to": "mutex"},
        {"from": "B2", "to": "Close"}, {"from": "C2", "to": "Close"},
        {"from": "mutex", "to": "Close"}, {"from": "Close", "to": "end"},
    ],
}


def test_one_critical_section_at_a_time(new_case, refuses, replays):
    case = new_case(SPEC)
    case.complete("A", 1.0)
    case.complete("B1", 2.0)
    case.complete("C1", 3.0)
    assert sorted(case.enabled_tasks()) == ["B2", "C2"]
    assert case.tokens_by_condition() == {"mutex": 1, "B1->B2": 1, "C1->C2": 1}
    case.start("C2", 4.0)
    assert sorted(case.enabled_tasks()) == ["C2"]
    assert case.tokens_by_condition() == {"B1->B2": 1}
    refuses(case, NotEnabled, "start", "B2", 5.0)
    refuses(case, NotEnabled, "complete", "B2", 5.0)
    case.complete("C2", 6.0)
    assert sorted(case.enabled_tasks()) == ["B2"]
    assert case.tokens_by_condition() == {"mutex": 1, "B1->B2": 1, "C2->Close": 1}
    case.complete("B2", 7.0)
    assert (case.status, case.tokens_by_condition()) == ("completed", {"end": 1})
    replays(case)


def test_non_critical_work_runs_alongside(new_case, refuses, replays):
    case = new_case(SPEC)
    case.complete("A", 1.0)
    case.complete("B1", 2.0)
    case.start("B2", 3.0)  # in the critical section
    assert sorted(case.enabled_tasks()) == ["B2", "C1"]
    case.complete("C1", 4.0)  # C's non-critical part is not blocked
    assert sorted(case.enabled_tasks()) == ["B2"]
    assert case.tokens_by_condition() == {"C1->C2": 1}
    refuses(case, NotEnabled, "start", "C2", 5.0)
    case.complete("B2", 6.0)
    assert sorted(case.enabled_tasks()) == ["C2"]
    case.complete("C2", 7.0)
    assert case.status == "completed"
    replays(case)
