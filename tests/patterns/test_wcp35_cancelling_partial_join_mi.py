"""WCP-35 Cancelling Partial Join for Multiple Instances: several concurrent
instances of a task are created, their number known when the task starts; as soon
as n of them have completed the next task is triggered and the instances still
running are cancelled. In caseloop `Bid` is a multiple-instance task with one
instance per element of `suppliers` and `multiple_instance.threshold: 2`: the second
completed instance completes the task, withdraws the others and enables `Award`;
`collect` receives the two outputs in completion order.
"""

from engine import AlreadyDone, NotEnabled

SPEC = {
    "id": "wcp35",
    "tasks": [
        {"id": "Bid", "multiple_instance": {
            "items": "suppliers", "item_field": "supplier", "threshold": 2, "collect": "bids"}},
        {"id": "Award"},
    ],
    "flows": [
        {"from": "start", "to": "Bid"}, {"from": "Bid", "to": "Award"},
        {"from": "Award", "to": "end"},
    ],
}
DATA = {"suppliers": ["s1", "s2", "s3", "s4"]}


def instances(case):
    return sorted((i.id, i.data["supplier"], i.state) for i in case.work_items() if i.parent >= 0)


def test_second_completion_triggers_and_cancels_the_rest(new_case, refuses, replays):
    case = new_case(SPEC, DATA)
    (i1, _, _), (i2, _, _), (i3, _, _), (i4, _, _) = instances(case)
    assert [s for _, s, _ in instances(case)] == ["s1", "s2", "s3", "s4"]
    assert sorted(case.enabled_tasks()) == ["Bid"]
    case.start(i1, 1.0)
    case.complete(i3, 2.0, output={"price": 30})
    assert instances(case) == [(i1, "s1", "started"), (i2, "s2", "enabled"),
                               (i4, "s4", "enabled")]
    refuses(case, NotEnabled, "complete", "Award", 3.0)
    refuses(case, NotEnabled, "add_instance", "Bid", 3.0, "s5")  # static creation
    case.complete(i4, 4.0, output={"price": 40})
    assert instances(case) == []
    assert sorted(case.enabled_tasks()) == ["Award"]
    assert case.data["bids"] == [{"price": 30}, {"price": 40}]
    assert case.tokens_by_condition() == {"Bid->Award": 1}
    refuses(case, AlreadyDone, "complete", i1, 5.0)
    refuses(case, AlreadyDone, "complete", i3, 5.0)
    case.complete("Award", 6.0)
    assert (case.status, case.tokens_by_condition()) == ("completed", {"end": 1})
    replays(case)


def test_one_completion_is_not_enough(new_case, replays):
    case = new_case(SPEC, DATA)
    first = instances(case)[0][0]
    case.complete(first, 1.0, output={"price": 10})
    assert len(instances(case)) == 3
    assert sorted(case.enabled_tasks()) == ["Bid"]
    assert "bids" not in case.data
    assert case.tokens_by_condition() == {}
    replays(case)
