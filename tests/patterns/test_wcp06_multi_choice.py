"""WCP-6 Multi-Choice: at a decision point one or more of several branches are chosen,
each by its own condition. caseloop expresses it with an OR split: every flow whose guard
holds is taken, and the default flow is taken when none holds; an OR split's default may
also carry a guard, in which case it also runs whenever that guard holds. The chosen
branches meet again at an OR join (WCP-7), which waits only for them.
"""

import pytest

SPEC = {
    "id": "wcp06",
    "tasks": [{"id": "A", "split": "or"}, {"id": "B"}, {"id": "C"}, {"id": "D"},
              {"id": "E", "join": "or"}],
    "flows": [
        {"from": "start", "to": "A"},
        {"from": "A", "to": "B", "when": "x > 0"},
        {"from": "A", "to": "C", "when": "y > 0"},
        {"from": "A", "to": "D", "when": "z > 0", "default": True},
        {"from": "B", "to": "E"},
        {"from": "C", "to": "E"},
        {"from": "D", "to": "E"},
        {"from": "E", "to": "end"},
    ],
}


@pytest.mark.parametrize(("x", "y", "z", "chosen"), [
    (1, 1, 0, ["B", "C"]),
    (1, 0, 0, ["B"]),
    (0, 1, 0, ["C"]),
    (1, 1, 1, ["B", "C", "D"]),  # a guarded default runs when its own guard holds
    (0, 0, 1, ["D"]),
    (0, 0, 0, ["D"]),  # no guard holds: the default alone
])
def test_only_branches_whose_guard_holds_run(new_case, replays, x, y, z, chosen):
    c = new_case(SPEC, {"x": x, "y": y, "z": z})
    c.complete("A", 1.0)
    assert sorted(c.enabled_tasks()) == chosen
    assert c.tokens_by_condition() == {f"A->{t}": 1 for t in chosen}
    for i, task in enumerate(chosen):
        c.complete(task, 2.0 + i)
    assert sorted(c.enabled_tasks()) == ["E"]
    c.complete("E", 9.0)
    assert (c.status, c.tokens_by_condition()) == ("completed", {"end": 1})
    replays(c)
