"""The routing, escalation and capacity planners (mapek.plan) on worlds whose truth is
known (bench/mapek_eval.py): each finds its effect with a sample size, an effect size
with an interval and a calibrated confidence, and proposes a change a policy can
carry out (or advice when none can); worlds without the effect -- nobody slower, an
SLO that holds, breaches that cannot be told apart early, work that never queues --
get nothing at confidence 0.8 or above (nor does a person who works the weekend shift,
whose items wait for Monday whoever does them), and neither do histories below the
minimum sample. Also: which assignment decides who does a task, read off the shipped specs,
and the policy book's routing and escalation ports."""

from __future__ import annotations

import json
import math
import pathlib

import pytest

from engine import compile_document
from mapek.escalation import SloTerms, binomial_tail
from mapek.plan import plan_effects
from mapek.policy import Change, Escalation, PolicyBook
from mapek.routing import assignment_points

SPECS = pathlib.Path(__file__).resolve().parents[2] / "specs"
ASSIGN = "lead-qualification/AssignToSDR"


def plan(ev, scenario: str, seed: int, *, assigned: bool = True, limit: int | None = None):
    """(proposals, the realized truth) for a world of bench/mapek_eval.py."""
    kw: dict = {}
    truth = None
    if scenario in ("slow_person", "even_team", "shift_worker"):
        obs, truth = ev.slow_person_world(seed, 2.0 if scenario == "slow_person" else 1.0,
                                          shift=scenario == "shift_worker")
        kw["assigned_at"] = (lambda wf, task: ASSIGN) if assigned else None
    elif scenario in ("saturated", "no_queue"):
        obs, truth = ev.queue_world(seed, queue=scenario == "saturated")
    else:
        stuck, typical = {"stuck_items": (0.2, 1.0), "meets_slo": (0.0, 1.0),
                          "always_late": (0.0, 6.0)}[scenario]
        obs = ev.approval_world(seed, stuck, typical)
        kw["slo_of"] = lambda wf, task: SloTerms(*ev.APPROVAL_SLO)
        kw["escalate_to"] = lambda role: "director"
    obs = obs[:limit] if limit is not None else obs
    now = max(o.closed_at for o in obs) + 3600.0
    return plan_effects(obs, now, zone_of=lambda p: ev.TZ, **kw), truth


def test_the_shipped_specs_say_which_assignment_decides_who_works_a_task() -> None:
    nets = [compile_document(json.loads(f.read_text(encoding="utf-8")))
            for f in sorted(SPECS.glob("*.json"))]
    points = assignment_points(nets)
    # The SDR a lead is assigned to works the deal's SDR tasks...
    assert points[("pricing-exception", "JustifyDiscount")] == ASSIGN
    assert points[("contract-processing", "CustomerSignature")] == ASSIGN
    # ...but the lead's own first tasks come before the assignment: whoever is free.
    assert ("lead-qualification", "ReceiveMarketingLead") not in points
    assert ("lead-qualification", "ValidateContactInfo") not in points
    # Nothing assigns a manager's, lawyer's or finance approval.
    assert set(points) == {("pricing-exception", "JustifyDiscount"),
                           ("contract-processing", "CustomerSignature")}


def test_a_slow_person_is_routed_around_at_the_assignment(mapek_eval) -> None:
    (p,), saved = plan(mapek_eval, "slow_person", 1)
    assert p.type == "routing_optimization" and p.task == "JustifyDiscount"
    assert p.change == Change("routing", "pricing-exception", "JustifyDiscount",
                              avoid=(mapek_eval.SLOW,), assigned_at=ASSIGN)
    assert p.confidence >= 0.95
    assert "David Park" in p.description and '"Assign To SDR"' in p.description
    ev = p.evidence
    assert ev["sample_size"] == 900 and ev["people"] == 3
    (who,) = ev["avoided"]
    lo, hi = who["ratio_interval_95"]
    assert 1.15 <= lo <= who["response_ratio"] <= hi
    assert 0.25 < who["share"] < 0.45  # a third of the work, drawn at random
    lo, hi = ev["saving_interval_95"]
    assert 0 < lo <= ev["saving_hours"] <= hi
    # The arithmetic against the truth: the same items redone by the other two.
    assert abs(p.estimated_improvement_hours - saved) / saved < 0.3


def test_without_an_assignment_a_slow_person_is_advice(mapek_eval) -> None:
    (p,), _ = plan(mapek_eval, "slow_person", 2, assigned=False)
    assert p.type == "routing_optimization" and p.change is None
    assert "no policy can route it" in p.description


def test_predictable_breaches_get_an_earlier_alert_to_a_role_that_can_act(mapek_eval) -> None:
    (p,), _ = plan(mapek_eval, "stuck_items", 1)
    assert p.type == "escalation" and p.task == "SendToSalesManager"
    assert p.change == Change("escalation", "deal-approval-gate", "SendToSalesManager",
                              escalation=Escalation(2.0, "director"))
    assert p.estimated_improvement_hours is None  # what the director does: not claimed
    ev = p.evidence
    assert ev["sample_size"] > 1000 and ev["allowed_share"] == pytest.approx(0.02)
    assert ev["breach_share_interval_95"][0] > 0.15  # a fifth of the items are stuck
    assert ev["flagged_share"] <= 0.5 and ev["precision"] >= 0.6
    assert ev["earlier_by_hours"] == 22.0
    assert p.confidence >= 0.95
    assert "director" in p.description and "after 2h" in p.description


