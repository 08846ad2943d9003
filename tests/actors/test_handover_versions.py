"""Hand-over keeps one case id and one history; a case stays on the workflow version it
started with."""

from __future__ import annotations

import json
import sqlite3

import pytest
from actors_kit import (
    DEAL_600K,
    HUMAN_APPROVALS,
    SPECS,
    net_of,
    pipeline_nets,
    replayed,
    running,
    spec_net,
    state,
)

from actors import VirtualClock, WorkflowNotFound, placeholder_actions
from engine.events import CaseCreated, CaseHandedOn

pytestmark = pytest.mark.anyio

DEAL = spec_net("deal-approval-gate")


def deal_v2():
    """deal-approval-gate v2: legal review only above 1M ACV (v1: above 50K)."""
    doc = json.loads((SPECS / "deal-approval-gate.json").read_text())
    doc["version"] = 2
    for f in doc["flows"]:
        if f["to"] == "SendToLegal":
            f["when"] = "deal_acv > 1000000"
    return net_of(doc)


@pytest.mark.parametrize("snapshot_every", [100, 3])
async def test_hand_over_keeps_the_case_id_and_one_continuous_history(
        db: str, snapshot_every: int) -> None:
    nets = pipeline_nets()
    async with running(db, VirtualClock(0.0), nets, placeholder_actions(),
                       snapshot_every=snapshot_every) as (store, rt):
        # A custom contract: WF3 then waits for legal review (a standard one would be
        # e-signed at once by the placeholder action and go straight on to WF5).
        await rt.create("deal-approval-gate", "deal_techcorp_001",
                        {**DEAL_600K, "contract_type": "custom"})
        for t in HUMAN_APPROVALS:
            await rt.complete("deal_techcorp_001", t, "approved")
        await rt.wait_idle()
        case = await rt.get("deal_techcorp_001")
        assert case.case_id == "deal_techcorp_001"
        assert case.net.workflow_id == "contract-processing" and case.status == "active"
        assert case.data["approval_status"] == "approved"
        log = await store.events("deal_techcorp_001")
        assert type(log[0]) is CaseCreated
        assert (log[0].case_id, log[0].workflow_id) == ("deal_techcorp_001",
                                                         "deal-approval-gate")
        assert [e.workflow_id for e in log if type(e) is CaseHandedOn] == \
            ["contract-processing"]
        assert state(replayed(log, nets)) == state(case), "one history rebuilds the case"
        assert await store.events("contract-processing") == []
        before = state(case)
    async with running(db, VirtualClock(0.0), nets, placeholder_actions(),
                       snapshot_every=snapshot_every) as (store, rt):
        assert state(await rt.get("deal_techcorp_001")) == before


@pytest.mark.parametrize("snapshot_every", [100, 3])
async def test_each_case_stays_on_the_version_it_started_with(db: str,
                                                             snapshot_every: int) -> None:
    v2 = deal_v2()
    nets = [*pipeline_nets(), v2]
    async with running(db, VirtualClock(0.0), pipeline_nets(), placeholder_actions(),
                       snapshot_every=snapshot_every) as (store, rt):
        old = await rt.create("deal-approval-gate", "old",
                              {**DEAL_600K, "contract_type": "custom"})  # WF3 waits
        await rt.complete("old", "SendToFinance", "approved")
        rt.add_net(v2)  # v2 registered while "old" is running
        new = await rt.create("deal-approval-gate", "new", DEAL_600K)
        assert new.net.version == 2 and "SendToLegal" not in new.enabled_tasks()
        old = await rt.get("old")
        assert old.net.version == 1 and "SendToLegal" in old.enabled_tasks()
        await rt.complete("old", "SendToLegal", "approved")  # a v1-only task
        assert rt.net("deal-approval-gate").version == 2
        assert rt.net("deal-approval-gate", 1).version == 1
        with pytest.raises(WorkflowNotFound):
            rt.net("deal-approval-gate", 3)
    # after a restart (activation from snapshot or log) the versions are the same
    async with running(db, VirtualClock(0.0), nets, placeholder_actions(),
                       snapshot_every=snapshot_every) as (store, rt):
        old = await rt.get("old")
        assert (old.net.workflow_id, old.net.version) == ("deal-approval-gate", 1)
        assert "SendToLegal" not in old.enabled_tasks()
        assert (await rt.get("new")).net.version == 2
        for t in ("SendToSalesManager", "ExecutiveCheck"):
            await rt.complete("old", t, "approved")
        await rt.wait_idle()
        old = await rt.get("old")
        assert old.net.workflow_id == "contract-processing"  # handed on, same case
        log = await store.events("old")
        assert type(log[0]) is CaseCreated and log[0].version == 1
        newer = await store.events("new")
        assert newer[0].version == 2


