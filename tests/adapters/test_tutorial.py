"""The tutorial (seeds/000_..., Parts 2-4) end to end, against a real `caseloop serve`.

Requests go through curl with the tutorial's own command lines, copied verbatim below
(only `@workflows/x.json` becomes `@specs/x.json`, and `localhost:8080` the test
server), so the bodies arrive exactly as a user's would: some with
`-H "Content-Type: application/json"`, most as curl's default
application/x-www-form-urlencoded, multi-line JSON as written. The `| jq ...` filters
of the tutorial are applied in Python. curl gets `-sS -w <status>` on top, which change
nothing about what is sent.

The tests run in file order on one server (module scope): each step builds on the
previous ones, as in the tutorial; the last one restarts the server on the same db.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
import shutil
import subprocess
from typing import Any

import pytest
from http_kit import ROOT, Server, poll

pytestmark = pytest.mark.skipif(
    shutil.which("curl") is None,
    reason="curl is not installed: this walkthrough sends the tutorial's curl lines as is")

TUTORIAL_BASE = "http://localhost:8080"

# ------------------------------------------------------------ Part 2, Step 1 (verbatim)
REGISTER = {
    "lead-qualification": """
curl -X POST http://localhost:8080/api/v1/workflows \\
  -H "Content-Type: application/json" \\
  -d @workflows/lead-qualification.json
""",
    "deal-approval-gate": """
curl -X POST http://localhost:8080/api/v1/workflows \\
  -H "Content-Type: application/json" \\
  -d @workflows/deal-approval-gate.json
""",
    "contract-processing": """
curl -X POST http://localhost:8080/api/v1/workflows \\
  -d @workflows/contract-processing.json
""",
    "pricing-exception": """
curl -X POST http://localhost:8080/api/v1/workflows \\
  -d @workflows/pricing-exception.json
""",
    "revenue-recognition": """
curl -X POST http://localhost:8080/api/v1/workflows \\
  -d @workflows/revenue-recognition.json
""",
}
LIST_WORKFLOWS = "curl http://localhost:8080/api/v1/workflows"  # | jq '.workflows | length'

# ------------------------------------------------------------ Part 3, Step 1-2 (verbatim)
CREATE_LEAD = """
curl -X POST http://localhost:8080/api/v1/workflows/lead-qualification/cases \\
  -H "Content-Type: application/json" \\
  -d '{
    "case_id": "lead_techcorp_001",
    "data": {
      "company_name": "TechCorp",
      "contact_name": "John Smith",
      "contact_email": "john.smith@techcorp.com",
      "company_size": 5000,
      "industry": "IT Consulting",
      "location": "San Francisco, CA",
      "use_case": "Enterprise Analytics"
    }
  }'
"""
RECEIVE_LEAD = """
curl -X POST http://localhost:8080/api/v1/cases/lead_techcorp_001/tasks/ReceiveMarketingLead/complete \\
  -d '{"result": "received"}'
"""  # noqa: E501  (the tutorial's line)
VALIDATE_CONTACT = """
curl -X POST http://localhost:8080/api/v1/cases/lead_techcorp_001/tasks/ValidateContactInfo/complete \\
  -d '{
    "result": "valid",
    "output_data": {
      "email_valid": true,
      "phone_valid": true,
      "company_verified": true
    }
  }'
"""  # noqa: E501
SHOW_LEAD = "curl http://localhost:8080/api/v1/cases/lead_techcorp_001"  # | jq '...'

# ------------------------------------------------------------ Part 3, Step 3-6 (verbatim)
CREATE_DEAL = """
curl -X POST http://localhost:8080/api/v1/workflows/deal-approval-gate/cases \\
  -H "Content-Type: application/json" \\
  -d '{
    "case_id": "deal_techcorp_001",
    "data": {
      "deal_name": "TechCorp Enterprise Analytics",
      "customer_name": "TechCorp",
      "customer_id": "cust_5893",
      "deal_acv": 600000,
      "deal_value_3yr": 1800000,
      "discount_percent": 0,
      "margin_percent": 0.80,
      "sdr_name": "Sarah Chen",
      "manager_name": "Marcus Thompson"
    }
  }'
