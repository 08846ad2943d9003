"""WCP-18 Milestone: a task is enabled only while the case is in a given state: after a
milestone has been reached and before it has been passed. caseloop expresses it with
`milestone: [condition]`: the task needs a token on that condition but does not take it.
Here a booking's route may be changed, any number of times, once it is paid and until
the ticket is issued (IssueTicket takes the `paid` token). The change thread itself stays
in `changeable` and is closed by Fly; a change already under way may finish.
"""

from engine import NotEnabled

SPEC = {
    "id": "wcp18",
    "conditions": [{"id": "changeable"}, {"id": "paid"}],
    "tasks": [
        {"id": "Book", "split": "and"},
        {"id": "Pay"},
        {"id": "ChangeRoute", "milestone": ["paid"]},
        {"id": "IssueTicket"},
        {"id": "Fly", "join": "and"},
    ],
    "flows": [
        {"from": "start", "to": "Book"},
        {"from": "Book", "to": "changeable"}, {"from": "Book", "to": "Pay"},
        {"from": "changeable", "to": "ChangeRoute"}, {"from": "ChangeRoute", "to": "changeable"},
        {"from": "Pay", "to": "paid"},
        {"from": "paid", "to": "IssueTicket"},
        {"from": "IssueTicket", "to": "Fly"}, {"from": "changeable", "to": "Fly"},
        {"from": "Fly", "to": "end"},
    ],
}


def test_enabled_only_between_reaching_and_passing_the_milestone(new_case, refuses, replays):
    c = new_case(SPEC)
    c.complete("Book", 1.0)
    assert sorted(c.enabled_tasks()) == ["Pay"]  # milestone not reached yet
    assert c.tokens_by_condition() == {"Book->Pay": 1, "changeable": 1}
    refuses(c, NotEnabled, "complete", "ChangeRoute", 2.0)
    c.complete("Pay", 2.0)
    assert sorted(c.enabled_tasks()) == ["ChangeRoute", "IssueTicket"]
    c.complete("ChangeRoute", 3.0)
    c.start("ChangeRoute", 4.0)  # offered again: the milestone is read, not consumed
    assert c.tokens_by_condition() == {"paid": 1}
    assert sorted(c.enabled_tasks()) == ["ChangeRoute", "IssueTicket"]
    replays(c)
    c.complete("ChangeRoute", 5.0)
    c.complete("IssueTicket", 6.0)  # passes the milestone
    assert sorted(c.enabled_tasks()) == ["Fly"]
    assert c.tokens_by_condition() == {"changeable": 1, "IssueTicket->Fly": 1}
    refuses(c, NotEnabled, "complete", "ChangeRoute", 7.0)  # in a loop: not now, not "done"
    c.complete("Fly", 7.0)
    assert (c.status, c.tokens_by_condition()) == ("completed", {"end": 1})
    replays(c)


def test_never_enabled_once_the_milestone_is_passed(new_case, refuses, replays):
    c = new_case(SPEC)
    c.complete("Book", 1.0)
    c.complete("Pay", 2.0)
    c.complete("IssueTicket", 3.0)
    assert sorted(c.enabled_tasks()) == ["Fly"]
    refuses(c, NotEnabled, "complete", "ChangeRoute", 4.0)
    c.complete("Fly", 5.0)
    assert c.status == "completed"
    replays(c)


def test_a_change_under_way_finishes_after_the_milestone_is_passed(new_case, refuses, replays):
    c = new_case(SPEC)
    c.complete("Book", 1.0)
    c.complete("Pay", 2.0)
    c.start("ChangeRoute", 3.0)
    c.complete("IssueTicket", 4.0)
    assert sorted(c.enabled_tasks()) == ["ChangeRoute"]  # Fly waits for the change thread
    refuses(c, NotEnabled, "complete", "Fly", 5.0)
    c.complete("ChangeRoute", 5.0)
    assert sorted(c.enabled_tasks()) == ["Fly"]  # and the change is not offered again
    replays(c)
