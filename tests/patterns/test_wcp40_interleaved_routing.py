"""WCP-40 Interleaved Routing: each task of a set must run exactly once, in any
order the case decides at run time, but never two of them at the same time. In
caseloop a `mutex` condition marked by the split guards the set: X, Y and Z each
AND-join their own input with `mutex` and return it when they finish, so every
task still pending is offered, starting one withdraws the rest, and `Close` needs
all three outputs and the mutex back.
"""

from engine import AlreadyDone, NotEnabled

SET = ["X", "Y", "Z"]
SPEC = {
    "id": "wcp40",
    "conditions": [{"id": "mutex"}],
    "tasks": [
        {"id": "A"}, *({"id": t, "join": "and"} for t in SET),
        {"id": "Close", "kind": "empty", "join": "and"},
    ],
    "flows": [
        {"from": "start", "to": "A"}, {"from": "A", "to": "mutex"},
        *({"from": "A", "to": t} for t in SET), *({"from": "mutex", "to": t} for t in SET),
        *({"from": t, "to": "mutex"} for t in SET), *({"from": t, "to": "Close"} for t in SET),
        {"from": "mutex", "to": "Close"}, {"from": "Close", "to": "end"},
    ],
}


def test_any_order_one_at_a_time(new_case, refuses, replays):
    case = new_case(SPEC)
    case.complete("A", 1.0)
    assert sorted(case.enabled_tasks()) == SET
    case.start("Y", 2.0)
    assert sorted(case.enabled_tasks()) == ["Y"]
    assert case.tokens_by_condition() == {"A->X": 1, "A->Z": 1}
    refuses(case, NotEnabled, "start", "X", 3.0)
    refuses(case, NotEnabled, "complete", "Z", 3.0)
    [y_item] = [i.id for i in case.work_items()]
    case.complete("Y", 4.0)
    assert sorted(case.enabled_tasks()) == ["X", "Z"]
    refuses(case, AlreadyDone, "complete", y_item, 5.0)
    refuses(case, NotEnabled, "start", "Y", 5.0)  # the mutex loop makes Y a "cycle": not enabled
    case.complete("Z", 6.0)  # straight from offered: still one at a time
    assert sorted(case.enabled_tasks()) == ["X"]
    assert case.tokens_by_condition() == {"mutex": 1, "A->X": 1, "Y->Close": 1, "Z->Close": 1}
    case.complete("X", 7.0)
    assert (case.status, case.tokens_by_condition()) == ("completed", {"end": 1})
    replays(case)


def test_every_order_completes(new_case, replays):
    for order in (["X", "Y", "Z"], ["Z", "X", "Y"], ["Y", "Z", "X"]):
        case = new_case(SPEC)
        case.complete("A", 0.0)
        for n, task in enumerate(order):
            assert sorted(case.enabled_tasks()) == sorted(order[n:])
            case.start(task, float(n))
            assert case.enabled_tasks() == [task]
            case.complete(task, n + 0.5)
        assert case.status == "completed"
        replays(case)
