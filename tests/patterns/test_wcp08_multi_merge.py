"""WCP-8 Multi-Merge: several branches converge without synchronization, and the thread
after the merge runs once for every branch that arrives. caseloop expresses it with an XOR
join after a parallel split: each arriving token offers D on its own, so D runs once per
branch. The threads never meet again, so the net uses implicit termination (WCP-11): the
case completes when both runs of D are done.
"""

from engine import AlreadyDone

SPEC = {
    "id": "wcp08",
    "completion": "implicit",
    "conditions": [{"id": "done"}],
    "tasks": [{"id": "A", "split": "and"}, {"id": "B"}, {"id": "C"}, {"id": "D", "join": "xor"}],
    "flows": [
        {"from": "start", "to": "A"},
        {"from": "A", "to": "B"},
        {"from": "A", "to": "C"},
        {"from": "B", "to": "D"},
        {"from": "C", "to": "D"},
        {"from": "D", "to": "done"},
    ],
}


def d_items(c):
    return [it for it in c.work_items() if c.net.tasks[it.task].id == "D"]


def test_downstream_task_runs_once_per_arriving_branch(new_case, refuses, replays):
    c = new_case(SPEC)
    c.complete("A", 1.0)
    c.complete("B", 2.0)
    assert sorted(c.enabled_tasks()) == ["C", "D"]
    first = c.complete("D", 3.0)
    assert sorted(c.enabled_tasks()) == ["C"]
    assert c.tokens_by_condition() == {"A->C": 1, "done": 1}
    # Nothing has arrived for a second run yet; D did run, so the refusal is 3004.
    refuses(c, AlreadyDone, "complete", "D", 4.0)
    c.complete("C", 5.0)
    assert sorted(c.enabled_tasks()) == ["D"]
    assert d_items(c)[0].id != first[0].item  # a new work item, a second run
    replays(c)
    c.complete("D", 6.0)
    assert c.status == "completed"
    replays(c)


def test_both_branches_arrived_before_the_merge_ran(new_case, replays):
    c = new_case(SPEC)
    c.complete("A", 1.0)
    c.complete("B", 2.0)
    c.complete("C", 3.0)
    assert c.tokens_by_condition() == {"B->D": 1, "C->D": 1}
    assert len(d_items(c)) == 1  # one item at a time, one per token over time
    c.complete("D", 4.0)
    assert (sorted(c.enabled_tasks()), c.status) == (["D"], "active")
    assert c.tokens_by_condition() == {"C->D": 1, "done": 1}
    c.complete("D", 5.0)
    assert c.status == "completed"
    replays(c)