"""
SHOW_DEAL = "curl http://localhost:8080/api/v1/cases/deal_techcorp_001"  # | jq '.data'
APPROVALS = {
    "SendToSalesManager": """
curl -X POST http://localhost:8080/api/v1/cases/deal_techcorp_001/tasks/SendToSalesManager/complete \\
  -d '{
    "result": "approved",
    "output_data": {
      "manager_approval": "APPROVED",
      "manager_comment": "Great fit. TechCorp is in our target market."
    }
  }'
""",  # noqa: E501  (the tutorial's lines)
    "SendToLegal": """
curl -X POST http://localhost:8080/api/v1/cases/deal_techcorp_001/tasks/SendToLegal/complete \\
  -d '{
    "result": "approved",
    "output_data": {
      "legal_approval": "APPROVED",
      "legal_changes_requested": false
    }
  }'
""",
    "SendToFinance": """
curl -X POST http://localhost:8080/api/v1/cases/deal_techcorp_001/tasks/SendToFinance/complete \\
  -d '{
    "result": "approved",
    "output_data": {
      "finance_approval": "APPROVED",
      "discount_exception": false
    }
  }'
""",
    "ExecutiveCheck": """
curl -X POST http://localhost:8080/api/v1/cases/deal_techcorp_001/tasks/ExecutiveCheck/complete \\
  -d '{
    "result": "approved",
    "output_data": {
      "executive_approval": "APPROVED",
      "conditions": "none"
    }
  }'
""",
}
DEAL_HISTORY = "curl http://localhost:8080/api/v1/cases/deal_techcorp_001/history"

# ------------------------------------------------------------------ Part 4 (verbatim)
METRICS = ("curl http://localhost:8080/api/v1/workflows/deal-approval-gate/metrics"
           "?time_range=24h")
RECOMMENDATIONS = ("curl http://localhost:8080/api/v1/workflows/deal-approval-gate/mape-k/"
                   "recommendations")

# PIPELINE.md, "Response shapes the tutorial relies on"
METRIC_KEYS = {"cases_created", "cases_completed", "cases_failed", "avg_duration_hours",
               "p95_duration_hours", "slo_target_hours", "slo_compliance_percent"}
RECOMMENDATION_KEYS = {"id", "type", "description", "confidence", "estimated_improvement",
                       "status"}
APPROVAL_ORDER = ["SendToSalesManager", "SendToLegal", "SendToFinance", "ExecutiveCheck"]


def curl(srv: Server, command: str) -> tuple[int, Any]:
    """Run one of the tutorial's curl lines against `srv`; -> (HTTP status, JSON body)."""
    text = command.strip().replace("\\\n", " ")  # the shell's line continuations
    text = text.replace(TUTORIAL_BASE, srv.url).replace("@workflows/", "@specs/")
    argv = shlex.split(text)
    assert argv[0] == "curl"
    argv[1:1] = ["-sS", "--max-time", "10", "-w", "\n%{http_code}"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=30,
                          check=False)
    assert done.returncode == 0, f"{argv}: curl failed: {done.stderr}"
    body, _, status = done.stdout.rpartition("\n")
    try:
        parsed = json.loads(body)
    except json.JSONDecodeError:
        pytest.fail(f"{argv}: HTTP {status}, not JSON: {body!r}")
    return int(status), parsed


def ok(srv: Server, command: str, status: int = 200) -> Any:
    got, body = curl(srv, command)
    assert got == status, f"HTTP {got} (expected {status}): {body}"
    return body


def is_iso(value: str) -> bool:
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return t.tzinfo is not None


@pytest.fixture(scope="module")
def srv(module_server: Server) -> Server:
    return module_server


# ---------------------------------------------------------------------------- Part 2
def test_the_server_says_its_mode_and_registered_the_pipeline(srv: Server) -> None:
    log = srv.stderr
    assert "open mode" in log
    for wid in REGISTER:
        assert f"registered {wid} v1" in log


