"""WCP-5 Simple Merge: two or more alternative branches converge into one without
synchronization; the task after the merge runs once for whichever branch was taken.
caseloop expresses it with an XOR join (the default join) after an exclusive choice:
D is offered as soon as a token arrives on any of its inputs, and the branch not taken
is never offered.
"""

import pytest

from engine import NotEnabled

SPEC = {
    "id": "wcp05",
    "tasks": [{"id": "A", "split": "xor"}, {"id": "B"}, {"id": "C"}, {"id": "D", "join": "xor"}],
    "flows": [
        {"from": "start", "to": "A"},
        {"from": "A", "to": "B", "when": "path == 'b'"},
        {"from": "A", "to": "C"},
        {"from": "B", "to": "D"},
        {"from": "C", "to": "D"},
        {"from": "D", "to": "end"},
    ],
}


@pytest.mark.parametrize(("path", "taken", "skipped"), [("b", "B", "C"), ("c", "C", "B")])
def test_merge_continues_with_the_branch_taken(new_case, refuses, replays, path, taken, skipped):
    c = new_case(SPEC, {"path": path})
    c.complete("A", 1.0)
    assert sorted(c.enabled_tasks()) == [taken]
    refuses(c, NotEnabled, "complete", skipped, 2.0)
    refuses(c, NotEnabled, "complete", "D", 2.0)
    c.complete(taken, 3.0)
    assert sorted(c.enabled_tasks()) == ["D"]
    assert c.tokens_by_condition() == {f"{taken}->D": 1}
    c.complete("D", 4.0)
    assert (c.status, c.tokens_by_condition()) == ("completed", {"end": 1})
    replays(c)
