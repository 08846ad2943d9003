"""Applied policies take effect where the runtime runs: an escalation moves the SLA
alert of *new* work items earlier (the SLA book asks the policy book when it arms a
deadline) and the early alert reaches the escalation's role with the usual
recipients; a rollback restores the SLO's own alert. The escalation role comes from
roles.yaml (the holders' manager, else a role acting as theirs). `caseloop simulate`
runs under the database's policies: routing at the lead assignment keeps the avoided
SDR out of new leads and their deals, and escalations fire early in the simulation too.

Real parts only: SQLite files, the runtime on a VirtualClock, the shipped specs."""

from __future__ import annotations

import json
import pathlib
import sqlite3
from typing import Any

import anyio
import pytest

from actors import Runtime, VirtualClock
from adapters.people import load_directory
from adapters.simulation import simulate_into
from adapters.slas import HOUR, SlaBook, load_slos
from adapters.sqlite_store import KnowledgeStore, SQLiteStore
from engine import compile_document, decode_events
from engine.events import CaseCreated, SlaBreached, WorkItemCompleted, WorkItemEnabled
from mapek.knowledge import record
from mapek.policy import Change, Escalation, PolicyBook

pytestmark = pytest.mark.anyio

SPECS = pathlib.Path(__file__).resolve().parents[2] / "specs"
DIRECTORY = load_directory(SPECS / "roles.yaml")
T0 = 1_780_000_000.0
DIRECTOR = "olivia.bennett@acme.com"
SLOW = "david.park@acme.com"
APPROVAL = compile_document(json.dumps({
    "id": "approval", "tasks": [{"id": "SendToSalesManager", "role": "sales_manager"}],
    "flows": [{"from": "start", "to": "SendToSalesManager"},
              {"from": "SendToSalesManager", "to": "end"}]}))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def outbox(db: str) -> list[tuple[str, str, str, str]]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT topic, channel, target, payload FROM outbox ORDER BY id"
                           ).fetchall()
    finally:
        con.close()


async def test_an_escalation_alerts_new_work_early_and_its_rollback_restores(
        tmp_path: pathlib.Path) -> None:
    db = str(tmp_path / "db")
    book = PolicyBook()
    slas = SlaBook(load_slos(SPECS / "slos.yaml"), DIRECTORY, {"email"}, book)
    clock = VirtualClock(T0)
    async with SQLiteStore(db) as store:  # type: ignore[arg-type]
        rt = Runtime(store, clock, slas=slas, dispatch=book)
        rt.add_net(APPROVAL)
        async with rt:
            await rt.create("approval", "before", {})
            await rt.wait_idle()
            v = book.apply(Change("escalation", "approval", "SendToSalesManager",
                                  escalation=Escalation(2.0, "director")), T0, "stuck")
            await rt.create("approval", "under", {})
            await rt.wait_idle()
            # The item enabled under the policy breaches at 2 h; the one before, at the
            # SLO's own 24 h.
            assert clock.next_deadline() == T0 + 2 * HOUR
            clock.advance_to(T0 + 2 * HOUR)
            await rt.wait_idle()
            (early,) = [e for e in await store.events("under") if type(e) is SlaBreached]
            assert (early.at, early.alert, early.target) == (T0 + 2 * HOUR, 2 * HOUR,
                                                             4 * HOUR)
            assert [e for e in await store.events("before") if type(e) is SlaBreached] == []
            rows = outbox(db)
            assert {r[0] for r in rows} == {"sla.escalated"}
            targets = [r[2] for r in rows]
            assert targets[0] == DIRECTOR  # who can act hears first, then the usual
            assert set(targets) == {DIRECTOR, "marcus.thompson@acme.com",
                                    "lisa.wong@acme.com"}
            payload = json.loads(rows[0][3])
            assert (payload["escalated_to"], payload["policy_version"]) == ("director",
                                                                            v.version)

            book.restore(0, T0 + 2 * HOUR, "rolled back")
            await rt.create("approval", "after", {})
            await rt.wait_idle()
            clock.advance_to(T0 + 26 * HOUR)  # "after" was enabled at T0 + 2 h
            await rt.wait_idle()
            for case in ("before", "after"):
                (late,) = [e for e in await store.events(case) if type(e) is SlaBreached]
                assert late.alert == 24 * HOUR
            assert {r[0] for r in outbox(db)} == {"sla.escalated", "sla.breached"}