def test_register_all_five_workflows(srv: Server) -> None:
    # specs/ is registered at start, so registering the same files again is a no-op
    # that answers 200 with created=false and the version already there.
    for wid, command in REGISTER.items():
        body = ok(srv, command, 200)
        assert body["workflow_id"] == wid
        assert body["created"] is False
        assert body["version"] == 1
    listed = ok(srv, LIST_WORKFLOWS)
    assert len(listed["workflows"]) == 5  # jq '.workflows | length' -> 5
    assert {w["workflow_id"] for w in listed["workflows"]} == set(REGISTER)


# ---------------------------------------------------------------------- Part 3: lead
def test_lead_creation(srv: Server) -> None:
    lead = ok(srv, CREATE_LEAD, 201)
    assert lead["case_id"] == "lead_techcorp_001"
    assert lead["workflow_id"] == "lead-qualification"
    assert lead["state"] == "active"
    assert lead["enabled_tasks"] == ["ReceiveMarketingLead"]
    assert is_iso(lead["created_at"])
    assert lead["data"]["company_size"] == 5000


def test_lead_qualification_tasks(srv: Server) -> None:
    received = ok(srv, RECEIVE_LEAD)
    assert received["state"] == "active"
    assert received["enabled_tasks"] == ["ValidateContactInfo"]

    validated = ok(srv, VALIDATE_CONTACT)
    assert validated["data"]["email_valid"] is True
    # Known deviation from the tutorial: it shows enabled_tasks == ["AssignToSDR"] here,
    # with ScoringDecision and AssignToSDR as separate steps. caseloop runs automatic
    # tasks at once, so by the time anyone looks both may already be done (the lead
    # completed, nothing enabled); ScoringDecision / AssignToSDR are transients one may
    # catch. What matters is the route and the end state, checked below.
    transient = ([], ["ScoringDecision"], ["AssignToSDR"])
    assert validated["enabled_tasks"] in transient
    assert ok(srv, SHOW_LEAD)["enabled_tasks"] in transient  # jq '.enabled_tasks'

    lead = poll(lambda: ok(srv, SHOW_LEAD), lambda c: c["state"] == "completed")
    assert lead["state"] == "completed"  # jq '.state' -> "completed"
    assert lead["enabled_tasks"] == []
    assert lead["data"]["lead_score"] == 72  # PIPELINE.md: TechCorp scores 72

    events = ok(srv, SHOW_LEAD + "/history")["events"]
    done = [(e["task"], e["by"]) for e in events if e["type"] == "TaskCompleted"]
    assert done == [("ReceiveMarketingLead", "operator"), ("ValidateContactInfo", "operator"),
                    ("ScoringDecision", "action:icp_score"),
                    ("AssignToSDR", "action:assign_least_loaded")]
    scoring = next(e for e in events if e["type"] == "TaskCompleted"
                   and e["task"] == "ScoringDecision")
    assert scoring["data"]["lead_score"] == 72
    assert events[-1]["type"] == "CaseCompleted"


# ---------------------------------------------------------------------- Part 3: deal
def test_deal_starts_four_parallel_approvals(srv: Server) -> None:
    deal = ok(srv, CREATE_DEAL, 201)
    assert deal["case_id"] == "deal_techcorp_001"
    assert deal["workflow_id"] == "deal-approval-gate"
    assert deal["state"] == "active"
    assert deal["enabled_tasks"] == APPROVAL_ORDER
    assert is_iso(deal["created_at"])
    data = ok(srv, SHOW_DEAL)["data"]  # jq '.data'
    assert data["deal_acv"] == 600000
    assert data["deal_value_3yr"] == 1800000
    assert data["discount_percent"] == 0
    assert data["manager_name"] == "Marcus Thompson"


