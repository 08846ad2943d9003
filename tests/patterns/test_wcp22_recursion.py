"""WCP-22 Recursion: a task is implemented by a sub-process that is the very process
it belongs to, so a case can invoke itself, to any depth, until a base case stops it.
In caseloop `Recurse` is a composite task whose `workflow` is this workflow's own id.
The test plays the runtime: when a `Recurse` work item is enabled it starts a child
Case of the same net (with `n - 1`), drives it to completion and completes the
parent item with the child's data; the output mapping keeps only the child's `fact`.
The workflow computes n! this way.
"""

import pytest

from engine import AlreadyDone, CaseClosed, NotEnabled, compile_document

SPEC = {
    "id": "wcp22",
    "tasks": [
        {"id": "Check", "kind": "empty", "split": "xor"},
        {"id": "Base", "kind": "empty", "output": {"fact": "1"}},
        {"id": "Recurse", "kind": "composite", "workflow": "wcp22",
         "output": {"fact": "fact"}},
        {"id": "Multiply", "kind": "empty", "output": {"fact": "fact * n"}},
    ],
    "flows": [
        {"from": "start", "to": "Check"},
        {"from": "Check", "to": "Base", "when": "n <= 1"},
        {"from": "Check", "to": "Recurse"},
        {"from": "Recurse", "to": "Multiply"}, {"from": "Base", "to": "end"},
        {"from": "Multiply", "to": "end"},
    ],
}
NET = compile_document(SPEC)


def run(new_case, replays, n, depths):
    """Run one level; returns the completed case. `depths` records the call stack."""
    case = new_case(NET, {"n": n})
    depths.append(n)
    if case.status == "completed":  # base case: Check and Base fired at once
        assert case.data == {"n": n, "fact": 1}
        return case
    assert (case.status, sorted(case.enabled_tasks())) == ("active", ["Recurse"])
    assert case.tokens_by_condition() == {"Check->Recurse": 1}
    assert case.work_items()[0].task == NET.task_index["Recurse"]
    child = run(new_case, replays, n - 1, depths)
    case.complete("Recurse", float(n), output=child.data)
    assert case.status == "completed"
    assert case.data == {"n": n, "fact": child.data["fact"] * n}
    assert case.tokens_by_condition() == {"end": 1}
    replays(case)
    return case


@pytest.mark.parametrize(("n", "fact"), [(1, 1), (2, 2), (4, 24), (6, 720)])
def test_recursive_invocation_computes_factorial(new_case, replays, n, fact):
    depths = []
    top = run(new_case, replays, n, depths)
    assert top.data["fact"] == fact
    assert depths == list(range(n, 0, -1))


def test_parent_waits_for_its_child(new_case, refuses, replays):
    parent = new_case(NET, {"n": 3})
    child = new_case(NET, {"n": 2})
    refuses(parent, NotEnabled, "complete", "Base", 1.0)  # recursion was chosen
    refuses(parent, AlreadyDone, "complete", "Check", 1.0)
    grandchild = new_case(NET, {"n": 1})
    assert grandchild.status == "completed"
    child.complete("Recurse", 2.0, output=grandchild.data)
    assert sorted(parent.enabled_tasks()) == ["Recurse"]  # still waiting on its own child
    parent.complete("Recurse", 3.0, output=child.data)
    assert (parent.status, parent.data["fact"]) == ("completed", 6)
    refuses(parent, CaseClosed, "complete", "Recurse", 4.0)
    replays(parent)
