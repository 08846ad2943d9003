"""WCP-20 Cancel Case: the whole case is removed: every task that is offered or running,
and every thread waiting anywhere, is withdrawn, and the case ends as cancelled.
caseloop expresses it with `Case.cancel(at)`: it cancels every open work item (offered,
started, multiple-instance parents and their instances alike), removes every token and
records `CaseCancelled`; the case then refuses every further command.
"""

from engine import CaseClosed
from engine.events import CaseCancelled, TokensRemoved, WorkItemCancelled

SPEC = {
    "id": "wcp20",
    "tasks": [
        {"id": "A", "split": "and"},
        {"id": "B", "multiple_instance": {"min": 2, "max": 2}},
        {"id": "C"}, {"id": "D"},
        {"id": "E", "join": "and"},
    ],
    "flows": [
        {"from": "start", "to": "A"},
        {"from": "A", "to": "B"}, {"from": "A", "to": "C"}, {"from": "A", "to": "D"},
        {"from": "B", "to": "E"}, {"from": "C", "to": "E"}, {"from": "D", "to": "E"},
        {"from": "E", "to": "end"},
    ],
}


def test_cancel_case_cancels_every_open_item(new_case, refuses, replays):
    c = new_case(SPEC)
    c.complete("A", 1.0)
    c.start("C", 2.0)
    c.complete("D", 3.0)
    open_items = sorted(it.id for it in c.work_items())  # B, its 2 instances, C
    assert len(open_items) == 4
    assert c.tokens_by_condition() == {"D->E": 1}
    events = c.cancel(4.0)
    assert sorted(e.item for e in events if isinstance(e, WorkItemCancelled)) == open_items
    assert [type(e) for e in events[-2:]] == [TokensRemoved, CaseCancelled]
    assert (c.status, c.enabled_tasks(), c.work_items(), c.tokens_by_condition()) == (
        "cancelled", [], [], {})
    refuses(c, CaseClosed, "complete", "C", 5.0)
    refuses(c, CaseClosed, "cancel", 5.0)
    replays(c)


def test_cancel_right_after_creation(new_case, replays):
    c = new_case(SPEC)
    c.cancel(1.0)
    assert (c.status, c.work_items(), c.tokens_by_condition()) == ("cancelled", [], {})
    replays(c)


def test_a_completed_case_cannot_be_cancelled(new_case, refuses):
    c = new_case(SPEC)
    c.complete("A", 1.0)
    for it in [it for it in c.work_items() if it.parent >= 0]:
        c.complete(it.id, 2.0)
    for t in ("C", "D", "E"):
        c.complete(t, 3.0)
    assert c.status == "completed"
    refuses(c, CaseClosed, "cancel", 4.0)
