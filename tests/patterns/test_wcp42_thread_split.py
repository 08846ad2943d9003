"""WCP-42 Thread Split: at one point a nominated number of threads of control is
started in a single branch, each then running through the same following tasks
independently. caseloop has no weighted flow, so the number (3) is written as three
empty routing tasks T1..T3 that all put their token on the one condition `work`
(partial support: the count is structure, not a parameter). B then runs once per
thread, several at a time if started concurrently. With no thread merge in the
engine (WCP-41) the threads cannot be folded back onto one `end` token, so the case
uses implicit termination (WCP-11) and ends when the last thread is done.
"""

from engine import AlreadyDone

SPLIT = ["T1", "T2", "T3"]
SPEC = {
    "id": "wcp42",
    "completion": "implicit",
    "conditions": [{"id": "work"}, {"id": "done"}],
    "tasks": [{"id": "A"}, *({"id": t, "kind": "empty"} for t in SPLIT), {"id": "B"}],
    "flows": [
        {"from": "start", "to": "A"}, *({"from": "A", "to": t} for t in SPLIT),
        *({"from": t, "to": "work"} for t in SPLIT), {"from": "work", "to": "B"},
        {"from": "B", "to": "done"},
    ],
}


def items(case, state):
    return sorted(i.id for i in case.work_items() if i.state == state)


def test_three_threads_run_through_b(new_case, refuses, replays):
    case = new_case(SPEC)
    case.complete("A", 1.0)
    assert sorted(case.enabled_tasks()) == ["B"]
    assert case.tokens_by_condition() == {"work": 3}
    for n in range(3):  # each start takes one thread; the next one is offered at once
        case.start("B", 2.0 + n)
    assert case.tokens_by_condition() == {}
    running = items(case, "started")
    assert (len(running), items(case, "enabled")) == (3, [])
    case.complete(running[1], 5.0)
    assert case.tokens_by_condition() == {"done": 1}
    refuses(case, AlreadyDone, "complete", running[1], 6.0)
    case.complete(running[0], 7.0)
    assert (case.status, case.tokens_by_condition()) == ("active", {"done": 2})
    case.complete(running[2], 8.0)
    assert case.status == "completed"
    assert case.work_items() == []
    replays(case)


def test_threads_one_after_another(new_case, replays):
    case = new_case(SPEC)
    case.complete("A", 1.0)
    for n in range(3):
        expected = {"work": 3 - n, "done": n} if n else {"work": 3}
        assert case.tokens_by_condition() == expected
        assert sorted(case.enabled_tasks()) == ["B"]
        case.complete("B", 2.0 + n)
    assert case.status == "completed"
    replays(case)
