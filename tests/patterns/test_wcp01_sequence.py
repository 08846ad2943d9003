"""WCP-1 Sequence: a task is enabled only after the task before it in the same case has
completed. caseloop expresses it with task-to-task flows (each one an implicit condition
"A->B"): completing A puts a token on "A->B", which offers B; nothing else can run early.
"""

from engine import AlreadyDone, CaseClosed, NotEnabled, UnknownTask

SPEC = {
    "id": "wcp01",
    "tasks": [{"id": "A"}, {"id": "B"}, {"id": "C"}],
    "flows": [
        {"from": "start", "to": "A"},
        {"from": "A", "to": "B"},
        {"from": "B", "to": "C"},
        {"from": "C", "to": "end"},
    ],
}


def test_tasks_run_one_after_the_other(new_case, replays):
    c = new_case(SPEC)
    assert (c.status, sorted(c.enabled_tasks())) == ("active", ["A"])
    assert c.tokens_by_condition() == {"start": 1}
    c.complete("A", 1.0)
    assert sorted(c.enabled_tasks()) == ["B"]
    assert c.tokens_by_condition() == {"A->B": 1}
    c.start("B", 2.0)
    assert sorted(c.enabled_tasks()) == ["B"]
    assert c.tokens_by_condition() == {}  # B took its token when it started
    c.complete("B", 3.0)
    assert (sorted(c.enabled_tasks()), c.tokens_by_condition()) == (["C"], {"B->C": 1})
    c.complete("C", 4.0)
    assert (c.status, c.enabled_tasks(), c.tokens_by_condition()) == ("completed", [], {"end": 1})
    replays(c)


def test_later_tasks_cannot_run_early(new_case, refuses):
    c = new_case(SPEC)
    refuses(c, NotEnabled, "complete", "B", 1.0)
    refuses(c, NotEnabled, "start", "C", 1.0)
    refuses(c, UnknownTask, "complete", "Z", 1.0)
    c.complete("A", 1.0)
    refuses(c, AlreadyDone, "complete", "A", 2.0)
    refuses(c, NotEnabled, "complete", "C", 2.0)
    c.start("B", 2.0)
    refuses(c, NotEnabled, "start", "B", 3.0)  # started once, not twice
    assert sorted(c.enabled_tasks()) == ["B"]


def test_a_completed_case_accepts_nothing(new_case, refuses, replays):
    c = new_case(SPEC)
    for i, task in enumerate("ABC"):
        c.complete(task, float(i))
    assert c.status == "completed"
    refuses(c, CaseClosed, "complete", "A", 9.0)
    refuses(c, CaseClosed, "cancel", 9.0)
    replays(c)
