"""WCP-43 Explicit Termination: the case ends the moment a designated end point is
reached; whatever work is still open then is cancelled, and the case counts as
completed (not cancelled). caseloop expresses it with `completion: "cancel_remaining"`:
the first token on `end` completes the case, withdraws every open work item and
clears every other token. The same net under the default `strict` completion is
rejected at registration, since reaching `end` could leave work behind.
"""

import pytest

from engine import CaseClosed, NotEnabled, SpecError, compile_document

SPEC = {
    "id": "wcp43",
    "completion": "cancel_remaining",
    "tasks": [{"id": "A"}, {"id": "B"}, {"id": "C"}, {"id": "D"}],
    "flows": [
        {"from": "start", "to": "A"}, {"from": "A", "to": "B"}, {"from": "A", "to": "C"},
        {"from": "B", "to": "end"}, {"from": "C", "to": "D"}, {"from": "D", "to": "end"},
    ],
}


def test_reaching_end_cancels_all_open_work(new_case, refuses, replays):
    case = new_case(SPEC)
    case.complete("A", 1.0)
    case.complete("C", 2.0)
    case.start("D", 3.0)
    assert sorted(case.enabled_tasks()) == ["B", "D"]
    assert case.tokens_by_condition() == {"A->B": 1}
    events = case.complete("B", 4.0)
    cancelled = [e for e in events if type(e).__name__ == "WorkItemCancelled"]
    assert [e.reason for e in cancelled] == ["case completed"]
    assert case.status == "completed"
    assert case.enabled_tasks() == []
    assert case.work_items() == []
    assert case.tokens_by_condition() == {"end": 1}
    refuses(case, CaseClosed, "complete", "D", 5.0)
    replays(case)


def test_either_path_may_terminate(new_case, refuses, replays):
    case = new_case(SPEC)
    case.complete("A", 1.0)
    refuses(case, NotEnabled, "complete", "D", 2.0)
    case.complete("C", 3.0)
    case.complete("D", 4.0)
    assert case.status == "completed"
    assert case.tokens_by_condition() == {"end": 1}
    refuses(case, CaseClosed, "complete", "B", 5.0)
    replays(case)


def test_strict_completion_rejects_the_same_net():
    with pytest.raises(SpecError, match="improper completion"):
        compile_document({**SPEC, "completion": "strict"})
