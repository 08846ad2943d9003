"""WCP-28 Blocking Discriminator: the first of several concurrent branches to arrive
passes control on; the later ones of the same round are absorbed; the join resets
once every branch has arrived, and an arrival belonging to the next round is blocked
(kept waiting) until that reset. In caseloop D is an empty task with `join: partial`
and `threshold: 1`. E may loop back to A, so a second round can overtake the first.
The case ends when E takes the exit, whatever branch is still running then, so the
net uses `completion: cancel_remaining` (WCP-43).
"""

from engine import AlreadyDone

SPEC = {
    "id": "wcp28",
    "completion": "cancel_remaining",
    "tasks": [
        {"id": "A", "join": "xor"}, {"id": "B"}, {"id": "C"},
        {"id": "D", "kind": "empty", "join": "partial", "threshold": 1},
        {"id": "E", "split": "xor"},
    ],
    "flows": [
        {"from": "start", "to": "A"}, {"from": "A", "to": "B"}, {"from": "A", "to": "C"},
        {"from": "B", "to": "D"}, {"from": "C", "to": "D"}, {"from": "D", "to": "E"},
        {"from": "E", "to": "A", "when": "result == 'again'"}, {"from": "E", "to": "end"},
    ],
}


def item_of(case, task):
    [item] = [i.id for i in case.work_items() if case.net.tasks[i.task].id == task]
    return item


def test_first_passes_late_absorbed_next_round_blocked(new_case, refuses, replays):
    case = new_case(SPEC)
    case.complete("A", 1.0)
    case.complete("B", 2.0)  # first arrival: D fires
    assert sorted(case.enabled_tasks()) == ["C", "E"]
    assert case.tokens_by_condition() == {"A->C": 1, "D->E": 1}
    first_e = item_of(case, "E")
    case.complete("E", 3.0, result="again")
    refuses(case, AlreadyDone, "complete", first_e, 3.5)
    case.complete("A", 4.0)  # round two starts while round one's C is still open
    assert case.tokens_by_condition() == {"A->B": 1, "A->C": 2}
    case.complete("B", 5.0)  # round two's B: blocked until D resets
    assert sorted(case.enabled_tasks()) == ["C"]
    assert case.tokens_by_condition() == {"A->C": 2, "B->D": 1}
    case.complete("C", 6.0)  # round one's C: absorbed, D resets, the blocked B passes
    assert sorted(case.enabled_tasks()) == ["C", "E"]
    assert case.tokens_by_condition() == {"A->C": 1, "D->E": 1}
    case.complete("C", 7.0)  # round two's C: absorbed
    assert sorted(case.enabled_tasks()) == ["E"]
    assert case.tokens_by_condition() == {"D->E": 1}
    case.complete("E", 8.0)
    assert (case.status, case.tokens_by_condition()) == ("completed", {"end": 1})
    assert sum(type(e).__name__ == "TaskFired" for e in case.events) == 2
    replays(case)


def test_late_arrival_is_absorbed_within_a_round(new_case, replays):
    case = new_case(SPEC)
    case.complete("A", 1.0)
    case.complete("C", 2.0)
    case.complete("B", 3.0)
    assert sorted(case.enabled_tasks()) == ["E"]
    assert case.tokens_by_condition() == {"D->E": 1}
    case.complete("E", 4.0, result="again")
    case.complete("A", 5.0)
    case.complete("B", 6.0)  # D was reset: the first arrival of round two passes
    assert sorted(case.enabled_tasks()) == ["C", "E"]
    replays(case)


def test_exit_cancels_a_branch_still_running(new_case, replays):
    case = new_case(SPEC)
    case.complete("A", 1.0)
    case.complete("B", 2.0)
    case.start("C", 3.0)
    case.complete("E", 4.0)
    assert (case.status, case.work_items()) == ("completed", [])
    assert case.tokens_by_condition() == {"end": 1}
    replays(case)
