"""The runtime drives the five pipeline specs end to end under a virtual clock with the
placeholder actions (the tutorial's TechCorp lead and deal, and the other routes)."""

from __future__ import annotations

from typing import Any

import pytest
from actors_kit import (
    DEAL_600K,
    PIPELINE,
    TECHCORP_LEAD,
    completed_tasks,
    pipeline_nets,
    replayed,
    running,
    state,
)

from actors import ActionContext, Runtime, VirtualClock, placeholder_actions
from actors.actions import AWAIT_CALLBACK
from engine.events import CaseHandedOn, TimerFired, WorkItemCompleted, WorkItemStarted
from engine.net import KIND_NAME

pytestmark = pytest.mark.anyio
DAY = 86400.0


async def drive(rt: Runtime, clock: VirtualClock, case_id: str,
                answers: dict[str, str] | None = None, *, wait: bool = False,
                outputs: dict[str, dict[str, Any]] | None = None) -> Any:
    """Play the people: complete every open human work item with the answer for its
    task ("approved" unless told otherwise); when nobody has anything to do, let time
    pass to the next deadline. With `wait`, never answer: only time passes."""
    answers, outputs = answers or {}, outputs or {}
    for _ in range(200):
        await rt.wait_idle()
        case = await rt.get(case_id)
        if case.status != "active":
            return case
        human = [i for i in case.work_items()
                 if KIND_NAME[case.net.tasks[i.task].kind] == "human" and i.state != "failed"]
        if human and not wait:
            it = human[0]
            task = case.net.tasks[it.task].id
            await rt.complete(case_id, it.id, answers.get(task, "approved"),
                              outputs.get(task))
        elif not clock.advance_to_next():
            return case
    raise AssertionError(f"{case_id} did not finish")


def handed_on(log: list[Any]) -> list[str]:
    return [e.workflow_id for e in log if type(e) is CaseHandedOn]


async def test_all_five_specs_are_registered(db: str) -> None:
    async with running(db, VirtualClock(0.0), pipeline_nets(), placeholder_actions()) as (_, rt):
        assert sorted(n.workflow_id for n in rt.workflows()) == sorted(PIPELINE)


async def test_techcorp_lead_is_scored_72_and_assigned_to_an_sdr(db: str) -> None:
    clock = VirtualClock(1_700_000_000.0)
    async with running(db, clock, pipeline_nets(), placeholder_actions(),
                       snapshot_every=3) as (store, rt):
        case = await rt.create("lead-qualification", "lead_techcorp_001", TECHCORP_LEAD)
        assert case.enabled_tasks() == ["ReceiveMarketingLead"]
        await rt.complete("lead_techcorp_001", "ReceiveMarketingLead", "received")
        await rt.complete("lead_techcorp_001", "ValidateContactInfo", "valid",
                          {"email_valid": True})
        await rt.wait_idle()
        case = await rt.get("lead_techcorp_001")
        assert case.status == "completed"
        assert case.data["lead_score"] == 72
        log = await store.events("lead_techcorp_001")
        assert completed_tasks(log) == ["ReceiveMarketingLead", "ValidateContactInfo",
                                        "ScoringDecision", "AssignToSDR"]
        by = [e.by for e in log if type(e) is WorkItemCompleted]
        assert by[2:] == ["action:icp_score", "action:assign_least_loaded"]
        assert rt.incidents == []
        assert state(replayed(log, pipeline_nets())) == state(case)


async def test_small_lead_is_archived(db: str) -> None:
    clock = VirtualClock(0.0)
    async with running(db, clock, pipeline_nets(), placeholder_actions()) as (store, rt):
        await rt.create("lead-qualification", "lead_small", {**TECHCORP_LEAD,
                                                              "company_size": 20,
                                                              "use_case": ""})
        case = await drive(rt, clock, "lead_small", {"ValidateContactInfo": "valid"})
        assert case.status == "completed" and case.data["lead_score"] == 20
        assert completed_tasks(await store.events("lead_small"))[-1] == "ArchiveLead"