async def test_the_cases_row_follows_the_case_through_hand_over_and_end(db: str) -> None:
    """The store writes only time and version for a command that opens or closes no
    phase; the row still shows each workflow the case enters and how it ends."""

    def row() -> tuple:
        with sqlite3.connect(db) as con:
            return con.execute("SELECT workflow_id, workflow_version, state, created_at,"
                               " updated_at, closed_at, seq FROM cases WHERE case_id = 'd'"
                               ).fetchone()

    clock = VirtualClock(0.0)
    async with running(db, clock, pipeline_nets(), placeholder_actions()) as (_store, rt):
        await rt.create("deal-approval-gate", "d", {**DEAL_600K, "contract_type": "custom"})
        for n, t in enumerate(HUMAN_APPROVALS, start=1):
            clock.advance_to(60.0 * n)
            await rt.complete("d", t, "approved")
            if n < len(HUMAN_APPROVALS):  # an ordinary command: time and version move
                case = await rt.get("d")
                assert row() == ("deal-approval-gate", 1, "active", 0.0, 60.0 * n, None,
                                 case.version)
        await rt.wait_idle()
        case = await rt.get("d")
        assert case.net.workflow_id == "contract-processing"
        assert row() == ("contract-processing", case.net.version, "active", 0.0,
                         60.0 * len(HUMAN_APPROVALS), None, case.version)
        clock.advance_to(1000.0)
        case = await rt.cancel("d", "deal lost")
        assert row() == ("contract-processing", case.net.version, "cancelled", 0.0, 1000.0,
                         1000.0, case.version)


@pytest.mark.parametrize("snapshot_every", [100, 3])
async def test_a_hand_over_the_next_workflow_refuses_leaves_the_case_as_its_log_has_it(
        db: str, snapshot_every: int) -> None:
    """The completion that ends a workflow hands the case on in the same step; when the
    next workflow refuses the data (its own schema), the refusal stands and the case in
    memory is the one its log rebuilds -- not ended in a workflow it never left (found:
    GET /cases showed such a deal "completed" while its log had it waiting)."""
    doc = json.loads((SPECS / "contract-processing.json").read_text())
    doc["data"]["required"].append("signing_officer")  # which deals do not carry
    nets = [n for n in pipeline_nets() if n.workflow_id != "contract-processing"]
    nets.append(net_of(doc))
    async with running(db, VirtualClock(0.0), nets, placeholder_actions(),
                       snapshot_every=snapshot_every) as (store, rt):
        await rt.create("deal-approval-gate", "deal_techcorp_001", DEAL_600K)
        for t in HUMAN_APPROVALS:
            await rt.complete("deal_techcorp_001", t, "approved")
        await rt.wait_idle()  # the automatic merge's completion is refused: an incident
        assert [i.task for i in rt.incidents] == ["AllApprovalsComplete"]
        case = await rt.get("deal_techcorp_001")
        assert case.net.workflow_id == "deal-approval-gate" and case.status == "active"
        log = await store.events("deal_techcorp_001")
        assert not any(type(e) is CaseHandedOn for e in log)
        assert state(case) == state(replayed(log, nets))
