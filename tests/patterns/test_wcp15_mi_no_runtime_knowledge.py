"""WCP-15 Multiple Instances without a priori Run-Time Knowledge: the number of instances
is not known even when the task starts; new instances may be added while it runs, and
the thread goes on when every instance created is done. caseloop expresses it with
`creation: dynamic`: the task starts with `min` instances, `Case.add_instance` adds one
(with its data) while the task runs, up to `max`; the task completes when all instances
created so far have completed.
"""

from engine import NotEnabled

SPEC = {
    "id": "wcp15",
    "tasks": [
        {"id": "A"},
        {"id": "Quote", "multiple_instance": {
            "min": 1, "max": 3, "creation": "dynamic", "item_field": "supplier"}},
        {"id": "C"},
    ],
    "flows": [
        {"from": "start", "to": "A"},
        {"from": "A", "to": "Quote"},
        {"from": "Quote", "to": "C"},
        {"from": "C", "to": "end"},
    ],
}


def instances(c):
    return sorted((it.id, (it.data or {}).get("supplier")) for it in c.work_items()
                  if it.parent >= 0)


def test_instances_added_while_running_up_to_max(new_case, refuses, replays):
    c = new_case(SPEC)
    c.complete("A", 1.0)
    assert [s for _, s in instances(c)] == [None]  # min instances to begin with
    c.add_instance("Quote", 2.0, "acme")
    (first, _), _ = instances(c)
    c.complete(first, 3.0)  # one done, one open: the task still runs
    assert (sorted(c.enabled_tasks()), [s for _, s in instances(c)]) == (["Quote"], ["acme"])
    c.add_instance("Quote", 4.0, "globex")  # third instance: the maximum
    refuses(c, NotEnabled, "add_instance", "Quote", 5.0, "initech")
    assert [s for _, s in instances(c)] == ["acme", "globex"]
    replays(c)
    for i, (iid, _) in enumerate(instances(c)):
        c.complete(iid, 6.0 + i)
    assert (sorted(c.enabled_tasks()), c.tokens_by_condition()) == (["C"], {"Quote->C": 1})
    refuses(c, NotEnabled, "add_instance", "Quote", 9.0, "late")  # no longer running
    replays(c)


def test_no_instances_can_be_added_before_the_task_runs(new_case, refuses):
    c = new_case(SPEC)
    refuses(c, NotEnabled, "add_instance", "Quote", 1.0, "acme")
