"""WCP-4 Exclusive Choice: at a decision point exactly one of several branches is chosen,
from the case's data or the result of the deciding task. caseloop expresses it with an
XOR split: guards on the outgoing flows are tried in flow order, the first that holds is
taken, and the one unguarded (default) flow is taken when none holds. Guards read the
deciding task's `result` and the case data, with the task's output already merged in.
"""

import pytest

from engine import GuardFailed

SPEC = {
    "id": "wcp04",
    "tasks": [{"id": "Decide", "split": "xor"}, {"id": "Big"}, {"id": "Urgent"}, {"id": "Normal"}],
    "flows": [
        {"from": "start", "to": "Decide"},
        {"from": "Decide", "to": "Big", "when": "amount > 1000"},
        {"from": "Decide", "to": "Urgent", "when": "result == 'urgent'"},
        {"from": "Decide", "to": "Normal"},
        {"from": "Big", "to": "end"},
        {"from": "Urgent", "to": "end"},
        {"from": "Normal", "to": "end"},
    ],
}


@pytest.mark.parametrize(("amount", "result", "chosen"), [
    (5000, None, "Big"),
    (10, "urgent", "Urgent"),
    (5000, "urgent", "Big"),  # both hold: the first flow in spec order wins
    (10, None, "Normal"),  # none holds: the default
])
def test_exactly_one_branch_is_taken(new_case, replays, amount, result, chosen):
    c = new_case(SPEC, {"amount": amount})
    c.complete("Decide", 1.0, result=result)
    assert sorted(c.enabled_tasks()) == [chosen]
    assert c.tokens_by_condition() == {f"Decide->{chosen}": 1}
    c.complete(chosen, 2.0)
    assert (c.status, c.tokens_by_condition()) == ("completed", {"end": 1})
    replays(c)


def test_guards_see_the_deciding_tasks_output(new_case):
    c = new_case(SPEC, {"amount": 10})
    c.complete("Decide", 1.0, output={"amount": 2000})
    assert (sorted(c.enabled_tasks()), c.data["amount"]) == (["Big"], 2000)


def test_an_undecidable_guard_refuses_the_completion(new_case, refuses):
    c = new_case(SPEC)  # no `amount` in the data
    err = refuses(c, GuardFailed, "complete", "Decide", 1.0)
    assert err.field == "amount"
    assert sorted(c.enabled_tasks()) == ["Decide"]
