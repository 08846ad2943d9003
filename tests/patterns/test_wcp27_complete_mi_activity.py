"""WCP-27 Complete Multiple Instance Activity: a running multiple-instance task can
be forced to complete; instances not yet finished are withdrawn, the outputs of the
finished ones are kept, and the thread of control moves on at once. caseloop offers
this as the command `Case.force_complete(task)`: the MI task `Quote` (one instance
per vendor) completes, its `collect` field receives the finished instances' outputs
and `Choose` is enabled.
"""

from engine import AlreadyDone, NotEnabled

SPEC = {
    "id": "wcp27",
    "tasks": [
        {"id": "Quote", "multiple_instance": {
            "items": "vendors", "item_field": "vendor", "collect": "quotes"}},
        {"id": "Choose"},
    ],
    "flows": [
        {"from": "start", "to": "Quote"}, {"from": "Quote", "to": "Choose"},
        {"from": "Choose", "to": "end"},
    ],
}
DATA = {"vendors": ["acme", "globex", "initech"]}


def instances(case):
    return sorted((i.id, i.data["vendor"]) for i in case.work_items() if i.parent >= 0)


def test_force_complete_keeps_finished_and_withdraws_the_rest(new_case, refuses, replays):
    case = new_case(SPEC, DATA)
    (a, _), (g, _), (i, _) = instances(case)
    assert instances(case) == [(a, "acme"), (g, "globex"), (i, "initech")]
    assert sorted(case.enabled_tasks()) == ["Quote"]
    case.complete(g, 1.0, output={"price": 90})
    case.start(i, 2.0)
    refuses(case, NotEnabled, "complete", "Choose", 3.0)
    case.force_complete("Quote", 4.0)
    assert instances(case) == []
    assert sorted(case.enabled_tasks()) == ["Choose"]
    assert case.data["quotes"] == [{"price": 90}]
    assert case.tokens_by_condition() == {"Quote->Choose": 1}
    refuses(case, AlreadyDone, "complete", a, 5.0)
    refuses(case, AlreadyDone, "complete", i, 5.0)
    refuses(case, NotEnabled, "force_complete", "Quote", 5.0)
    refuses(case, NotEnabled, "force_complete", "Choose", 5.0)  # not a MI task
    case.complete("Choose", 6.0)
    assert (case.status, case.tokens_by_condition()) == ("completed", {"end": 1})
    replays(case)


def test_without_forcing_all_instances_are_awaited(new_case, replays):
    case = new_case(SPEC, DATA)
    items = [item for item, _ in instances(case)]
    case.complete(items[0], 1.0, output={"price": 1})
    case.complete(items[1], 2.0, output={"price": 2})
    assert sorted(case.enabled_tasks()) == ["Quote"]
    assert case.tokens_by_condition() == {}
    case.complete(items[2], 3.0, output={"price": 3})
    assert case.data["quotes"] == [{"price": 1}, {"price": 2}, {"price": 3}]
    assert sorted(case.enabled_tasks()) == ["Choose"]
    replays(case)
