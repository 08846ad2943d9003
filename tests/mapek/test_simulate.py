"""The pipeline simulation (`caseloop simulate`): every branch of the five workflows is
exercised, the same seed gives the same history in two databases, and what it writes
is served by `caseloop serve` afterwards. Real runtime, real SQLite, real processes."""

from __future__ import annotations

import datetime as dt
import functools
import pathlib
import sqlite3
import subprocess
import sys
from collections import Counter
from typing import Any

import httpx
import pytest

from actors import placeholder_actions
from actors.assignment import least_loaded
from actors.icp import icp_action, load_profile
from adapters.people import authorize, load_directory
from adapters.registry import workflow_files
from adapters.simulation import load_simulation_config, people_of, simulate_into
from adapters.slas import SlaBook, load_slos
from engine import compile_document
from engine.events import (
    SlaBreached,
    TaskFired,
    TimerFired,
    WorkItemCompleted,
    WorkItemEnabled,
    decode_events,
)
from mapek.pipeline_mix import SimulationConfig
from mapek.simulate import WORKFLOWS, simulate_pipeline
from mapek.twin import MemoryStore

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
START = dt.datetime(2025, 10, 13, tzinfo=dt.UTC).timestamp()  # a Monday
pytestmark = pytest.mark.anyio

# The HTTP tests' server helper (tests/adapters/http_kit.py: a real `caseloop serve`).
sys.path.insert(0, str(ROOT / "tests" / "adapters"))
from http_kit import serving  # noqa: E402


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_memory_run_exercises_every_branch_of_the_pipeline() -> None:
    directory = load_directory(SPECS / "roles.yaml")
    store = MemoryStore()
    actions = placeholder_actions()
    actions.register("icp_score", icp_action(load_profile(
        (SPECS / "icp.yaml").read_text(encoding="utf-8"))))
    actions.register("assign_least_loaded", least_loaded(directory.people_with_role, store))
    nets = [compile_document(f.read_text(encoding="utf-8")) for f in workflow_files(SPECS)]
    summary = await simulate_pipeline(
        store, nets, actions, SimulationConfig(), people_of(directory), deals=400, days=21,
        pattern="seasonal", seed=3, start=START,
        slas=SlaBook(load_slos(SPECS / "slos.yaml"), directory),
        authorize=functools.partial(authorize, directory),
        signals_by="integrations@acme.com")
    done: Counter[tuple[str, str | None]] = Counter()
    fired, by = Counter[str](), Counter[str]()
    tasks: dict[tuple[str, int], str] = {}
    breaches = 0
    for _, cid, _, events in await store.read_events(0, 10**7):
        for e in events:
            t = type(e)
            if t is WorkItemEnabled:
                tasks[(cid, e.item)] = e.task
            elif t is WorkItemCompleted:
                done[(tasks[(cid, e.item)], e.result)] += 1
                by[e.by or ""] += 1
            elif t is TaskFired or t is TimerFired:
                fired[getattr(e, "task", None) or tasks[(cid, e.item)]] += 1
            breaches += t is SlaBreached
    results = {task for task, _ in done}
    # WF1: all three routes, and both of the manager's answers.
    assert {"AssignToSDR", "ArchiveLead", "ManualReview"} <= results
    assert done[("ValidateContactInfo", "invalid")] and done[("ManualReview", "qualified")]
    # WF2: every approval, above 250K the executive check; rejections cancel the rest.
    assert {"SendToSalesManager", "SendToLegal", "SendToFinance", "ExecutiveCheck",
            "AllApprovalsComplete"} <= results
    assert fired["RejectDeal"] == sum(done[(t, "rejected")] for t in (
        "SendToSalesManager", "SendToLegal", "SendToFinance", "ExecutiveCheck")) > 0
    # WF3: standard e-signature, custom legal review with amendments, MSA executive review.
    assert {"SendForSignature", "LegalReview", "RequestAmendments", "ExecutiveReview",
            "CustomerSignature", "SetupProcurement"} <= results
    assert done[("LegalReview", "approved")] and done[("LegalReview", "amendments")]
    assert fired["ContractSigned"] and fired["ContractRejected"]
    # WF4: approvers by authority band, revisions.
    assert {"JustifyDiscount", "SalesManagerApproval", "DirectorApproval", "CFOApproval",
            "BoardApproval"} <= results
    assert done[("DirectorApproval", "revise")] + done[("CFOApproval", "revise")] > 0
    # WF5: the deferred choice both ways; payments reported by the billing system.
    assert {"PrepaymentReceived", "SendInvoice", "PaymentReceived", "BookRevenue",
            "SetupBilling"} <= results
    # People, customers (signals), actions and timers all did work.
    assert by["integrations@acme.com"] and by["timer"] and by["action:assign_least_loaded"]
    assert by["olivia.bennett@acme.com"] and by["lisa.wong@acme.com"]  # authority limits
    assert breaches == summary.sla_breaches > 0
    assert summary.deals_planned == 400 and summary.deals >= 390
    assert summary.unstaffed == 0
    assert {p.workflow_id for p in summary.phases} == set(WORKFLOWS)


