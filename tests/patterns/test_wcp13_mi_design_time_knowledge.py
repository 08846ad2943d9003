"""WCP-13 Multiple Instances with a priori Design-Time Knowledge: a task runs as a number
of concurrent instances fixed when the process is designed, and the thread goes on only
when all of them are done. caseloop expresses it with a static multiple-instance task
with `min` = `max` = 3 and no `items`: enabling it creates three instances (the parent
item is hidden, the instances are offered), `collect` gathers their outputs in completion
order, and the task completes after the third. No instance can be added at run time.
"""

from engine import NotEnabled

SPEC = {
    "id": "wcp13",
    "tasks": [
        {"id": "A"},
        {"id": "Review", "multiple_instance": {"min": 3, "max": 3, "collect": "reviews"}},
        {"id": "C"},
    ],
    "flows": [
        {"from": "start", "to": "A"},
        {"from": "A", "to": "Review"},
        {"from": "Review", "to": "C"},
        {"from": "C", "to": "end"},
    ],
}


def instance_ids(c):
    return sorted(it.id for it in c.work_items() if it.parent >= 0)


def test_three_instances_all_awaited(new_case, refuses, replays):
    c = new_case(SPEC)
    c.complete("A", 1.0)
    ids = instance_ids(c)
    assert (len(ids), sorted(c.enabled_tasks())) == (3, ["Review"])
    assert c.tokens_by_condition() == {}  # the running task holds the thread
    refuses(c, NotEnabled, "complete", "Review", 2.0)  # three open: name one
    refuses(c, NotEnabled, "add_instance", "Review", 2.0)  # static: fixed at design time
    c.complete(ids[2], 2.0, output={"score": 3})
    c.complete(ids[0], 3.0, output={"score": 1})
    assert (instance_ids(c), sorted(c.enabled_tasks())) == ([ids[1]], ["Review"])
    refuses(c, NotEnabled, "complete", "C", 4.0)
    replays(c)
    c.complete(ids[1], 4.0, output={"score": 2})
    assert sorted(c.enabled_tasks()) == ["C"]
    assert c.data["reviews"] == [{"score": 3}, {"score": 1}, {"score": 2}]
    assert c.tokens_by_condition() == {"Review->C": 1}
    c.complete("C", 5.0)
    assert c.status == "completed"
    replays(c)
