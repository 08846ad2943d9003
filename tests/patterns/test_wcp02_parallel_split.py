"""WCP-2 Parallel Split: one thread of control diverges into several threads that run
concurrently, each of them in any order. caseloop expresses it with an AND split (the
default split): completing A puts a token on every outgoing flow, so B and C are offered
together and can be started, worked on and completed independently. AND-split flows carry
no guards; a spec that puts one there is rejected at registration.
"""

import pytest

from engine import SpecError, compile_document

SPEC = {
    "id": "wcp02",
    "tasks": [{"id": "A", "split": "and"}, {"id": "B"}, {"id": "C"}, {"id": "D", "join": "and"}],
    "flows": [
        {"from": "start", "to": "A"},
        {"from": "A", "to": "B"},
        {"from": "A", "to": "C"},
        {"from": "B", "to": "D"},
        {"from": "C", "to": "D"},
        {"from": "D", "to": "end"},
    ],
}


def test_split_offers_every_branch_at_once(new_case):
    c = new_case(SPEC)
    c.complete("A", 1.0)
    assert sorted(c.enabled_tasks()) == ["B", "C"]
    assert c.tokens_by_condition() == {"A->B": 1, "A->C": 1}


def test_branches_run_concurrently(new_case, replays):
    c = new_case(SPEC)
    c.complete("A", 1.0)
    c.start("B", 2.0)
    c.start("C", 3.0)  # both under way at the same time
    assert sorted(it.state for it in c.work_items()) == ["started", "started"]
    assert c.tokens_by_condition() == {}
    replays(c)


@pytest.mark.parametrize("order", ["BC", "CB"])
def test_branches_complete_in_any_order(new_case, replays, order):
    c = new_case(SPEC)
    c.complete("A", 1.0)
    first, second = order
    c.complete(first, 2.0)
    assert sorted(c.enabled_tasks()) == [second]
    c.complete(second, 3.0)
    assert sorted(c.enabled_tasks()) == ["D"]
    c.complete("D", 4.0)
    assert c.status == "completed"
    replays(c)


def test_and_split_flows_carry_no_guards():
    spec = {**SPEC, "flows": [dict(f) for f in SPEC["flows"]]}
    spec["flows"][1]["when"] = "x > 1"
    with pytest.raises(SpecError) as info:
        compile_document(spec)
    assert [p.path for p in info.value.problems] == ["/flows/1/when"]
