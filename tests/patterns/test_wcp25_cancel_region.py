"""WCP-25 Cancel Region: a set of tasks, not necessarily a connected fragment, is
withdrawn as a whole while the rest of the case runs on. In caseloop a task carries
`cancels: [task and condition ids]`; completing it cancels the open work items of
those tasks (offered or started) and clears those conditions. Here `Abort` (offered
alongside the region as a deferred choice on `waiting`) cancels the region B, C with
the conditions between them, while D, outside the region, is untouched; `Join` fires
only if the region finishes first, which withdraws `Abort`.
"""

from engine import NotEnabled

SPEC = {
    "id": "wcp25",
    "conditions": [{"id": "waiting"}, {"id": "outcome"}],
    "tasks": [
        {"id": "A"}, {"id": "B"}, {"id": "C"}, {"id": "D"},
        {"id": "Abort", "cancels": ["B", "C", "A->B", "B->C", "C->Join"]},
        {"id": "Join", "kind": "empty", "join": "and"},
        {"id": "Close", "kind": "empty", "join": "and"},
    ],
    "flows": [
        {"from": "start", "to": "A"}, {"from": "A", "to": "B"}, {"from": "A", "to": "waiting"},
        {"from": "A", "to": "D"}, {"from": "B", "to": "C"}, {"from": "C", "to": "Join"},
        {"from": "waiting", "to": "Join"}, {"from": "waiting", "to": "Abort"},
        {"from": "Abort", "to": "outcome"}, {"from": "Join", "to": "outcome"},
        {"from": "outcome", "to": "Close"}, {"from": "D", "to": "Close"},
        {"from": "Close", "to": "end"},
    ],
}


def test_abort_cancels_the_region_only(new_case, refuses, replays):
    case = new_case(SPEC)
    case.complete("A", 1.0)
    assert sorted(case.enabled_tasks()) == ["Abort", "B", "D"]
    case.complete("B", 2.0)
    case.start("C", 3.0)
    assert sorted(case.enabled_tasks()) == ["Abort", "C", "D"]
    assert case.tokens_by_condition() == {"waiting": 1, "A->D": 1}
    events = case.complete("Abort", 4.0)
    cancelled = [e for e in events if type(e).__name__ == "WorkItemCancelled"]
    assert [e.reason for e in cancelled] == ["cancelled by Abort"]
    assert sorted(case.enabled_tasks()) == ["D"]
    assert case.tokens_by_condition() == {"outcome": 1, "A->D": 1}
    assert case.status == "active"
    refuses(case, NotEnabled, "complete", "C", 5.0)
    refuses(case, NotEnabled, "start", "Join", 5.0)
    case.complete("D", 6.0)
    assert case.status == "completed"
    assert case.tokens_by_condition() == {"end": 1}
    assert case.enabled_tasks() == []
    replays(case)


def test_offered_region_item_is_withdrawn_with_its_token(new_case, replays):
    case = new_case(SPEC)
    case.complete("A", 1.0)
    case.complete("Abort", 2.0)  # B only offered: withdrawn together with A->B
    assert sorted(case.enabled_tasks()) == ["D"]
    assert case.tokens_by_condition() == {"outcome": 1, "A->D": 1}
    replays(case)


def test_region_finishing_first_withdraws_abort(new_case, refuses, replays):
    case = new_case(SPEC)
    for step, task in enumerate(["A", "B", "C"]):
        case.complete(task, float(step))
    assert sorted(case.enabled_tasks()) == ["D"]
    assert case.tokens_by_condition() == {"outcome": 1, "A->D": 1}
    refuses(case, NotEnabled, "complete", "Abort", 9.0)
    case.complete("D", 10.0)
    assert (case.status, case.tokens_by_condition()) == ("completed", {"end": 1})
    replays(case)
