"""WCP-32 Cancelling Partial Join: n of m concurrent branches pass control on, and
that firing cancels the branches still running and resets the join. In caseloop J
is an empty task with `join: partial`, `threshold: 2` and a cancellation region over
the three branches (tasks and their conditions). Nothing outlives J, so the net is
sound under strict completion; E may loop back to A for a fresh round.
"""

from engine import NotEnabled

BRANCHES = ["B", "C", "F"]
REGION = [*BRANCHES, *(f"A->{b}" for b in BRANCHES), *(f"{b}->J" for b in BRANCHES)]
SPEC = {
    "id": "wcp32",
    "tasks": [
        {"id": "A", "join": "xor"}, *({"id": b} for b in BRANCHES),
        {"id": "J", "kind": "empty", "join": "partial", "threshold": 2, "cancels": REGION},
        {"id": "E", "split": "xor"},
    ],
    "flows": [
        {"from": "start", "to": "A"}, *({"from": "A", "to": b} for b in BRANCHES),
        *({"from": b, "to": "J"} for b in BRANCHES), {"from": "J", "to": "E"},
        {"from": "E", "to": "A", "when": "result == 'again'"}, {"from": "E", "to": "end"},
    ],
}


def test_second_arrival_fires_and_cancels_the_third(new_case, refuses, replays):
    case = new_case(SPEC)
    case.complete("A", 1.0)
    case.start("F", 2.0)
    case.complete("B", 3.0)
    assert sorted(case.enabled_tasks()) == ["C", "F"]
    assert case.tokens_by_condition() == {"A->C": 1, "B->J": 1}
    refuses(case, NotEnabled, "complete", "E", 4.0)
    case.complete("C", 5.0)
    assert sorted(case.enabled_tasks()) == ["E"]
    assert case.tokens_by_condition() == {"J->E": 1}
    refuses(case, NotEnabled, "complete", "F", 6.0)
    case.complete("E", 7.0)
    assert (case.status, case.tokens_by_condition()) == ("completed", {"end": 1})
    replays(case)


def test_join_is_reset_for_the_next_round(new_case, replays):
    case = new_case(SPEC)
    case.complete("A", 1.0)
    case.complete("B", 2.0)
    case.complete("C", 3.0)  # round one: F cancelled
    case.complete("E", 4.0, result="again")
    case.complete("A", 5.0)
    case.complete("F", 6.0)
    assert sorted(case.enabled_tasks()) == ["B", "C"]
    assert case.tokens_by_condition() == {"A->B": 1, "A->C": 1, "F->J": 1}
    case.complete("B", 7.0)  # round two: F and B are two of three, J must fire
    assert sorted(case.enabled_tasks()) == ["E"]
    assert case.tokens_by_condition() == {"J->E": 1}
    replays(case)
