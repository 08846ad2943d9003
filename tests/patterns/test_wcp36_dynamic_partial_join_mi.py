"""WCP-36 Dynamic Partial Join for Multiple Instances: instances of a task are
created while it runs, their number unknown in advance; once a completion condition
holds the next task is triggered, later completions have no effect and no more
instances can be created. In caseloop `Interview` has `creation: dynamic` (start
with `min` instances, add more with `Case.add_instance`, up to `max`) and the
completion condition is a count, `threshold: 3`. When it is reached the instances
still open are withdrawn (caseloop cancels them rather than letting them run on
inconsequentially) and `Hire` is enabled.
"""

from engine import AlreadyDone, NotEnabled

SPEC = {
    "id": "wcp36",
    "tasks": [
        {"id": "Interview", "multiple_instance": {
            "min": 2, "max": 5, "threshold": 3, "creation": "dynamic",
            "item_field": "candidate", "collect": "scores"}},
        {"id": "Hire"},
    ],
    "flows": [
        {"from": "start", "to": "Interview"}, {"from": "Interview", "to": "Hire"},
        {"from": "Hire", "to": "end"},
    ],
}


def instances(case):
    return sorted(i.id for i in case.work_items() if i.parent >= 0)


def test_instances_added_while_running_until_threshold(new_case, refuses, replays):
    case = new_case(SPEC)
    a, b = instances(case)
    case.complete(a, 1.0, output={"score": 1})
    case.add_instance("Interview", 2.0, "carol")
    case.add_instance("Interview", 3.0, "dave")
    c, d = instances(case)[1:]
    assert [i.data for i in case.work_items() if i.id in (c, d)] == [
        {"candidate": "carol"}, {"candidate": "dave"}]
    case.complete(c, 4.0, output={"score": 3})
    assert sorted(case.enabled_tasks()) == ["Interview"]
    refuses(case, NotEnabled, "complete", "Hire", 5.0)
    case.complete(d, 6.0, output={"score": 4})  # third completion: condition holds
    assert instances(case) == []
    assert sorted(case.enabled_tasks()) == ["Hire"]
    assert case.data["scores"] == [{"score": 1}, {"score": 3}, {"score": 4}]
    assert case.tokens_by_condition() == {"Interview->Hire": 1}
    refuses(case, NotEnabled, "add_instance", "Interview", 7.0, "eve")
    refuses(case, AlreadyDone, "complete", b, 7.0)
    case.complete("Hire", 8.0)
    assert (case.status, case.tokens_by_condition()) == ("completed", {"end": 1})
    replays(case)


def test_no_more_than_max_instances(new_case, refuses, replays):
    case = new_case(SPEC)
    for n in range(3):
        case.add_instance("Interview", float(n), f"c{n}")
    assert len(instances(case)) == 5
    refuses(case, NotEnabled, "add_instance", "Interview", 4.0, "c3")
    for n, item in enumerate(instances(case)[:2]):
        case.complete(item, 5.0 + n)
    assert sorted(case.enabled_tasks()) == ["Interview"]
    replays(case)