def test_escalations_go_to_the_managers_role_or_one_that_acts_as_it() -> None:
    slas = SlaBook(load_slos(SPECS / "slos.yaml"), DIRECTORY)
    assert slas.escalation_role("sdr") == "sales_manager"  # Marcus manages the SDRs
    assert slas.escalation_role("sales_manager") == "director"  # Olivia manages Marcus
    assert slas.escalation_role("legal_counsel") == "cfo"  # nobody manages Priya
    assert slas.escalation_role("finance_manager") == "cfo"
    assert slas.escalation_role("cfo") == "ceo"
    assert slas.escalation_role("ceo") is None
    terms = slas.terms("deal-approval-gate", "SendToSalesManager")
    assert (terms.target_hours, terms.alert_hours, terms.compliance_target) == (4, 24, 0.98)


# ---------------------------------------------------------------- simulate
def completions(db: pathlib.Path) -> list[tuple[str, str, Any]]:
    """(case, task, event) of every completion and SLA breach in the database."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT case_id, body FROM events ORDER BY pos").fetchall()
    finally:
        con.close()
    tasks: dict[tuple[str, int], str] = {}
    out = []
    for case, body in rows:
        for e in decode_events(body):
            if type(e) is WorkItemEnabled:
                tasks[(case, e.item)] = e.task
            elif type(e) is WorkItemCompleted:
                out.append((case, tasks.get((case, e.item), "?"), e))
            elif type(e) is SlaBreached:
                out.append((case, e.task, e))
    return out


async def applied(db: pathlib.Path) -> None:
    """What `apply` writes: policy versions in the knowledge log (routing around the
    slow SDR at the lead assignment; escalating stuck manager approvals after 1 h)."""
    book = PolicyBook()
    async with SQLiteStore(str(db)) as store:  # type: ignore[arg-type]
        versions = [
            book.apply(Change("routing", "pricing-exception", "JustifyDiscount",
                              avoid=(SLOW,), assigned_at="lead-qualification/AssignToSDR"),
                       T0, "rec_1 applied by olivia", "rec_1"),
            book.apply(Change("escalation", "deal-approval-gate", "SendToSalesManager",
                              escalation=Escalation(1.0, "director")), T0,
                       "rec_2 applied by olivia", "rec_2")]
        await KnowledgeStore(store).append_knowledge(
            [record(T0, "policy", str(v.version), v) for v in versions])


def simulate(db: pathlib.Path, seed: int, messages: list[str] | None = None) -> None:
    anyio.run(lambda: simulate_into(str(db), deals=60, days=5, pattern="base", seed=seed,
                                    start=T0, specs=str(SPECS), messages=messages))


def test_simulate_runs_under_the_applied_policies(tmp_path: pathlib.Path) -> None:
    plain, steered = tmp_path / "plain.db", tmp_path / "steered.db"
    simulate(plain, 5)
    anyio.run(applied, steered)
    said: list[str] = []
    simulate(steered, 5, said)
    assert any("policy version 2 in force" in m for m in said), said

    def assigned(db: pathlib.Path) -> list[str]:
        return [e.output["assigned_to"] for _c, t, e in completions(db)
                if t == "AssignToSDR" and isinstance(e, WorkItemCompleted)]

    def alerts(db: pathlib.Path) -> set[float]:
        return {e.alert for _c, t, e in completions(db)
                if t == "SendToSalesManager" and isinstance(e, SlaBreached)}

    assert SLOW in assigned(plain)  # least-loaded round robin gives everyone leads
    leads = assigned(steered)
    assert len(leads) > 10 and SLOW not in leads
    # A deal opened from a lead of the run is owned -- and its SDR work done -- by the
    # lead's SDR; deals whose lead came before the run keep the owner they had.
    owners = deal_owners(steered)
    from_leads = {c for c, (lead, _o) in owners.items() if lead}
    assert len(from_leads) > 10
    assert SLOW not in {owners[c][1] for c in from_leads}
    assert SLOW not in {e.by for c, t, e in completions(steered)
                        if c in from_leads and isinstance(e, WorkItemCompleted)}
    # Manager approvals still open after 1 h alert then, not at the SLO's 24 h.
    assert 24 * HOUR in alerts(plain) and 1 * HOUR not in alerts(plain)
    assert alerts(steered) == {1 * HOUR}


def deal_owners(db: pathlib.Path) -> dict[str, tuple[str | None, str | None]]:
    """deal case -> (the lead it came from, if any; its owner)."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT case_id, body FROM events ORDER BY pos").fetchall()
    finally:
        con.close()
    return {case: (e.data.get("lead_id"), e.data.get("owner"))
            for case, body in rows for e in decode_events(body)
            if type(e) is CaseCreated and e.workflow_id == "deal-approval-gate"}
