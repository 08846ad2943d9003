"""WCP-7 Structured Synchronizing Merge: branches started by an earlier multi-choice
converge; the merge waits for every branch that was actually started and for no other,
then the thread continues once. caseloop expresses it with YAWL's OR join: E is enabled
when at least one input holds a token and no token or running work item can still reach
an empty input. A branch that was not chosen is not waited for; a chosen branch, offered
or already started, is.
"""

from engine import NotEnabled

SPEC = {
    "id": "wcp07",
    "tasks": [{"id": "A", "split": "or"}, {"id": "B"}, {"id": "C"}, {"id": "E", "join": "or"}],
    "flows": [
        {"from": "start", "to": "A"},
        {"from": "A", "to": "B", "when": "b"},
        {"from": "A", "to": "C", "when": "c", "default": True},
        {"from": "B", "to": "E"},
        {"from": "C", "to": "E"},
        {"from": "E", "to": "end"},
    ],
}


def test_merge_waits_for_every_chosen_branch(new_case, refuses, replays):
    c = new_case(SPEC, {"b": True, "c": True})
    c.complete("A", 1.0)
    c.complete("B", 2.0)
    assert sorted(c.enabled_tasks()) == ["C"]  # C is offered: E waits
    refuses(c, NotEnabled, "complete", "E", 3.0)
    c.start("C", 3.0)
    assert sorted(c.enabled_tasks()) == ["C"]  # C is running: E still waits
    assert c.tokens_by_condition() == {"B->E": 1}
    refuses(c, NotEnabled, "complete", "E", 4.0)
    c.complete("C", 5.0)
    assert sorted(c.enabled_tasks()) == ["E"]
    assert c.tokens_by_condition() == {"B->E": 1, "C->E": 1}
    c.complete("E", 6.0)  # fires once, taking both tokens
    assert (c.status, c.tokens_by_condition()) == ("completed", {"end": 1})
    replays(c)


def test_a_branch_not_chosen_is_not_waited_for(new_case, replays):
    c = new_case(SPEC, {"b": True, "c": False})
    c.complete("A", 1.0)
    assert sorted(c.enabled_tasks()) == ["B"]
    c.complete("B", 2.0)
    assert sorted(c.enabled_tasks()) == ["E"]
    assert c.tokens_by_condition() == {"B->E": 1}
    replays(c)
    c.complete("E", 3.0)
    assert c.status == "completed"