def histories(db: pathlib.Path) -> dict[str, list[bytes]]:
    """Every case's log, append by append, as stored (encoded events)."""
    conn = sqlite3.connect(db)
    try:
        out: dict[str, list[bytes]] = {}
        for cid, body in conn.execute("SELECT case_id, body FROM events"
                                      " ORDER BY case_id, first_seq"):
            out.setdefault(cid, []).append(bytes(body))
        return out
    finally:
        conn.close()


async def test_the_same_seed_gives_the_same_history_and_another_seed_another(
        tmp_path: pathlib.Path) -> None:
    run = functools.partial(simulate_into, deals=60, days=5, pattern="burst",
                            start=START, specs=str(SPECS))
    one, two, other = (tmp_path / n for n in ("one.db", "two.db", "other.db"))
    first = await run(str(one), seed=11)
    second = await run(str(two), seed=11)
    assert first == second
    a, b = histories(one), histories(two)
    assert len(a) > 60 and a == b
    await run(str(other), seed=12)
    c = histories(other)
    assert set(c) != set(a) or c != a  # ids carry the seed; the histories differ too
    strip = {k.replace("-s12-", "-s11-"): v for k, v in c.items()}
    assert strip != a
    with pytest.raises(ValueError, match="already holds"):
        await run(str(one), seed=11)  # one simulation per (start, seed) per database


async def test_waiting_for_the_disk_changes_nothing_of_the_history(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write-behind queue the simulation waits to empty at every step (it pauses for the disk
    again and again) writes the same history as one that never pauses."""
    import adapters.simulation as simulation

    fronts: list[simulation.WriteBehind] = []

    class Recorded(simulation.WriteBehind):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            fronts.append(self)

    monkeypatch.setattr(simulation, "WriteBehind", Recorded)
    run = functools.partial(simulate_into, deals=40, days=4, pattern="burst", seed=5,
                            start=START, specs=str(SPECS))
    monkeypatch.setattr(simulation, "BACKLOG", 10**9)
    free = await run(str(tmp_path / "free.db"))
    monkeypatch.setattr(simulation, "BACKLOG", 0)  # wait for every append
    held = await run(str(tmp_path / "held.db"))
    assert fronts[0].pauses == 0 and fronts[1].pauses > 10
    assert fronts[1].queued == 0  # every append committed before the run ended
    assert held == free
    assert histories(tmp_path / "held.db") == histories(tmp_path / "free.db")


def test_the_shipped_config_is_the_default_and_bad_fields_are_located(
        tmp_path: pathlib.Path) -> None:
    assert load_simulation_config(SPECS / "simulation.yaml") == SimulationConfig()
    bad = tmp_path / "simulation.yaml"
    bad.write_text("people:\n  roles:\n    sdr: {median_hours: -1}\n")
    # (msgspec does not name a mapping's key in its path: roles[...] here)
    with pytest.raises(ValueError, match=r"simulation.yaml: /people/roles.*/median_hours: "
                                         r"Expected `float` > 0"):
        load_simulation_config(bad)
    bad.write_text("customers:\n  prepay_rate: 0.2\n")
    with pytest.raises(ValueError, match=r"/customers/prepay_rate: unknown field"):
        load_simulation_config(bad)


def test_caseloop_simulate_then_serve(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "sim.db"
    done = subprocess.run(
        [sys.executable, "-m", "adapters.cli", "simulate", "--deals", "200", "--days", "7",
         "--seed", "1", "--db", str(db), "--specs", str(SPECS)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "revenue-recognition" in done.stdout and "deals opened" in done.stdout
    conn = sqlite3.connect(db)
    try:
        entered = dict(conn.execute("SELECT workflow_id, count(*) FROM phases GROUP BY 1"))
        assert set(entered) == set(WORKFLOWS) and min(entered.values()) > 5
        assert conn.execute("SELECT count(*) FROM work_items WHERE kind = 'human'"
                            ).fetchone()[0] > 0
        assert conn.execute("SELECT count(*) FROM specs").fetchone()[0] == len(WORKFLOWS)
        assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
        kinds: Counter[str] = Counter()
        for (body,) in conn.execute("SELECT body FROM events"):
            kinds.update(type(e).__name__ for e in decode_events(bytes(body)))
    finally:
        conn.close()
    assert kinds["SlaBreached"] > 0 and kinds["WorkItemCompleted"] > 1000

    with serving(tmp_path, db=db) as srv:
        api = httpx.Client(base_url=srv.url + "/api/v1", timeout=30.0)
        try:
            for wf in WORKFLOWS:
                r = api.get("/cases", params={"workflow": wf, "limit": 5})
                assert r.status_code == 200, r.text
                assert r.json()["cases"], wf
            case: dict[str, Any] = api.get("/cases", params={"limit": 1}).json()["cases"][0]
            assert case["case_id"].startswith("sim-")
            r = api.get(f"/cases/{case['case_id']}/history")
            assert r.status_code == 200 and r.json()["events"]
        finally:
            api.close()
