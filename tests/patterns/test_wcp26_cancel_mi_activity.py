"""WCP-26 Cancel Multiple Instance Activity: a multiple-instance task can be
cancelled as a whole at any time; instances still running are withdrawn, instances
already completed stay completed, and the case carries on. In caseloop the MI task
`Review` (three static instances) lies in the cancellation region of `StopReviews`,
offered as a deferred choice on `waiting`; completing it cancels the running MI task
and every open instance. If all reviews finish first, `Join` fires and withdraws
`StopReviews`.
"""

from engine import AlreadyDone, NotEnabled

SPEC = {
    "id": "wcp26",
    "conditions": [{"id": "waiting"}, {"id": "outcome"}],
    "tasks": [
        {"id": "A"},
        {"id": "Review", "multiple_instance": {"min": 3, "collect": "reviews"}},
        {"id": "StopReviews", "cancels": ["Review", "Review->Join"]},
        {"id": "Join", "kind": "empty", "join": "and"},
        {"id": "Decide"},
    ],
    "flows": [
        {"from": "start", "to": "A"}, {"from": "A", "to": "Review"},
        {"from": "A", "to": "waiting"}, {"from": "Review", "to": "Join"},
        {"from": "waiting", "to": "Join"}, {"from": "waiting", "to": "StopReviews"},
        {"from": "Join", "to": "outcome"}, {"from": "StopReviews", "to": "outcome"},
        {"from": "outcome", "to": "Decide"}, {"from": "Decide", "to": "end"},
    ],
}


def instances(case):
    return sorted(i.id for i in case.work_items() if i.parent >= 0)


def test_cancelling_the_mi_task_withdraws_open_instances(new_case, refuses, replays):
    case = new_case(SPEC)
    case.complete("A", 1.0)
    assert sorted(case.enabled_tasks()) == ["Review", "StopReviews"]
    first, second, third = instances(case)
    case.complete(first, 2.0, output={"score": 4})
    case.start(second, 3.0)
    assert instances(case) == [second, third]
    refuses(case, NotEnabled, "complete", "Review", 4.0)  # the MI parent is not a work item
    case.complete("StopReviews", 5.0)
    assert instances(case) == []
    assert case.work_items()[0].task == case.net.task_index["Decide"]
    assert sorted(case.enabled_tasks()) == ["Decide"]
    assert case.tokens_by_condition() == {"outcome": 1}
    assert "reviews" not in case.data
    refuses(case, AlreadyDone, "complete", first, 6.0)
    refuses(case, AlreadyDone, "complete", second, 6.0)
    case.complete("Decide", 7.0)
    assert (case.status, case.tokens_by_condition()) == ("completed", {"end": 1})
    replays(case)


def test_all_instances_done_withdraws_the_cancel(new_case, refuses, replays):
    case = new_case(SPEC)
    case.complete("A", 1.0)
    for n, item in enumerate(instances(case)):
        case.complete(item, 2.0 + n, output={"score": n})
    assert case.data["reviews"] == [{"score": 0}, {"score": 1}, {"score": 2}]
    assert sorted(case.enabled_tasks()) == ["Decide"]
    assert case.tokens_by_condition() == {"outcome": 1}
    refuses(case, NotEnabled, "complete", "StopReviews", 9.0)
    case.complete("Decide", 10.0)
    assert case.status == "completed"
    replays(case)
