"""WCP-12 Multiple Instances without Synchronization: within one case a task is started
as several independent instances, and the thread goes on without waiting for them; they
run to completion on their own. caseloop expresses it with a multiple-instance task of
`threshold: 0`: when enabled it creates one instance per element of `items` and completes
at once, so C is offered while the instances are still open; the case does not complete
before its last instance is done.
"""

from engine import NotEnabled

SPEC = {
    "id": "wcp12",
    "tasks": [
        {"id": "A"},
        {"id": "Notify", "multiple_instance": {
            "min": 0, "threshold": 0, "items": "contacts", "item_field": "contact"}},
        {"id": "C"},
    ],
    "flows": [
        {"from": "start", "to": "A"},
        {"from": "A", "to": "Notify"},
        {"from": "Notify", "to": "C"},
        {"from": "C", "to": "end"},
    ],
}


def instances(c):
    return sorted((it.id, it.data["contact"]) for it in c.work_items() if it.parent >= 0)


def test_instances_run_on_while_the_thread_continues(new_case, refuses, replays):
    c = new_case(SPEC, {"contacts": ["ann", "bob"]})
    c.complete("A", 1.0)
    assert sorted(c.enabled_tasks()) == ["C", "Notify"]  # not waiting for the instances
    assert [who for _, who in instances(c)] == ["ann", "bob"]
    assert c.tokens_by_condition() == {"Notify->C": 1}
    refuses(c, NotEnabled, "complete", "Notify", 2.0)  # two instances open: name one
    (ann, _), (bob, _) = instances(c)
    c.complete(ann, 2.0)
    c.complete("C", 3.0)
    assert (c.status, sorted(c.enabled_tasks())) == ("active", ["Notify"])  # bob still open
    assert c.tokens_by_condition() == {"end": 1}
    replays(c)
    c.complete(bob, 4.0)
    assert (c.status, c.enabled_tasks()) == ("completed", [])
    replays(c)


def test_no_instances_when_the_list_is_empty(new_case, replays):
    c = new_case(SPEC, {"contacts": []})
    c.complete("A", 1.0)
    assert (sorted(c.enabled_tasks()), instances(c)) == (["C"], [])
    c.complete("C", 2.0)
    assert c.status == "completed"
    replays(c)