async def test_techcorp_deal_600k_goes_through_wf2_wf3_wf5_to_completed(db: str) -> None:
    clock = VirtualClock(1_700_000_000.0)
    async with running(db, clock, pipeline_nets(), placeholder_actions(),
                       snapshot_every=3) as (store, rt):
        case = await rt.create("deal-approval-gate", "deal_techcorp_001", DEAL_600K)
        assert sorted(case.enabled_tasks()) == sorted(
            ["SendToSalesManager", "SendToLegal", "SendToFinance", "ExecutiveCheck"])
        case = await drive(rt, clock, "deal_techcorp_001", {"PaymentReceived": "paid"})
        assert case.status == "completed"
        assert case.net.workflow_id == "revenue-recognition"
        assert case.data["approval_status"] == "approved"
        assert case.data["contract_status"] == "signed"
        log = await store.events("deal_techcorp_001")
        assert handed_on(log) == ["contract-processing", "revenue-recognition"]
        tasks = completed_tasks(log)
        for t in ("AllApprovalsComplete", "PrepareContract", "SendForSignature",
                  "SendInvoice", "PaymentReceived", "BookRevenue",
                  "SetupBilling"):
            assert t in tasks
        assert not any(type(e) is TimerFired for e in log), "nothing had to time out"
        assert rt.incidents == []
        assert state(replayed(log, pipeline_nets())) == state(case)
    async with running(db, clock, pipeline_nets(), placeholder_actions()) as (store, rt):
        assert state(await rt.get("deal_techcorp_001")) == state(case)


async def test_discounted_deal_goes_through_pricing_exception(db: str) -> None:
    clock = VirtualClock(0.0)
    async with running(db, clock, pipeline_nets(), placeholder_actions(),
                       snapshot_every=5) as (store, rt):
        await rt.create("deal-approval-gate", "deal_disc", {**DEAL_600K,
                                                            "discount_percent": 0.08})
        case = await drive(rt, clock, "deal_disc", outputs={"JustifyDiscount": {
            "justification": "multi-year commitment", "discount_percent": 0.08}})
        assert case.status == "completed"
        log = await store.events("deal_disc")
        assert handed_on(log) == ["contract-processing", "pricing-exception",
                                  "revenue-recognition"]
        assert "DirectorApproval" in completed_tasks(log)
        assert case.data["pricing_status"] == "approved"
        assert case.data["discount_justification"] == "multi-year commitment"


async def test_unsigned_contract_expires_after_five_days(db: str) -> None:
    clock = VirtualClock(0.0)
    actions = placeholder_actions()

    async def sent(ctx: ActionContext) -> Any:  # handed to the e-signature service,
        return AWAIT_CALLBACK  # whose callback never comes

    actions.register("e_signature", sent)
    async with running(db, clock, pipeline_nets(), actions) as (store, rt):
        await rt.create("deal-approval-gate", "deal_exp", DEAL_600K)
        for t in ("SendToSalesManager", "SendToLegal", "SendToFinance", "ExecutiveCheck"):
            await rt.complete("deal_exp", t, "approved")
        case = await drive(rt, clock, "deal_exp", wait=True)
        assert case.status == "completed" and case.net.workflow_id == "contract-processing"
        assert case.data["contract_status"] == "expired"
        log = await store.events("deal_exp")
        (fired,) = [e for e in log if type(e) is TimerFired]
        assert fired.at == pytest.approx(5 * DAY)
        assert handed_on(log) == ["contract-processing"]
        started = [e for e in log if type(e) is WorkItemStarted]
        assert [e.by for e in started] == ["awaiting:e_signature"]  # claimed while waiting


async def test_rejected_deal_ends_in_wf2(db: str) -> None:
    clock = VirtualClock(0.0)
    async with running(db, clock, pipeline_nets(), placeholder_actions()) as (store, rt):
        await rt.create("deal-approval-gate", "deal_rej", DEAL_600K)
        await rt.complete("deal_rej", "SendToFinance", "approved")
        case = await rt.complete("deal_rej", "SendToLegal", "rejected")
        await rt.wait_idle()
        case = await rt.get("deal_rej")
        assert case.status == "completed" and case.net.workflow_id == "deal-approval-gate"
        assert case.data["approval_status"] == "rejected"
        assert case.work_items() == [] and await store.pending_timers() == []
        assert handed_on(await store.events("deal_rej")) == []
