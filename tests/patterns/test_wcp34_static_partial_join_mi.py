"""WCP-34 Static Partial Join for Multiple Instances: several instances of a task
run concurrently, their number known when the task starts; once n of them have
completed the next task is triggered, and the remaining instances run on to their
end without further effect. In caseloop `Bid` is a multiple-instance task with
`threshold: 2` and `cancel_rest: false`: the second completion enables `Award`, the
other instances stay offered, their outputs are not collected, and the case only
ends when they are done too.
"""

from engine import NotEnabled

SPEC = {
    "id": "wcp34",
    "tasks": [
        {"id": "Bid", "multiple_instance": {
            "items": "suppliers", "item_field": "supplier", "threshold": 2,
            "cancel_rest": False, "collect": "bids"}},
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


def test_n_of_m_trigger_and_the_rest_run_on_without_effect(new_case, refuses, replays):
    case = new_case(SPEC, DATA)
    (i1, _, _), (i2, _, _), (i3, _, _), (i4, _, _) = instances(case)
    case.complete(i1, 1.0, output={"price": 10})
    refuses(case, NotEnabled, "complete", "Award", 2.0)
    case.complete(i3, 2.0, output={"price": 30})
    # the partial join fired: Award is offered, the two other bids are still open
    assert sorted(case.enabled_tasks()) == ["Award", "Bid"]
    assert instances(case) == [(i2, "s2", "enabled"), (i4, "s4", "enabled")]
    assert case.data["bids"] == [{"price": 10}, {"price": 30}]
    case.complete("Award", 3.0)
    assert case.status == "active"  # the late bids still run
    case.complete(i2, 4.0, output={"price": 5})
    assert case.data["bids"] == [{"price": 10}, {"price": 30}]  # no effect
    case.complete(i4, 5.0)
    assert case.status == "completed" and case.work_items() == []
    replays(case)


def test_a_late_instance_does_not_trigger_award_again(new_case, replays):
    case = new_case(SPEC, DATA)
    ids = [i for i, _, _ in instances(case)]
    for n, iid in enumerate(ids, start=1):
        case.complete(iid, float(n))
    assert sorted(case.enabled_tasks()) == ["Award"]  # one Award, not two
    case.complete("Award", 9.0)
    assert case.status == "completed"
    replays(case)
