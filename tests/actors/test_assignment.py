"""Least-loaded assignment (`actors.assignment.least_loaded`): the person of a role with
the fewest open work items gets the new work; ties go round-robin; a routing rule may
prefer some people (when any of them holds the role) and avoid others (unless nobody
would be left). Called as the runtime calls it, with an `ActionContext`; the workload
comes from a small in-memory class and from the real SQLite store's `open_counts`
over work items claimed through a real runtime.

Finding (open when this file was written; its test stays red until fixed):

A1. Round-robin only works when `people_of` returns the people sorted: the next tied
    person is "the first one after the last chosen" by string comparison, taken in
    the order given (actors/assignment.py, `next(p for p in tied if p > prev)`), so
    with people_of -> ["carol", "alice", "bob"] every call picks carol. The port does
    not say the list must be sorted (adapters.people.Directory sorts, others need not).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from actors_kit import net_of, run_clock, running

from actors import ActionContext, ActionRegistry, RetryPolicy, VirtualClock
from actors.assignment import NoRouting, least_loaded
from actors.ports import RoutingRule

pytestmark = pytest.mark.anyio

TEAM = {"rep": ["alice", "bob", "carol"], "lead": ["dana", "erin"], "empty": []}


def people_of(role: str) -> Sequence[str]:
    return TEAM.get(role, [])


class Counts:
    """A Workload: open items per person, as a dict."""

    def __init__(self, **counts: int) -> None:
        self.counts = dict(counts)
        self.asked: list[list[str]] = []

    async def open_counts(self, people: Sequence[str]) -> dict[str, int]:
        self.asked.append(list(people))
        return {p: n for p, n in self.counts.items() if p in people}


class Rules:
    """A RoutingPolicy: one rule per (workflow, task)."""

    def __init__(self, rules: dict[tuple[str, str], RoutingRule]) -> None:
        self.rules = rules
        self.asked: list[tuple[str, str]] = []

    def rule(self, workflow_id: str, task: str) -> RoutingRule | None:
        self.asked.append((workflow_id, task))
        return self.rules.get((workflow_id, task))


def ctx(role: str | None = "rep", task: str = "Assign", workflow_id: str = "deals",
        **params: Any) -> ActionContext:
    if role is not None:
        params["role"] = role
    return ActionContext("c1", 7, task, "assign_least_loaded", params, {"deal_acv": 1},
                         1, 1000.0, workflow_id)


async def picks(handler: Any, n: int, **kwargs: Any) -> list[str]:
    return [(await handler(ctx(**kwargs)))["assigned_to"] for _ in range(n)]


# ------------------------------------------------------------------ load
async def test_the_person_with_fewest_open_items_wins() -> None:
    load = Counts(alice=3, bob=1, carol=2)
    assign = least_loaded(people_of, load)
    assert await assign(ctx()) == {"assigned_to": "bob"}
    assert load.asked == [["alice", "bob", "carol"]]
    load.counts["bob"] = 5  # the workload is read on every call
    assert await picks(assign, 2) == ["carol", "carol"]


async def test_someone_absent_from_the_counts_has_no_open_items() -> None:
    assign = least_loaded(people_of, Counts(alice=1, bob=2))
    assert await picks(assign, 2) == ["carol", "carol"]


async def test_ties_rotate_round_robin_across_calls() -> None:
    assign = least_loaded(people_of, Counts())
    assert await picks(assign, 7) == ["alice", "bob", "carol", "alice", "bob", "carol",
                                      "alice"]


async def test_round_robin_is_among_the_tied_only() -> None:
    assign = least_loaded(people_of, Counts(alice=0, bob=4, carol=0))
    assert await picks(assign, 4) == ["alice", "carol", "alice", "carol"]


async def test_round_robin_continues_after_the_last_one_chosen() -> None:
    load = Counts(alice=0, bob=0, carol=9)
    assign = least_loaded(people_of, load)
    assert await picks(assign, 2) == ["alice", "bob"]
    load.counts.update(alice=1, carol=0)  # bob was last; the next tied after bob
    assert await picks(assign, 3) == ["carol", "bob", "carol"]


async def test_rotation_is_remembered_per_role() -> None:
    assign = least_loaded(people_of, Counts())
    assert await picks(assign, 1, role="rep") == ["alice"]
    assert await picks(assign, 2, role="lead") == ["dana", "erin"]
    assert await picks(assign, 1, role="rep") == ["bob"]


async def test_each_handler_keeps_its_own_rotation() -> None:
    load = Counts()
    first, second = least_loaded(people_of, load), least_loaded(people_of, load)
    assert await picks(first, 2) == ["alice", "bob"]
    assert await picks(second, 1) == ["alice"]


async def test_the_output_field_can_be_renamed() -> None:
    assign = least_loaded(people_of, Counts(alice=1))
    assert await assign(ctx(field="account_owner")) == {"account_owner": "bob"}


async def test_round_robin_does_not_depend_on_the_order_people_are_given() -> None:
    """Finding A1: people_of need not return the people sorted."""
    assign = least_loaded(lambda _role: ["carol", "alice", "bob"], Counts())
    assert sorted(await picks(assign, 3)) == ["alice", "bob", "carol"]


# ---------------------------------------------------------------- routing
async def test_routing_is_asked_for_the_workflow_and_task() -> None:
    rules = Rules({})
    assign = least_loaded(people_of, Counts(alice=2), rules)
    assert await assign(ctx(task="AssignRep", workflow_id="lead-qualification")) == {
        "assigned_to": "bob"}
    assert rules.asked == [("lead-qualification", "AssignRep")]
    assert await least_loaded(people_of, Counts(alice=2), NoRouting())(ctx()) == {
        "assigned_to": "bob"}


async def test_prefer_narrows_to_the_preferred_even_when_busier() -> None:
    rules = Rules({("deals", "Assign"): RoutingRule(prefer=("carol",))})
    assign = least_loaded(people_of, Counts(alice=0, bob=0, carol=8), rules)
    assert await picks(assign, 3) == ["carol"] * 3
    # another task of the workflow has no rule: plain least-loaded
    assert await picks(assign, 1, task="Other") == ["alice"]


async def test_prefer_several_picks_the_least_loaded_among_them() -> None:
    rules = Rules({("deals", "Assign"): RoutingRule(prefer=("bob", "carol"))})
    load = Counts(alice=0, bob=3, carol=1)
    assign = least_loaded(people_of, load, rules)
    assert await picks(assign, 1) == ["carol"]
    assert load.asked[-1] == ["bob", "carol"]
    load.counts["carol"] = 3
    assert await picks(assign, 3) == ["bob", "carol", "bob"]


async def test_prefer_of_nobody_holding_the_role_is_ignored() -> None:
    rules = Rules({("deals", "Assign"): RoutingRule(prefer=("zed@elsewhere",))})
    assign = least_loaded(people_of, Counts(alice=1, bob=0, carol=1), rules)
    assert await picks(assign, 1) == ["bob"]


async def test_avoid_removes_people() -> None:
    rules = Rules({("deals", "Assign"): RoutingRule(avoid=("bob",))})
    assign = least_loaded(people_of, Counts(alice=2, bob=0, carol=1), rules)
    assert await picks(assign, 2) == ["carol", "carol"]


async def test_avoid_everyone_keeps_everyone() -> None:
    rules = Rules({("deals", "Assign"): RoutingRule(avoid=("alice", "bob", "carol"))})
    assign = least_loaded(people_of, Counts(alice=2, bob=0, carol=1), rules)
    assert await picks(assign, 1) == ["bob"]


async def test_avoid_wins_over_prefer() -> None:
    rules = Rules({("deals", "Assign"): RoutingRule(prefer=("bob",), avoid=("bob",))})
    assign = least_loaded(people_of, Counts(alice=2, bob=0, carol=1), rules)
    assert await picks(assign, 1) == ["carol"]
    rules.rules[("deals", "Assign")] = RoutingRule(prefer=("alice", "bob"), avoid=("bob",))
    assert await picks(assign, 1) == ["alice"]


# ----------------------------------------------------------------- refusals
@pytest.mark.parametrize("params", [{}, {"role": ""}, {"role": None}],
                         ids=["missing", "empty", "null"])
async def test_a_task_without_params_role_is_refused(params: dict[str, Any]) -> None:
    assign = least_loaded(people_of, Counts())
    context = ctx(role=None)
    context.params.update(params)
    with pytest.raises(ValueError, match=r"params\.role"):
        await assign(context)


@pytest.mark.parametrize("role", ["ghost", "empty"])
async def test_a_role_nobody_holds_is_refused(role: str) -> None:
    load = Counts()
    assign = least_loaded(people_of, load)
    with pytest.raises(ValueError, match=role):
        await assign(ctx(role=role))
    assert load.asked == []


# ------------------------------------------------------- inside the runtime
JOB = net_of({
    "id": "job",
    "tasks": [{"id": "Work", "role": "rep"}],
    "flows": [{"from": "start", "to": "Work"}, {"from": "Work", "to": "end"}],
})


def assigning(role: str) -> Any:
    return net_of({
        "id": f"assign-{role}",
        "data": {"properties": {"assigned_to": {"type": "string"}}},
        "tasks": [{"id": "Assign", "kind": "automatic", "action": "assign_least_loaded",
                   "params": {"role": role}},
                  {"id": "Follow", "role": "rep"}],
        "flows": [{"from": "start", "to": "Assign"}, {"from": "Assign", "to": "Follow"},
                  {"from": "Follow", "to": "end"}],
    })


async def test_the_sqlite_store_counts_claimed_open_items(db: str) -> None:
    clock = VirtualClock(0.0)
    registry = ActionRegistry(RetryPolicy(attempts=1))
    async with running(db, clock, [JOB, assigning("rep")], registry) as (store, rt):
        registry.register("assign_least_loaded", least_loaded(people_of, store))
        for n in range(6):
            await rt.create("job", f"j{n}", {})
        for n, who in enumerate(["alice", "alice", "bob", "alice"]):
            await rt.start(f"j{n}", "Work", by=who)
        # j4 and j5 stay offered (nobody's); completed items are no one's load either
        assert await store.open_counts(["alice", "bob", "carol"]) == {"alice": 3, "bob": 1}
        assert await store.open_counts([]) == {}

        case = await rt.create("assign-rep", "a1", {})
        await rt.wait_idle()
        case = await rt.get("a1")
        assert case.data["assigned_to"] == "carol"
        assert case.enabled_tasks() == ["Follow"]

        await rt.start("a1", "Follow", by="carol")
        await rt.complete("j0", "Work", by="alice")
        await rt.complete("j1", "Work", by="alice")
        assert await store.open_counts(["alice", "bob", "carol"]) == {
            "alice": 1, "bob": 1, "carol": 1}
        # three-way tie: round-robin goes on after carol (chosen last) to alice, then bob
        await rt.create("assign-rep", "a2", {})
        await rt.create("assign-rep", "a3", {})
        await rt.wait_idle()
        assert (await rt.get("a2")).data["assigned_to"] == "alice"
        assert (await rt.get("a3")).data["assigned_to"] == "bob"
        assert rt.incidents == []


async def test_a_role_nobody_holds_becomes_an_incident(db: str) -> None:
    clock = VirtualClock(0.0)
    registry = ActionRegistry(RetryPolicy(attempts=2, base_delay=1.0, jitter=0.0))
    registry.register("assign_least_loaded", least_loaded(people_of, Counts()))
    async with running(db, clock, [assigning("ghost")], registry) as (_, rt):
        await rt.create("assign-ghost", "g1", {})
        await run_clock(rt, clock)
        (incident,) = rt.incidents
        assert (incident.case_id, incident.task, incident.action, incident.attempts) == (
            "g1", "Assign", "assign_least_loaded", 2)
        assert incident.error.startswith("ValueError") and "ghost" in incident.error
        case = await rt.get("g1")
        assert [i.state for i in case.work_items()] == ["failed"]
        assert "assigned_to" not in case.data
