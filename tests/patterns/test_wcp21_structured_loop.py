"""WCP-21 Structured Loop: a task or sub-process repeats while (pre-test) or until
(post-test) a condition holds, in a loop with one entry and one exit. caseloop expresses
the pre-test loop with an empty routing task whose XOR split tests the condition before
each pass (here: at most three attempts, counted by Work's output mapping), and the
post-test loop with an XOR split after the body that routes back to its start.
"""

import pytest

from engine import NotEnabled

WHILE = {
    "id": "wcp21-while",
    "tasks": [
        {"id": "Check", "kind": "empty", "split": "xor"},
        {"id": "Work", "output": {"attempts": "attempts + 1"}},
        {"id": "Done"},
    ],
    "flows": [
        {"from": "start", "to": "Check"},
        {"from": "Check", "to": "Work", "when": "attempts < 3"},
        {"from": "Check", "to": "Done"},
        {"from": "Work", "to": "Check"},
        {"from": "Done", "to": "end"},
    ],
}

REPEAT = {
    "id": "wcp21-repeat",
    "tasks": [{"id": "Draft"}, {"id": "Review", "split": "xor"}],
    "flows": [
        {"from": "start", "to": "Draft"},
        {"from": "Draft", "to": "Review"},
        {"from": "Review", "to": "Draft", "when": "result == 'revise'"},
        {"from": "Review", "to": "end"},
    ],
}


@pytest.mark.parametrize(("attempts", "passes"), [(0, 3), (2, 1), (3, 0)])
def test_while_loop_tests_before_each_pass(new_case, replays, attempts, passes):
    c = new_case(WHILE, {"attempts": attempts})
    for i in range(passes):
        assert sorted(c.enabled_tasks()) == ["Work"]
        assert c.tokens_by_condition() == {"Check->Work": 1}
        c.complete("Work", 1.0 + i)
    assert (sorted(c.enabled_tasks()), c.data["attempts"]) == (["Done"], 3)
    replays(c)
    c.complete("Done", 9.0)
    assert c.status == "completed"


def test_repeat_loop_runs_the_body_at_least_once(new_case, refuses, replays):
    c = new_case(REPEAT)
    c.complete("Draft", 1.0)
    refuses(c, NotEnabled, "complete", "Draft", 2.0)  # no second pass without a decision
    c.complete("Review", 2.0, result="revise")
    assert sorted(c.enabled_tasks()) == ["Draft"]
    assert c.tokens_by_condition() == {"Review->Draft": 1}
    c.complete("Draft", 3.0)
    c.complete("Review", 4.0, result="revise")
    c.complete("Draft", 5.0)
    c.complete("Review", 6.0, result="approved")
    assert (c.status, c.tokens_by_condition()) == ("completed", {"end": 1})
    replays(c)
