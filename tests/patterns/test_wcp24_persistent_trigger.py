"""WCP-24 Persistent Trigger: a signal from the environment is kept by the case
until the task it is meant for is ready to act on it, even if it arrives long before
the thread of control gets there. In caseloop `approval` is a condition with
`trigger: persistent` feeding B's AND-join: the token put there by
`Case.signal("approval")` stays until A has completed, and then B is enabled at once.
"""

from engine import NotEnabled

SPEC = {
    "id": "wcp24",
    "conditions": [{"id": "approval", "trigger": "persistent"}],
    "tasks": [{"id": "A"}, {"id": "B", "join": "and"}],
    "flows": [
        {"from": "start", "to": "A"}, {"from": "A", "to": "B"}, {"from": "approval", "to": "B"},
        {"from": "B", "to": "end"},
    ],
}


def test_early_signal_is_kept_until_needed(new_case, refuses, replays):
    case = new_case(SPEC)
    case.signal("approval", 1.0)
    assert case.tokens_by_condition() == {"start": 1, "approval": 1}
    assert sorted(case.enabled_tasks()) == ["A"]
    refuses(case, NotEnabled, "complete", "B", 2.0)
    case.complete("A", 3.0)
    assert sorted(case.enabled_tasks()) == ["B"]
    assert case.tokens_by_condition() == {"A->B": 1, "approval": 1}
    case.complete("B", 4.0)
    assert (case.status, case.tokens_by_condition()) == ("completed", {"end": 1})
    replays(case)


def test_late_signal_enables_the_waiting_task(new_case, refuses, replays):
    case = new_case(SPEC)
    case.complete("A", 1.0)
    assert (case.status, case.enabled_tasks()) == ("active", [])
    refuses(case, NotEnabled, "start", "B", 2.0)
    case.signal("approval", 3.0)
    assert sorted(case.enabled_tasks()) == ["B"]
    case.complete("B", 4.0)
    assert case.status == "completed"
    replays(case)


def test_each_signal_is_kept(new_case, replays):
    case = new_case(SPEC)
    case.signal("approval", 1.0)
    case.signal("approval", 2.0)
    assert case.tokens_by_condition() == {"start": 1, "approval": 2}
    case.complete("A", 3.0)
    assert sorted(case.enabled_tasks()) == ["B"]
    replays(case)
