"""WCP-11 Implicit Termination: a case completes when there is nothing left to do and
nothing can become enabled, without one designated end to reach. caseloop expresses it
with `completion: implicit`: the threads here end on their own conditions, and the case
completes once no work item is open. The same net with the default strict completion is
rejected at registration, since no task has a path to `end`.
"""

import pytest

from engine import CaseClosed, SpecError, compile_document

SPEC = {
    "id": "wcp11",
    "completion": "implicit",
    "conditions": [{"id": "b_done"}, {"id": "c_done"}],
    "tasks": [{"id": "A", "split": "and"}, {"id": "B"}, {"id": "C"}],
    "flows": [
        {"from": "start", "to": "A"},
        {"from": "A", "to": "B"},
        {"from": "A", "to": "C"},
        {"from": "B", "to": "b_done"},
        {"from": "C", "to": "c_done"},
    ],
}


@pytest.mark.parametrize("order", ["BC", "CB"])
def test_case_completes_when_nothing_is_left(new_case, refuses, replays, order):
    c = new_case(SPEC)
    c.complete("A", 1.0)
    first, last = order
    c.complete(first, 2.0)
    assert (c.status, sorted(c.enabled_tasks())) == ("active", [last])
    assert c.tokens_by_condition() == {f"{first.lower()}_done": 1, f"A->{last}": 1}
    replays(c)
    c.complete(last, 3.0)
    assert (c.status, c.enabled_tasks(), c.tokens_by_condition()) == ("completed", [], {})
    refuses(c, CaseClosed, "complete", last, 4.0)
    replays(c)


def test_strict_completion_needs_a_path_to_end():
    with pytest.raises(SpecError) as info:
        compile_document({**SPEC, "completion": "strict"})
    assert {p.problem for p in info.value.problems} >= {
        f"task {t!r} has no path to the end" for t in "ABC"}
