"""WCP-29 Cancelling Discriminator: the first of several concurrent branches to
arrive passes control on, and that same moment cancels the branches still running
and resets the join, so the next round starts afresh. In caseloop D is an empty task
with `join: partial`, `threshold: 1` and a cancellation region (`cancels`) holding
the other branches' tasks and conditions. No branch outlives D, so the net is sound
under strict completion; E may loop back to A for another round.
"""

from engine import NotEnabled

REGION = ["B", "C", "A->B", "A->C", "B->D", "C->D"]
SPEC = {
    "id": "wcp29",
    "tasks": [
        {"id": "A", "join": "xor"}, {"id": "B"}, {"id": "C"},
        {"id": "D", "kind": "empty", "join": "partial", "threshold": 1, "cancels": REGION},
        {"id": "E", "split": "xor"},
    ],
    "flows": [
        {"from": "start", "to": "A"}, {"from": "A", "to": "B"}, {"from": "A", "to": "C"},
        {"from": "B", "to": "D"}, {"from": "C", "to": "D"}, {"from": "D", "to": "E"},
        {"from": "E", "to": "A", "when": "result == 'again'"}, {"from": "E", "to": "end"},
    ],
}


def test_first_arrival_cancels_the_other_branch(new_case, refuses, replays):
    case = new_case(SPEC)
    case.complete("A", 1.0)
    case.start("C", 2.0)
    assert sorted(case.enabled_tasks()) == ["B", "C"]
    events = case.complete("B", 3.0)
    assert [e.reason for e in events if type(e).__name__ == "WorkItemCancelled"] == [
        "cancelled by D"]
    assert sorted(case.enabled_tasks()) == ["E"]
    assert case.tokens_by_condition() == {"D->E": 1}
    refuses(case, NotEnabled, "complete", "C", 4.0)
    case.complete("E", 5.0)
    assert (case.status, case.tokens_by_condition()) == ("completed", {"end": 1})
    replays(case)


def test_offered_branch_is_withdrawn_with_its_token(new_case, replays):
    case = new_case(SPEC)
    case.complete("A", 1.0)
    case.complete("C", 2.0)
    assert sorted(case.enabled_tasks()) == ["E"]
    assert case.tokens_by_condition() == {"D->E": 1}
    replays(case)


def test_join_is_reset_for_the_next_round(new_case, replays):
    case = new_case(SPEC)
    case.complete("A", 1.0)
    case.complete("B", 2.0)  # round one: B first, C cancelled
    case.complete("E", 3.0, result="again")
    case.complete("A", 4.0)
    assert sorted(case.enabled_tasks()) == ["B", "C"]
    case.complete("C", 5.0)  # round two: C first must pass at once and cancel B
    assert sorted(case.enabled_tasks()) == ["E"]
    assert case.tokens_by_condition() == {"D->E": 1}
    case.complete("E", 6.0)
    assert case.status == "completed"
    replays(case)
