"""WCP-23 Transient Trigger: a task waits for a signal from the environment, and a
signal only counts if the task is already waiting for it when it arrives; a signal
nobody awaits is lost. In caseloop `alarm` is a condition with `trigger: transient`
feeding the AND-join of B together with A's output: `Case.signal("alarm")` before A
has finished leaves no trace (no event, no token), after A it enables B.
"""

from engine import NotEnabled, UnknownTask

SPEC = {
    "id": "wcp23",
    "conditions": [{"id": "alarm", "trigger": "transient"}],
    "tasks": [{"id": "A"}, {"id": "B", "join": "and"}],
    "flows": [
        {"from": "start", "to": "A"}, {"from": "A", "to": "B"}, {"from": "alarm", "to": "B"},
        {"from": "B", "to": "end"},
    ],
}


def test_signal_before_the_task_waits_is_lost(new_case, refuses, replays):
    case = new_case(SPEC)
    version = case.version
    assert case.signal("alarm", 1.0) == []
    assert (case.version, case.tokens_by_condition()) == (version, {"start": 1})
    case.complete("A", 2.0)
    assert case.enabled_tasks() == []
    assert case.status == "active"  # waiting for the environment, not deadlocked
    assert case.tokens_by_condition() == {"A->B": 1}
    refuses(case, NotEnabled, "complete", "B", 3.0)
    case.signal("alarm", 4.0)
    assert sorted(case.enabled_tasks()) == ["B"]
    assert case.tokens_by_condition() == {"A->B": 1, "alarm": 1}
    case.complete("B", 5.0)
    assert (case.status, case.tokens_by_condition()) == ("completed", {"end": 1})
    replays(case)


def test_only_trigger_conditions_can_be_signalled(new_case, refuses, replays):
    case = new_case(SPEC)
    case.complete("A", 1.0)
    refuses(case, UnknownTask, "signal", "A->B", 2.0)
    refuses(case, UnknownTask, "signal", "no-such-condition", 2.0)
    case.signal("alarm", 3.0)
    assert sorted(case.enabled_tasks()) == ["B"]
    replays(case)


LOOP = {**SPEC, "tasks": [{"id": "A", "join": "xor"}, {"id": "B", "join": "and", "split": "xor"}],
        "flows": [*SPEC["flows"][:3], {"from": "B", "to": "A", "when": "result == 'again'"},
                  {"from": "B", "to": "end"}]}


def test_a_surplus_signal_is_not_kept_for_the_next_round(new_case, replays):
    case = new_case(LOOP)
    case.complete("A", 1.0)
    case.signal("alarm", 2.0)
    case.signal("alarm", 3.0)  # B already has its trigger: nobody waits for this one
    assert case.tokens_by_condition() == {"A->B": 1, "alarm": 1}
    case.complete("B", 4.0, result="again")
    case.complete("A", 5.0)
    assert (case.status, case.enabled_tasks()) == ("active", [])  # waits for a new signal
    assert case.tokens_by_condition() == {"A->B": 1}
    case.signal("alarm", 6.0)
    case.complete("B", 7.0)
    assert case.status == "completed"
    replays(case)
