"""WCP-14 Multiple Instances with a priori Run-Time Knowledge: the number of instances is
not known at design time but is known, from the case's data, before the instances are
created; all of them must complete before the thread goes on. caseloop expresses it with
`items: "<expression giving a list>"`: one instance per element, each given its element
as `item_field`. A list outside `min`..`max` refuses the completion that would enable
the task, and leaves the case unchanged.
"""

import pytest

from engine import DataInvalid

SPEC = {
    "id": "wcp14",
    "tasks": [
        {"id": "A"},
        {"id": "Sign", "multiple_instance": {
            "min": 1, "max": 3, "items": "signers", "item_field": "signer", "collect": "sigs"}},
        {"id": "C"},
    ],
    "flows": [
        {"from": "start", "to": "A"},
        {"from": "A", "to": "Sign"},
        {"from": "Sign", "to": "C"},
        {"from": "C", "to": "end"},
    ],
}


def instances(c):
    return sorted((it.id, it.data["signer"]) for it in c.work_items() if it.parent >= 0)


@pytest.mark.parametrize("signers", [["ann"], ["ann", "bob", "cy"]])
def test_one_instance_per_element(new_case, replays, signers):
    c = new_case(SPEC, {"signers": signers})
    c.complete("A", 1.0)
    assert [s for _, s in instances(c)] == signers
    for i, (iid, who) in enumerate(instances(c)):
        assert sorted(c.enabled_tasks()) == ["Sign"]
        c.complete(iid, 2.0 + i, output={"by": who})
    assert sorted(c.enabled_tasks()) == ["C"]
    assert c.data["sigs"] == [{"by": s} for s in signers]
    replays(c)


def test_count_comes_from_data_known_only_at_run_time(new_case):
    c = new_case(SPEC, {"signers": ["ann"]})
    c.complete("A", 1.0, output={"signers": ["bob", "cy"]})  # decided by A itself
    assert [s for _, s in instances(c)] == ["bob", "cy"]


@pytest.mark.parametrize("signers", [[], ["a", "b", "c", "d"]])
def test_a_count_out_of_bounds_is_refused(new_case, refuses, signers):
    c = new_case(SPEC, {"signers": signers})
    refuses(c, DataInvalid, "complete", "A", 1.0)
    assert sorted(c.enabled_tasks()) == ["A"]