def test_a_saturated_team_gets_capacity_advice(mapek_eval) -> None:
    (p,), saved = plan(mapek_eval, "saturated", 1)
    assert p.type == "capacity" and p.change is None and p.task is None
    assert p.subject == "role:legal_counsel" and p.workflow_id == "deal-approval-gate"
    ev = p.evidence
    assert ev["people"] == 2 and ev["mean_backlog_per_person"] > 1
    assert ev["ratio_interval_95"][0] > 1.0
    lo, hi = ev["saving_interval_95"]
    assert 0 < lo <= ev["saving_hours"] <= hi
    # Conservative: the backlog is held as it was, though with a third person less of
    # it piles up in the first place.
    assert 0.25 < p.estimated_improvement_hours < saved


@pytest.mark.parametrize("scenario", ["slow_person", "stuck_items", "saturated"])
def test_an_effect_world_gets_only_its_own_kind(mapek_eval, scenario: str) -> None:
    for seed in (2, 3):
        found, _ = plan(mapek_eval, scenario, seed)
        assert [p.type for p in found] == [mapek_eval.PLANNER_OF[scenario]], (
            seed, [p.description for p in found])


@pytest.mark.parametrize("scenario", ["even_team", "shift_worker", "meets_slo", "always_late",
                                      "no_queue"])
def test_no_effect_no_recommendation(mapek_eval, scenario: str) -> None:
    for seed in (1, 2, 3):
        found, _ = plan(mapek_eval, scenario, seed)
        assert [p for p in found if p.confidence >= 0.8] == [], (
            seed, [p.description for p in found])


@pytest.mark.parametrize("scenario", ["slow_person", "stuck_items", "saturated"])
def test_below_the_minimum_sample_nothing_is_claimed(mapek_eval, scenario: str) -> None:
    found, _ = plan(mapek_eval, scenario, 1, limit=29)
    assert found == []


def test_binomial_tail_is_exact() -> None:
    def brute(k: int, n: int, p: float) -> float:
        return sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1))

    for k, n, p in ((0, 10, 0.3), (3, 10, 0.3), (10, 10, 0.3), (11, 10, 0.3), (40, 200, 0.1),
                    (5, 50, 0.02)):
        assert binomial_tail(k, n, p) == pytest.approx(brute(k, n, p), rel=1e-9, abs=1e-15)


# ------------------------------------------------------------------ the book
def test_routing_acts_at_the_assignment_and_merges() -> None:
    book = PolicyBook()
    book.apply(Change("routing", "pricing-exception", "JustifyDiscount",
                      avoid=("david@acme.com",), assigned_at=ASSIGN), 1.0, "slow discounts")
    assert book.rule("lead-qualification", "AssignToSDR").avoid == ("david@acme.com",)
    assert book.rule("pricing-exception", "JustifyDiscount") is None  # nobody assigns it
    book.apply(Change("routing", "contract-processing", "CustomerSignature",
                      avoid=("emily@acme.com",), prefer=("david@acme.com",),
                      assigned_at=ASSIGN), 2.0, "slow signatures")
    rule = book.rule("lead-qualification", "AssignToSDR")
    # Avoided by one policy, preferred by another: avoided.
    assert rule.avoid == ("david@acme.com", "emily@acme.com") and rule.prefer == ()
    book.restore(1, 3.0, "rolled back")
    assert book.rule("lead-qualification", "AssignToSDR").avoid == ("david@acme.com",)
    book.restore(0, 4.0, "rolled back")
    assert book.rule("lead-qualification", "AssignToSDR") is None
    assert book.current.tasks == ()


def test_escalations_are_served_in_seconds_with_their_version() -> None:
    book = PolicyBook()
    assert book.escalation("deal-approval-gate", "SendToSalesManager") is None
    v = book.apply(Change("escalation", "deal-approval-gate", "SendToSalesManager",
                          escalation=Escalation(2.0, "director")), 1.0, "stuck approvals")
    rule = book.escalation("deal-approval-gate", "SendToSalesManager")
    assert (rule.after, rule.to_role, rule.version) == (7200.0, "director", v.version)
    book.apply(Change("escalation", "deal-approval-gate", "SendToSalesManager"), 2.0, "off")
    assert book.escalation("deal-approval-gate", "SendToSalesManager") is None
    assert book.current.tasks == ()



def test_the_bench_reports_recall_and_false_positives(mapek_eval) -> None:
    """What CI runs of `bench/mapek_eval.py --planners` (two seeds per world)."""
    runs = [mapek_eval.evaluate_planner(s, seed) for s in mapek_eval.PLANNER_SCENARIOS
            for seed in (7, 8)]
    summary = mapek_eval.summarize_planners(runs)
    assert set(summary) == {"routing_optimization", "escalation", "capacity"}
    for planner, row in summary.items():
        assert (row["recall"], row["false_positive_rate"]) == (1.0, 0.0), (planner, row)
    assert summary["routing_optimization"]["estimate_mean_abs_error"] < 0.3
    assert summary["escalation"]["estimate_mean_abs_error"] < 0.1  # the alert's precision