def test_the_four_approvals_hand_the_deal_to_contract_processing(srv: Server) -> None:
    for i, command in enumerate(APPROVALS.values()):
        deal = ok(srv, command)
        if i < 3:
            assert deal["state"] == "active"
            assert deal["enabled_tasks"] == APPROVAL_ORDER[i + 1:]
    # The tutorial shows ["AllApprovalsComplete"] now; it is automatic, so it may be done
    # already and the case handed on.
    assert (deal["workflow_id"], deal["enabled_tasks"]) == (
        "deal-approval-gate", ["AllApprovalsComplete"]) or \
        deal["workflow_id"] == "contract-processing", deal

    deal = poll(lambda: ok(srv, SHOW_DEAL), lambda c: c["workflow_id"] == "contract-processing")
    assert deal["state"] == "active"
    assert deal["case_id"] == "deal_techcorp_001"

    history = ok(srv, DEAL_HISTORY)
    events = history["events"]
    assert len(events) > 0  # jq '.events | length'
    types = {e["type"] for e in events}
    assert {"CaseCreated", "TaskEnabled", "TaskCompleted", "WorkflowEntered"} <= types
    entered = [e["workflow_id"] for e in events if e["type"] == "WorkflowEntered"]
    assert entered[0] == "contract-processing"
    approvals = {e["task"]: e for e in events if e["type"] == "TaskCompleted"
                 and e["task"] in APPROVAL_ORDER}
    assert set(approvals) == set(APPROVAL_ORDER)
    assert all(e["result"] == "approved" and e["by"] == "operator" for e in approvals.values())
    assert approvals["SendToSalesManager"]["data"] == {
        "manager_approval": "APPROVED",
        "manager_comment": "Great fit. TechCorp is in our target market."}
    assert approvals["SendToLegal"]["data"] == {"legal_approval": "APPROVED",
                                                "legal_changes_requested": False}


# --------------------------------------------------------------------------- Part 4
def test_metrics_of_the_deal_approval_gate(srv: Server) -> None:
    body = ok(srv, METRICS)
    assert body["workflow_id"] == "deal-approval-gate"
    assert body["time_range"] == "24h"
    m = body["metrics"]
    assert set(m) >= METRIC_KEYS
    assert m["cases_created"] >= 1
    assert m["cases_completed"] >= 1  # the TechCorp deal passed the gate
    assert m["cases_failed"] == 0
    assert m["slo_target_hours"] == 8
    assert 0 <= m["slo_compliance_percent"] <= 100


def test_mape_k_recommendations_is_a_list(srv: Server) -> None:
    body = ok(srv, RECOMMENDATIONS)
    recs = body["recommendations"]
    # The MAPE-K loop is not built yet, so the list is empty for now; when it is, each
    # entry has PIPELINE.md's shape.
    assert isinstance(recs, list)
    for r in recs:
        assert set(r) >= RECOMMENDATION_KEYS


def test_the_tutorial_workflow_id_form_is_an_alias(srv: Server) -> None:
    create = CREATE_LEAD.replace("/workflows/lead-qualification/",
                                 "/workflows/wf_lead_qualification/").replace(
        "lead_techcorp_001", "lead_alias_001")
    lead = ok(srv, create, 201)
    assert lead["case_id"] == "lead_alias_001"
    assert lead["workflow_id"] == "lead-qualification"
    metrics = ok(srv, METRICS.replace("deal-approval-gate", "wf_lead_qualification"))
    assert metrics["workflow_id"] == "lead-qualification"
    assert metrics["metrics"]["cases_created"] >= 2
    assert metrics["metrics"]["slo_target_hours"] == 1


def test_cases_survive_a_restart(srv: Server) -> None:
    def settled(c: dict[str, Any]) -> bool:  # no automatic work left in flight
        return all(w["kind"] == "human" for w in c["work_items"])

    before = poll(lambda: ok(srv, SHOW_DEAL), settled)
    history = ok(srv, DEAL_HISTORY)["events"]
    lead = ok(srv, SHOW_LEAD)

    srv.restart()

    log = srv.stderr
    assert "open mode" in log
    assert "registered deal-approval-gate" not in log  # versions were reloaded, not new
    after = ok(srv, SHOW_DEAL)
    for key in ("workflow_id", "workflow_version", "state", "enabled_tasks", "work_items",
                "created_at", "data"):
        assert after[key] == before[key], key
    assert len(ok(srv, DEAL_HISTORY)["events"]) == len(history)
    assert ok(srv, SHOW_LEAD) == lead
    assert len(ok(srv, LIST_WORKFLOWS)["workflows"]) == 5
    for command in REGISTER.values():
        assert ok(srv, command, 200)["created"] is False
