"""WCP-9 Structured Discriminator: after a parallel split, the join passes the thread on
as soon as the first branch arrives; the later branches are absorbed, and once every
branch has arrived the join resets so it can fire again (e.g. in a loop). caseloop
expresses it with a partial join of threshold 1 (`join: partial, threshold: 1`): the
join remembers which inputs arrived in the current round, absorbs late tokens
(`TokensRemoved(absorbed_by=...)`), and forgets the round when every input has arrived.
The threads meet nowhere else, so the net ends by implicit termination (WCP-11).
"""

from engine import NotEnabled
from engine.events import TokensRemoved

SPEC = {
    "id": "wcp09",
    "completion": "implicit",
    "conditions": [{"id": "done"}],
    "tasks": [
        {"id": "A", "split": "and"}, {"id": "B"}, {"id": "C"},
        {"id": "Join", "kind": "empty", "join": "partial", "threshold": 1},
        {"id": "F", "split": "xor"},
    ],
    "flows": [
        {"from": "start", "to": "A"},
        {"from": "A", "to": "B"},
        {"from": "A", "to": "C"},
        {"from": "B", "to": "Join"},
        {"from": "C", "to": "Join"},
        {"from": "Join", "to": "F"},
        {"from": "F", "to": "A", "when": "again"},
        {"from": "F", "to": "done"},
    ],
}


def test_fires_on_first_arrival_and_absorbs_the_later_one(new_case, refuses, replays):
    c = new_case(SPEC, {"again": False})
    c.complete("A", 1.0)
    c.complete("B", 2.0)  # first arrival: the join fires at once
    assert sorted(c.enabled_tasks()) == ["C", "F"]
    assert c.tokens_by_condition() == {"A->C": 1, "Join->F": 1}
    events = c.complete("C", 3.0)  # late arrival: absorbed, the join does not fire again
    assert [e.absorbed_by for e in events if isinstance(e, TokensRemoved)] == ["Join"]
    assert sorted(c.enabled_tasks()) == ["F"]
    assert c.tokens_by_condition() == {"Join->F": 1}
    refuses(c, NotEnabled, "complete", "C", 4.0)
    replays(c)
    c.complete("F", 5.0)
    assert c.status == "completed"
    replays(c)


def test_resets_after_all_arrived_and_fires_again_in_a_loop(new_case, replays):
    c = new_case(SPEC, {"again": True})
    c.complete("A", 1.0)
    c.complete("B", 2.0)
    c.complete("C", 3.0)  # round 1 complete: the join resets
    c.complete("F", 4.0)  # loop back
    assert sorted(c.enabled_tasks()) == ["A"]
    c.complete("A", 5.0)
    c.complete("C", 6.0)  # round 2: this time C is first, and the join fires again
    assert sorted(c.enabled_tasks()) == ["B", "F"]
    assert c.tokens_by_condition() == {"A->B": 1, "Join->F": 1}
    replays(c)
    c.complete("F", 7.0, output={"again": False})
    c.complete("B", 8.0)  # absorbed; nothing is left
    assert (c.status, c.tokens_by_condition()) == ("completed", {})
    replays(c)
