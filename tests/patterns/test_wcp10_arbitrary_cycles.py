"""WCP-10 Arbitrary Cycles: a process may repeat one or more tasks through a cycle that
is not a structured block, e.g. one with several entry or exit points. caseloop allows
any cycle in the flow graph: here B and C form a loop entered either at B or at C (the
XOR split of A), left from C (its default flow) and repeated while C's result says
"rework". Each pass offers a new work item for the task.
"""

import pytest

SPEC = {
    "id": "wcp10",
    "tasks": [{"id": "A", "split": "xor"}, {"id": "B"}, {"id": "C", "split": "xor"}],
    "flows": [
        {"from": "start", "to": "A"},
        {"from": "A", "to": "B", "when": "entry == 'b'"},
        {"from": "A", "to": "C"},
        {"from": "B", "to": "C"},
        {"from": "C", "to": "B", "when": "result == 'rework'"},
        {"from": "C", "to": "end"},
    ],
}


def trace(c):
    """Completes whatever is offered, reworking at C twice, and lists what ran."""
    ran, reworks, at = [], 2, 1.0
    while c.status == "active":
        (task,) = c.enabled_tasks()
        result = None
        if task == "C" and reworks:
            result, reworks = "rework", reworks - 1
        c.complete(task, at, result=result)
        ran.append(task)
        at += 1.0
    return ran


@pytest.mark.parametrize(("entry", "ran"), [
    ("b", ["A", "B", "C", "B", "C", "B", "C"]),
    ("c", ["A", "C", "B", "C", "B", "C"]),
])
def test_the_cycle_is_entered_at_either_point(new_case, replays, entry, ran):
    c = new_case(SPEC, {"entry": entry})
    assert trace(c) == ran
    assert (c.status, c.tokens_by_condition()) == ("completed", {"end": 1})
    replays(c)


def test_each_pass_is_a_new_work_item(new_case, replays):
    c = new_case(SPEC, {"entry": "c"})
    c.complete("A", 1.0)
    first = c.work_items()[0].id
    c.complete("C", 2.0, result="rework")
    assert (sorted(c.enabled_tasks()), c.tokens_by_condition()) == (["B"], {"C->B": 1})
    c.complete("B", 3.0)
    assert (sorted(c.enabled_tasks()), c.tokens_by_condition()) == (["C"], {"B->C": 1})
    assert c.work_items()[0].id > first
    replays(c)
