"""The RevOps pipeline (PIPELINE.md, issue 5 "Tests") end to end over HTTP, against a real
`caseloop serve` on a VIRTUAL clock.

Time moves only through `POST /api/v1/clock/advance`, which walks deadline by
deadline and lets due timers fire and automatic tasks finish before it answers; an
advance `by: "0s"` is therefore a barrier: every automatic task that can run has run.
The local integrations (e-signature, invoice, billing: specs/integrations.yaml)
complete themselves after their `local_delay` on that clock, so the tests move the
clock past them instead of sleeping.

Every test has its own server (a fresh database and a clock at START): scenarios
never see each other's work items, load or time. Requests act as the person named in
`X-Caseloop-User` (specs/roles.yaml); none named means the local operator.
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import yaml
from http_kit import SPECS, Server, poll

from engine import parse_duration

START = "2025-11-17T09:00:00Z"
ROLES = yaml.safe_load((SPECS / "roles.yaml").read_text(encoding="utf-8"))
INTEGRATIONS = yaml.safe_load((SPECS / "integrations.yaml").read_text(encoding="utf-8"))
SDRS = {p for p, info in ROLES["people"].items() if info["role"] == "sdr"}

# People (specs/roles.yaml)
SDR = "sarah.chen@acme.com"
MANAGER = "marcus.thompson@acme.com"  # sales_manager
DIRECTOR = "olivia.bennett@acme.com"  # director
LEGAL = "priya.patel@acme.com"  # legal_counsel, contract_value up to 5M
FINANCE = "james.rodriguez@acme.com"  # finance_manager, discount up to 0.15
CFO = "lisa.wong@acme.com"  # cfo, unlimited
INTEGRATION = "integrations@acme.com"  # send_signals

APPROVALS = ["SendToSalesManager", "SendToLegal", "SendToFinance", "ExecutiveCheck"]

# The local delays of the automatic integrations (5 s, 2 s, 2 s as shipped), as
# durations the clock route takes. E_SIGNATURE_DELAY: just signed, no invoice out yet;
# LOCAL_DELAYS: past all of them one after the other (10 s as shipped).
_DELAYS = {name: parse_duration(str(a["local_delay"]))
           for name, a in INTEGRATIONS["actions"].items()}
E_SIGNATURE_DELAY = f"{_DELAYS['e_signature']:g}s"
assert _DELAYS["send_invoice"] > 0  # else the prepay path has no window to be chosen in
LOCAL_DELAYS = f"{sum(_DELAYS.values()) + 1:g}s"

TECHCORP_LEAD = {  # the tutorial's lead (tests/actors/actors_kit.py)
    "company_name": "TechCorp", "contact_name": "John Smith",
    "contact_email": "john.smith@techcorp.com", "company_size": 5000,
    "industry": "IT Consulting", "location": "San Francisco, CA",
    "use_case": "Enterprise Analytics"}
VALIDATED = {"email_valid": True, "phone_valid": True, "company_verified": True}

# specs/icp.yaml, computed rule by rule (scoring runs after ValidateContactInfo, whose
# output VALIDATED sets email_valid and company_verified):
#   company_size 200 -> band at_least 100: 20 · industry Manufacturing, not a target
#   industry: 0 · use_case given: 12 · budget_known true: 13 · validated contact: 10 ·
#   location "Berlin, Germany" names no target region: 0     -> 55, no floor applies.
BORDERLINE_LEAD = {
    "company_name": "Midsize Widgets", "contact_email": "ops@midsize-widgets.example",
    "company_size": 200, "industry": "Manufacturing", "location": "Berlin, Germany",
    "use_case": "Sales reporting", "budget_known": True}
BORDERLINE_SCORE = 55
#   company_size 40 -> band at_least 0: 0 · industry Retail: 0 · no use_case: 0 ·
#   budget_known false: 0 · validated contact: 10 · location Berlin: 0 -> 10.
WEAK_LEAD = {
    "company_name": "Tiny Shop", "contact_email": "owner@tinyshop.example",
    "company_size": 40, "industry": "Retail", "location": "Berlin, Germany",
    "budget_known": False}
WEAK_SCORE = 10


# --------------------------------------------------------------------------- helpers
def when(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


START_AT = when(START)


class Api:
    """The HTTP API of one server, as the people of roles.yaml."""

    def __init__(self, srv: Server) -> None:
        self.srv = srv
        self.http = httpx.Client(base_url=srv.url + "/api/v1", timeout=30.0)

    def close(self) -> None:
        self.http.close()

    # raw requests
    def post(self, path: str, body: dict[str, Any] | None = None,
             user: str | None = None) -> httpx.Response:
        headers = {"X-Caseloop-User": user} if user else {}
        return self.http.post(path, json=body or {}, headers=headers)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(path, params=params)

    # answers
    @staticmethod
    def ok(resp: httpx.Response, status: int = 200) -> Any:
        assert resp.status_code == status, (f"{resp.request.method} {resp.request.url}: "
                                            f"HTTP {resp.status_code}: {resp.text}")
        return resp.json()

    @staticmethod
    def error(resp: httpx.Response, status: int, code: int | None = None) -> dict[str, Any]:
        assert resp.status_code == status, (f"{resp.request.method} {resp.request.url}: "
                                            f"HTTP {resp.status_code} (expected {status}): "
                                            f"{resp.text}")
        err = resp.json()["error"]
        if code is not None:
            assert err["code"] == code, err
        return err  # type: ignore[no-any-return]

    def create(self, workflow: str, case_id: str, data: dict[str, Any],
               user: str | None = None) -> dict[str, Any]:
        return self.ok(self.post(f"/workflows/{workflow}/cases",
                                 {"case_id": case_id, "data": data}, user), 201)

    def complete(self, case_id: str, task: str, user: str | None = None,
                 result: str | None = None, output: dict[str, Any] | None = None,
                 checklist: dict[str, bool] | None = None) -> httpx.Response:
        body: dict[str, Any] = {"result": result, "output_data": output or {}}
        if checklist is not None:
            body["checklist"] = checklist
        return self.post(f"/cases/{case_id}/tasks/{task}/complete", body, user)

    def done(self, case_id: str, task: str, user: str | None = None,
             result: str | None = None, output: dict[str, Any] | None = None,
             checklist: dict[str, bool] | None = None) -> dict[str, Any]:
        """Complete a task (must succeed), then let the automatic work settle."""
        self.ok(self.complete(case_id, task, user, result, output, checklist))
        self.settle()
        return self.case(case_id)

    def signal(self, case_id: str, name: str, user: str | None = None,
               result: str | None = None,
               output: dict[str, Any] | None = None) -> httpx.Response:
        return self.post(f"/cases/{case_id}/signals/{name}",
                         {"result": result, "output_data": output or {}}, user)

    def advance(self, by: str) -> dt.datetime:
        clock = self.ok(self.post("/clock/advance", {"by": by}))
        assert clock["virtual"] is True
        return when(clock["now"])

    def settle(self) -> None:
        """Advance by nothing: the server answers once the automatic work is done."""
        self.advance("0s")

    def now(self) -> dt.datetime:
        return when(self.ok(self.get("/clock"))["now"])

    def case(self, case_id: str) -> dict[str, Any]:
        return self.ok(self.get(f"/cases/{case_id}"))  # type: ignore[no-any-return]

    def history(self, case_id: str) -> list[dict[str, Any]]:
        return self.ok(self.get(f"/cases/{case_id}/history"))["events"]  # type: ignore[no-any-return]

    def worklist(self, user: str) -> list[dict[str, Any]]:
        return self.ok(self.get("/worklist", user=user))["items"]  # type: ignore[no-any-return]


def of_type(events: list[dict[str, Any]], kind: str, task: str | None = None,
            ) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind and (task is None or e["task"] == task)]


def tasks_of(events: list[dict[str, Any]], kind: str) -> list[str]:
    return [e["task"] for e in events if e["type"] == kind]


def offered(items: list[dict[str, Any]], case_id: str) -> list[str]:
    return [i["task"] for i in items if i["case_id"] == case_id]


@pytest.fixture
def api(server_factory: Callable[..., Server]) -> Iterator[Api]:
    a = Api(server_factory("--virtual-clock", START))
    try:
        yield a
    finally:
        a.close()


def qualify(api: Api, case_id: str, lead: dict[str, Any]) -> dict[str, Any]:
    """A lead received and its contact validated; -> the case once scoring settled."""
    case = api.create("lead-qualification", case_id, lead)
    assert case["enabled_tasks"] == ["ReceiveMarketingLead"]
    api.done(case_id, "ReceiveMarketingLead", SDR, "received")
    return api.done(case_id, "ValidateContactInfo", SDR, "valid", VALIDATED)


def small_deal(case_id: str, **extra: Any) -> dict[str, Any]:
    return {"deal_name": f"Deal {case_id}", "customer_name": "Small Co",
            "customer_id": f"cust_{case_id}", "deal_acv": 40000, "deal_value_3yr": 120000,
            "discount_percent": 0, "margin_percent": 0.8, **extra}


def approved_small_deal(api: Api, case_id: str, **extra: Any) -> dict[str, Any]:
    """A 40K deal: only manager and finance approve (decision table 2, <= 50K); both
    approving hands it to contract-processing. -> the case after the hand-over."""
    deal = api.create("deal-approval-gate", case_id, small_deal(case_id, **extra))
    assert deal["enabled_tasks"] == ["SendToSalesManager", "SendToFinance"]
    api.ok(api.complete(case_id, "SendToSalesManager", MANAGER, "approved"))
    api.ok(api.complete(case_id, "SendToFinance", FINANCE, "approved"))
    api.settle()
    case = api.case(case_id)
    events = api.history(case_id)
    assert tasks_of(events, "TaskCompleted")[:3] == [
        "SendToSalesManager", "SendToFinance", "AllApprovalsComplete"], events
    assert case["workflow_id"] == "contract-processing", case
    assert case["data"]["approval_status"] == "approved"
    assert not set(tasks_of(events, "TaskEnabled")) & {"SendToLegal", "ExecutiveCheck"}
    return case


# ------------------------------------------------------------------- WF1: the leads
def test_a_qualified_lead_goes_to_the_least_loaded_sdr_round_robin(api: Api) -> None:
    lead = qualify(api, "lead_techcorp_001", TECHCORP_LEAD)
    assert lead["state"] == "completed", lead
    assert lead["data"]["lead_score"] == 72  # PIPELINE.md's anchor
    first = lead["data"]["assigned_to"]
    assert first in SDRS

    events = api.history("lead_techcorp_001")
    done = tasks_of(events, "TaskCompleted")
    assert done == ["ReceiveMarketingLead", "ValidateContactInfo", "ScoringDecision",
                    "AssignToSDR"]
    assert not {"ManualReview", "ArchiveLead"} & set(tasks_of(events, "TaskEnabled"))
    assign = of_type(events, "TaskCompleted", "AssignToSDR")[0]
    assert assign["data"]["assigned_to"] == first

    # Nobody has open assigned work (the leads complete), so every SDR ties: the next
    # two go round-robin to the other two.
    chosen = [first]
    for i in (2, 3):
        other = qualify(api, f"lead_techcorp_00{i}",
                        {**TECHCORP_LEAD, "contact_email": f"buyer{i}@techcorp.com"})
        assert other["state"] == "completed", other
        assert other["data"]["lead_score"] == 72
        chosen.append(other["data"]["assigned_to"])
    assert set(chosen) == SDRS, chosen  # three leads, three different SDRs


def test_a_borderline_lead_is_reviewed_by_a_sales_manager(api: Api) -> None:
    lead = qualify(api, "lead_borderline", BORDERLINE_LEAD)
    assert lead["data"]["lead_score"] == BORDERLINE_SCORE
    assert 40 <= BORDERLINE_SCORE <= 65  # decision table 1: manual review
    assert lead["state"] == "active"
    assert lead["enabled_tasks"] == ["ManualReview"]
    (item,) = lead["work_items"]
    assert item["role"] == "sales_manager"
    assert offered(api.worklist(MANAGER), "lead_borderline") == ["ManualReview"]
    assert offered(api.worklist(SDR), "lead_borderline") == []  # not an SDR's call
    assert "assigned_to" not in lead["data"]

    # The manager qualifies it: then it goes to an SDR after all.
    lead = api.done("lead_borderline", "ManualReview", MANAGER, "qualified")
    assert lead["state"] == "completed"
    assert lead["data"]["assigned_to"] in SDRS


def test_a_weak_lead_is_archived_without_review(api: Api) -> None:
    lead = qualify(api, "lead_weak", WEAK_LEAD)
    assert lead["data"]["lead_score"] == WEAK_SCORE
    assert WEAK_SCORE < 40
    assert lead["state"] == "completed", lead
    assert "assigned_to" not in lead["data"]
    events = api.history("lead_weak")
    assert tasks_of(events, "TaskCompleted")[-2:] == ["ScoringDecision", "ArchiveLead"]
    assert not {"ManualReview", "AssignToSDR"} & set(tasks_of(events, "TaskEnabled"))
    assert offered(api.worklist(MANAGER), "lead_weak") == []


# ------------------------------------------------------------ WF2: the approval gate
def test_a_600k_deal_needs_four_approvals_and_a_rejection_cancels_the_rest(api: Api) -> None:
    deal = api.create("deal-approval-gate", "deal_big", {
        "deal_name": "TechCorp Enterprise Analytics", "customer_name": "TechCorp",
        "deal_acv": 600000, "deal_value_3yr": 1800000, "discount_percent": 0})
    assert deal["enabled_tasks"] == APPROVALS
    roles = {i["task"]: i["role"] for i in deal["work_items"]}
    assert roles == {"SendToSalesManager": "sales_manager", "SendToLegal": "legal_counsel",
                     "SendToFinance": "finance_manager", "ExecutiveCheck": "cfo"}

    # 600K is beyond the sales manager's 250K ACV authority: the director signs it off.
    err = api.error(api.complete("deal_big", "SendToSalesManager", MANAGER, "approved"),
                    403, 3002)
    assert err["details"][0]["field"] == "authority.acv"
    api.ok(api.complete("deal_big", "SendToSalesManager", "olivia.bennett@acme.com",
                        "approved"))
    api.ok(api.complete("deal_big", "SendToLegal", LEGAL, "rejected",
                        {"legal_approval": "REJECTED"}))
    api.settle()

    deal = api.case("deal_big")
    assert deal["state"] == "completed"
    assert deal["workflow_id"] == "deal-approval-gate"  # no hand-on
    assert deal["enabled_tasks"] == [] and deal["work_items"] == []
    assert deal["data"]["approval_status"] == "rejected"

    events = api.history("deal_big")
    assert sorted(tasks_of(events, "TaskCancelled")) == ["ExecutiveCheck", "SendToFinance"]
    assert "AllApprovalsComplete" not in tasks_of(events, "TaskEnabled")
    assert of_type(events, "WorkflowEntered") == []
    assert of_type(events, "CaseCompleted")[-1]["workflow_id"] is None  # ends here
    assert offered(api.worklist(FINANCE), "deal_big") == []
    assert offered(api.worklist(CFO), "deal_big") == []

    # A cancelled approval cannot be given any more.
    api.error(api.complete("deal_big", "SendToFinance", FINANCE, "approved"), 409)

    # ... and its timers and SLOs died with it: a day later nothing fired or breached.
    seen = len(events)
    api.advance("25h")
    later = api.history("deal_big")[seen:]
    assert later == [], later
    assert [i for i in api.ok(api.get("/incidents"))["incidents"]
            if i["case_id"] == "deal_big"] == []


def test_a_40k_deal_needs_manager_and_finance_only_then_contract_and_revenue(api: Api) -> None:
    case = approved_small_deal(api, "deal_small")
    assert case["enabled_tasks"] == ["SendForSignature"]  # standard: automated e-signature

    api.advance(LOCAL_DELAYS)  # the local e-signature service signs after its delay
    case = api.case("deal_small")
    assert case["workflow_id"] == "revenue-recognition", case
    assert case["data"]["contract_status"] == "signed"
    signed = of_type(api.history("deal_small"), "TaskCompleted", "SendForSignature")
    assert [e["result"] for e in signed] == ["signed"]


# ----------------------------------------------- WF5: deferred choice, both branches
def test_invoice_path_payment_signal_books_revenue_and_sets_up_billing(api: Api) -> None:
    approved_small_deal(api, "deal_invoice")
    api.advance(LOCAL_DELAYS)  # signed, then the invoice went out (send_invoice)
    case = api.case("deal_invoice")
    assert case["workflow_id"] == "revenue-recognition"
    assert case["enabled_tasks"] == ["PaymentReceived"]
    (item,) = case["work_items"]
    assert when(item["due"]) - api.now() > dt.timedelta(days=59)  # 60 days to pay
    events = api.history("deal_invoice")
    assert "SendInvoice" in tasks_of(events, "TaskCompleted")
    withdrawn = of_type(events, "TaskCancelled", "PrepaymentReceived")
    assert len(withdrawn) == 1  # the invoice went first: the prepay path is withdrawn
    api.error(api.complete("deal_invoice", "PrepaymentReceived", FINANCE, "paid"), 409)

    # The payment callback needs send_signals: a finance manager has no such permission.
    err = api.error(api.signal("deal_invoice", "PaymentReceived", FINANCE, "paid"), 403, 3002)
    assert err["details"]
    assert api.case("deal_invoice")["enabled_tasks"] == ["PaymentReceived"]

    api.ok(api.signal("deal_invoice", "PaymentReceived", INTEGRATION, "paid",
                      {"amount_paid": 40000}))
    api.advance(LOCAL_DELAYS)  # setup_billing's local delay
    case = api.case("deal_invoice")
    assert case["state"] == "completed", case
    assert case["workflow_id"] == "revenue-recognition"
    done = tasks_of(api.history("deal_invoice"), "TaskCompleted")
    assert done[-3:] == ["PaymentReceived", "BookRevenue", "SetupBilling"]
    paid = of_type(api.history("deal_invoice"), "TaskCompleted", "PaymentReceived")[0]
    assert paid["by"] == INTEGRATION and paid["result"] == "paid"



def test_a_callback_sent_again_is_already_completed_not_missing_work(api: Api) -> None:
    """The billing system retries its payment callback (its first request timed out
    after the server had taken it): the answer says the payment is recorded (409, 3004
    "already submitted", as for a person completing twice), not 2003 "no open work
    item", which reads as a wrong case or task and sends someone hunting. Likewise the
    e-signature callback repeated after the signed deal moved on to revenue
    recognition. Work that never happened stays 2003: the withdrawn prepay path."""
    approved_small_deal(api, "deal_retry")
    api.advance(LOCAL_DELAYS)  # signed, invoiced
    api.ok(api.signal("deal_retry", "PaymentReceived", INTEGRATION, "paid"))
    api.settle()
    seen = len(api.history("deal_retry"))

    err = api.error(api.signal("deal_retry", "PaymentReceived", INTEGRATION, "paid"),
                    409, 3004)
    assert [d["field"] for d in err["details"]] == ["name"], err
    for name in ("SendForSignature", "e_signature"):  # by task, or by its action
        err = api.error(api.signal("deal_retry", name, INTEGRATION, "signed"), 409, 3004)
        assert "contract-processing" in err["message"], err
    api.error(api.signal("deal_retry", "PrepaymentReceived", INTEGRATION, "paid"),
              409, 2003)
    api.error(api.signal("deal_retry", "NoSuchSignal", INTEGRATION, "paid"), 409, 2003)
    assert len(api.history("deal_retry")) == seen  # nothing recorded twice

def test_prepay_path_withdraws_the_invoice(api: Api) -> None:
    approved_small_deal(api, "deal_prepay")
    # Only as far as the signature: the invoice is not out yet (send_invoice waits for
    # its own local delay), so both branches of the deferred choice are open.
    api.advance(E_SIGNATURE_DELAY)
    case = api.case("deal_prepay")
    assert case["workflow_id"] == "revenue-recognition", case
    assert sorted(case["enabled_tasks"]) == ["PrepaymentReceived", "SendInvoice"]
    assert offered(api.worklist(FINANCE), "deal_prepay") == ["PrepaymentReceived"]

    case = api.done("deal_prepay", "PrepaymentReceived", FINANCE, "paid",
                    {"amount_paid": 40000})
    events = api.history("deal_prepay")
    assert [e["task"] for e in of_type(events, "TaskCancelled")] == ["SendInvoice"]
    assert "SendInvoice" not in case["enabled_tasks"]

    api.advance(LOCAL_DELAYS)  # long enough for an invoice, had it not been withdrawn
    case = api.case("deal_prepay")
    assert case["state"] == "completed", case
    events = api.history("deal_prepay")
    done = tasks_of(events, "TaskCompleted")
    assert "SendInvoice" not in done
    assert "PaymentReceived" not in tasks_of(events, "TaskEnabled")
    assert done[-3:] == ["PrepaymentReceived", "BookRevenue", "SetupBilling"]


def test_unpaid_invoice_goes_to_collections_after_60_days(api: Api) -> None:
    approved_small_deal(api, "deal_unpaid")
    api.advance(LOCAL_DELAYS)
    assert api.case("deal_unpaid")["enabled_tasks"] == ["PaymentReceived"]

    api.advance("59d")  # not yet
    assert api.case("deal_unpaid")["enabled_tasks"] == ["PaymentReceived"]
    assert offered(api.worklist(FINANCE), "deal_unpaid") == ["PaymentReceived"]

    api.advance("2d")  # 61 days after the invoice
    case = api.case("deal_unpaid")
    assert case["state"] == "active"
    assert case["enabled_tasks"] == ["Collections"]
    assert case["work_items"][0]["role"] == "finance_manager"
    assert offered(api.worklist(FINANCE), "deal_unpaid") == ["Collections"]
    events = api.history("deal_unpaid")
    assert len(of_type(events, "TimerFired", "PaymentReceived")) == 1
    (timeout,) = of_type(events, "TaskCompleted", "PaymentReceived")
    assert timeout["result"] == "timeout"
    invoiced = of_type(events, "TaskCompleted", "SendInvoice")[0]
    assert when(timeout["at"]) - when(invoiced["at"]) == dt.timedelta(days=60)
    assert "BookRevenue" not in tasks_of(events, "TaskEnabled")


# ---------------------------------------------------------- WF4: pricing exception
def test_a_12_percent_discount_goes_to_the_cfo_revised_twice_then_approved(api: Api) -> None:
    approved_small_deal(api, "deal_discount", discount_percent=0.12)
    api.advance(LOCAL_DELAYS)
    case = api.case("deal_discount")
    assert case["workflow_id"] == "pricing-exception", case  # discount > 0
    assert case["enabled_tasks"] == ["JustifyDiscount"]

    justify = {"justification": "three-year commitment", "discount_percent": 0.12}
    case = api.done("deal_discount", "JustifyDiscount", SDR, "submitted", justify)
    assert case["enabled_tasks"] == ["CFOApproval"]  # decision table 4: 10-15 % -> CFO
    assert case["data"]["discount_justification"] == "three-year commitment"
    assert offered(api.worklist(CFO), "deal_discount") == ["CFOApproval"]

    # A director cannot sign off a CFO-level discount; nothing changes.
    before, seen = api.case("deal_discount"), len(api.history("deal_discount"))
    err = api.error(api.complete("deal_discount", "CFOApproval", DIRECTOR, "approved"),
                    403, 3002)
    assert err["details"], err
    assert api.case("deal_discount") == before
    assert len(api.history("deal_discount")) == seen

    for attempt in (1, 2):
        case = api.done("deal_discount", "CFOApproval", CFO, "revise")
        assert case["workflow_id"] == "pricing-exception"
        assert case["enabled_tasks"] == ["JustifyDiscount"], (attempt, case)
        # The SDR's output cannot reset the attempt counter (only its mapped fields
        # reach the case data).
        case = api.done("deal_discount", "JustifyDiscount", SDR, "submitted",
                        {**justify, "justification": f"revision {attempt}",
                         "pricing_attempts": 0})
        assert case["enabled_tasks"] == ["CFOApproval"], (attempt, case)
        assert case["data"]["pricing_attempts"] == attempt + 1

    case = api.done("deal_discount", "CFOApproval", CFO, "approved")
    assert case["workflow_id"] == "revenue-recognition", case
    assert case["data"]["pricing_status"] == "approved"
    assert case["data"]["discount_percent"] == 0.12
    events = api.history("deal_discount")
    cfo = [e["result"] for e in of_type(events, "TaskCompleted", "CFOApproval")]
    assert cfo == ["revise", "revise", "approved"]
    assert all(e["by"] == CFO for e in of_type(events, "TaskCompleted", "CFOApproval"))
    entered = [e["workflow_id"] for e in of_type(events, "WorkflowEntered")]
    assert entered == ["contract-processing", "pricing-exception", "revenue-recognition"]


# ---------------------------------------------------------------------- authority
def test_authority_limits_refuse_with_3002_and_leave_the_case_unchanged(api: Api) -> None:
    # Finance: discount authority up to 15 %; this deal has 20 % (so an executive check
    # is selected too: decision table 2).
    deal = api.create("deal-approval-gate", "deal_deep_discount",
                      small_deal("deal_deep_discount", discount_percent=0.20))
    assert "ExecutiveCheck" in deal["enabled_tasks"]
    before, seen = api.case("deal_deep_discount"), len(api.history("deal_deep_discount"))
    for output in ({}, {"discount_percent": 0.10}):  # lowering it while approving: no
        err = api.error(api.complete("deal_deep_discount", "SendToFinance", FINANCE,
                                     "approved", output), 403, 3002)
        fields = [d["field"] for d in err["details"]]
        assert fields == ["authority.discount"], err
        assert "0.15" in err["details"][0]["problem"], err  # the limit is named
    api.settle()
    assert api.case("deal_deep_discount") == before
    assert "SendToFinance" in before["enabled_tasks"]
    assert len(api.history("deal_deep_discount")) == seen
    # Someone with the authority (the CFO acts as finance manager, unlimited) may.
    case = api.done("deal_deep_discount", "SendToFinance", CFO, "approved")
    assert "SendToFinance" not in case["enabled_tasks"]

    # Legal: contract value (deal_value_3yr) up to 5M; this one is 6M.
    api.create("deal-approval-gate", "deal_huge", {
        "deal_name": "Huge", "customer_name": "Huge Co", "deal_acv": 2000000,
        "deal_value_3yr": 6000000, "discount_percent": 0})
    before, seen = api.case("deal_huge"), len(api.history("deal_huge"))
    err = api.error(api.complete("deal_huge", "SendToLegal", LEGAL, "approved"), 403, 3002)
    assert [d["field"] for d in err["details"]] == ["authority.contract_value"], err
    assert api.case("deal_huge") == before
    assert len(api.history("deal_huge")) == seen

    # A contract of unknown value (deal_value_3yr is optional in WF2's schema) is not
    # within Legal's 5M: refused, also when Legal writes a figure of their own; the
    # CFO (unlimited, acts as legal counsel) may sign it off.
    api.create("deal-approval-gate", "deal_unvalued", {
        "deal_name": "Unvalued", "customer_name": "Unvalued Co", "deal_acv": 2000000,
        "discount_percent": 0})
    before, seen = api.case("deal_unvalued"), len(api.history("deal_unvalued"))
    for output in ({}, {"deal_value_3yr": 1000}):
        err = api.error(api.complete("deal_unvalued", "SendToLegal", LEGAL, "approved",
                                     output), 403, 3002)
        assert [d["field"] for d in err["details"]] == ["authority.contract_value"], err
        assert "not set" in err["details"][0]["problem"], err
    api.settle()
    assert api.case("deal_unvalued") == before
    assert len(api.history("deal_unvalued")) == seen
    case = api.done("deal_unvalued", "SendToLegal", CFO, "approved")
    assert "SendToLegal" not in case["enabled_tasks"]


# ------------------------------------------------------ WF3: custom contract, timeout
def test_custom_contract_checklist_and_amendment_timeout_escalates(api: Api) -> None:
    case = approved_small_deal(api, "deal_custom", contract_type="custom")
    assert case["enabled_tasks"] == ["LegalReview"]
    assert case["work_items"][0]["role"] == "legal_counsel"
    seen = len(api.history("deal_custom"))

    err = api.error(api.complete("deal_custom", "LegalReview", LEGAL, "approved"), 422, 2004)
    assert sorted(d["field"] for d in err["details"]) == [
        "output_data.checklist.pricing_approved", "output_data.checklist.redlines_reviewed"]
    err = api.error(api.complete("deal_custom", "LegalReview", LEGAL, "approved",
                                 checklist={"redlines_reviewed": True}), 422, 2004)
    assert [d["field"] for d in err["details"]] == ["output_data.checklist.pricing_approved"]
    err = api.error(api.complete("deal_custom", "LegalReview", LEGAL, "approved",
                                 checklist={"redlines_reviewed": True,
                                            "pricing_approved": False}), 422, 2004)
    assert [d["field"] for d in err["details"]] == ["output_data.checklist.pricing_approved"]
    assert api.case("deal_custom")["enabled_tasks"] == ["LegalReview"]
    assert len(api.history("deal_custom")) == seen

    # Asking for amendments needs no checklist.
    case = api.done("deal_custom", "LegalReview", LEGAL, "amendments")
    assert case["enabled_tasks"] == ["RequestAmendments"]
    asked = api.now()
    assert when(case["work_items"][0]["due"]) == asked + dt.timedelta(hours=72)

    api.advance("71h")
    assert api.case("deal_custom")["enabled_tasks"] == ["RequestAmendments"]
    api.advance("2h")
    case = api.case("deal_custom")
    assert case["enabled_tasks"] == ["Escalate"], case
    assert case["work_items"][0]["role"] == "cfo"
    assert offered(api.worklist(CFO), "deal_custom") == ["Escalate"]
    events = api.history("deal_custom")
    (fired,) = of_type(events, "TimerFired", "RequestAmendments")
    assert when(fired["at"]) == asked + dt.timedelta(hours=72)
    (timeout,) = of_type(events, "TaskCompleted", "RequestAmendments")
    assert timeout["result"] == "timeout"


def test_legal_signs_off_a_contract_up_to_5m_and_may_ask_for_amendments_on_any(
        api: Api) -> None:
    # PIPELINE.md: legal counsel approves contracts up to 5M. WF3's legal review had no
    # limit: Priya could approve a contract of any value.
    deal = api.create("deal-approval-gate", "deal_msa6m", {
        "deal_name": "Big MSA", "customer_name": "Big Co", "deal_acv": 2000000,
        "deal_value_3yr": 6000000, "discount_percent": 0, "contract_type": "custom"})
    for task in deal["enabled_tasks"]:  # the CFO signs off what WF2 asks
        api.done("deal_msa6m", task, CFO, "approved")
    api.settle()
    assert api.case("deal_msa6m")["enabled_tasks"] == ["LegalReview"]
    before, seen = api.case("deal_msa6m"), len(api.history("deal_msa6m"))
    checked = {"redlines_reviewed": True, "pricing_approved": True}
    err = api.error(api.complete("deal_msa6m", "LegalReview", LEGAL, "approved",
                                 checklist=checked), 403, 3002)
    assert [d["field"] for d in err["details"]] == ["authority.contract_value"], err
    api.settle()
    assert api.case("deal_msa6m") == before and len(api.history("deal_msa6m")) == seen
    # Nor may she claim it: a claim she could not sign off would lock the CFO out.
    err = api.error(api.post("/cases/deal_msa6m/tasks/LegalReview/start", {}, LEGAL),
                    403, 3002)
    assert [d["field"] for d in err["details"]] == ["authority.contract_value"], err
    # Asking for amendments signs nothing off: within anyone's authority.
    case = api.done("deal_msa6m", "LegalReview", LEGAL, "amendments")
    assert case["enabled_tasks"] == ["RequestAmendments"]
    api.done("deal_msa6m", "RequestAmendments", LEGAL, "amended")
    # The CFO (unlimited, acting as legal counsel) approves.
    case = api.done("deal_msa6m", "LegalReview", CFO, "approved", checklist=checked)
    assert case["enabled_tasks"] == ["CustomerSignature"], case


def test_a_contract_value_understated_below_the_acv_does_not_bring_it_within_legals_limit(
        api: Api) -> None:
    # Legal's limit was measured on deal_value_3yr alone, which whoever creates the deal
    # writes: a 6M-ACV deal said to be worth 100 over three years was Priya's to approve
    # (review finding). A contract is worth at least its ACV.
    deal = api.create("deal-approval-gate", "deal_under", {
        "deal_name": "Understated", "customer_name": "Big Co", "deal_acv": 6000000,
        "deal_value_3yr": 100, "discount_percent": 0, "contract_type": "custom"})
    assert "SendToLegal" in deal["enabled_tasks"]
    before, seen = api.case("deal_under"), len(api.history("deal_under"))
    err = api.error(api.complete("deal_under", "SendToLegal", LEGAL, "approved"), 403, 3002)
    assert [d["field"] for d in err["details"]] == ["authority.contract_value"], err
    api.settle()
    assert api.case("deal_under") == before and len(api.history("deal_under")) == seen
    for task in api.case("deal_under")["enabled_tasks"]:  # the CFO signs WF2 off
        api.done("deal_under", task, CFO, "approved")
    api.settle()
    assert api.case("deal_under")["enabled_tasks"] == ["LegalReview"]
    err = api.error(api.complete("deal_under", "LegalReview", LEGAL, "approved",
                                 checklist={"redlines_reviewed": True,
                                            "pricing_approved": True}), 403, 3002)
    assert [d["field"] for d in err["details"]] == ["authority.contract_value"], err


def test_a_misspelt_decline_or_write_off_is_refused_not_taken_for_the_money_path(
        api: Api) -> None:
    # Where anything but one word took the route that signs the contract or books the
    # revenue, a typo ("Declined", "written off") did exactly that. Each such task lists
    # its results now; any other is 422 (2003, field result) and changes nothing.
    approved_small_deal(api, "deal_unpaid2")
    api.advance(LOCAL_DELAYS)
    api.advance("61d")
    assert api.case("deal_unpaid2")["enabled_tasks"] == ["Collections"]
    approved_small_deal(api, "deal_sig", contract_type="custom")  # its 5 days from now
    api.done("deal_sig", "LegalReview", LEGAL, "approved",
             checklist={"redlines_reviewed": True, "pricing_approved": True})
    assert api.case("deal_sig")["enabled_tasks"] == ["CustomerSignature"]
    for case_id, task, user, typo in (("deal_sig", "CustomerSignature", SDR, "Declined"),
                                      ("deal_unpaid2", "Collections", FINANCE,
                                       "written off")):
        before, seen = api.case(case_id), len(api.history(case_id))
        err = api.error(api.complete(case_id, task, user, typo), 422, 2003)
        assert [d["field"] for d in err["details"]] == ["result"], err
        api.settle()
        assert api.case(case_id) == before and len(api.history(case_id)) == seen
    # The words themselves take their routes.
    case = api.done("deal_sig", "CustomerSignature", SDR, "declined")
    assert (case["state"], case["data"]["contract_status"]) == ("completed", "rejected")
    case = api.done("deal_unpaid2", "Collections", FINANCE, "written_off")
    assert (case["state"], case["data"]["revenue_status"]) == ("completed", "written_off")
    assert "BookRevenue" not in tasks_of(api.history("deal_unpaid2"), "TaskEnabled")


# ------------------------------------------------------------- SLA and the outbox
class FlakyReceiver:
    """A real HTTP endpoint that answers 500 to the first `failures` requests, then 200,
    each after `latency` seconds (as real receivers take a moment: the server's virtual
    clock may move while a delivery is in flight); it records every request (status
    answered, JSON body, headers lower-cased) as it arrives."""

    def __init__(self, failures: int = 1, latency: float = 0.3) -> None:
        self.failures = failures
        self.latency = latency
        self.requests: list[tuple[int, dict[str, Any], dict[str, str]]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.lock:
                    status = 500 if len(outer.requests) < outer.failures else 200
                    outer.requests.append((status, json.loads(raw or b"{}"),
                                           {k.lower(): v for k, v in self.headers.items()}))
                time.sleep(outer.latency)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def seen(self) -> list[tuple[int, dict[str, Any], dict[str, str]]]:
        with self.lock:
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[FlakyReceiver]:
    r = FlakyReceiver(failures=1)
    try:
        yield r
    finally:
        r.close()


def test_sla_breach_notifies_once_through_the_outbox_after_a_failed_attempt(
        server_factory: Callable[..., Server], tmp_path: pathlib.Path,
        receiver: FlakyReceiver) -> None:
    slos = tmp_path / "slos.yaml"
    slos.write_text(yaml.safe_dump({
        "tasks": {"SendToSalesManager": {"target_hours": 1, "alert_hours": 2}},
        "notifications": {"recipients": [MANAGER], "channels": ["webhook"]}}))
    channels = tmp_path / "channels.yaml"
    channels.write_text(yaml.safe_dump({
        "webhook": {"url": receiver.url, "timeout": 5},
        "outbox": {"attempts": 5, "base_delay": 60, "max_delay": 3600, "jitter": 0}}))
    api = Api(server_factory("--virtual-clock", START, "--slos", str(slos),
                             "--channels", str(channels)))
    try:
        api.create("deal-approval-gate", "deal_sla", small_deal("deal_sla"))
        api.advance("3h")  # alert threshold 2 h

        events = api.history("deal_sla")
        breaches = of_type(events, "SlaBreached")
        assert [(e["task"], when(e["at"])) for e in breaches] == [
            ("SendToSalesManager", START_AT + dt.timedelta(hours=2))]

        # The first delivery attempt reaches the receiver and fails (500). The clock
        # went on to +3 h while it was in flight: that must not make the worker take
        # the row over from itself (its lease is 5 min of server time).
        poll(receiver.seen, lambda r: len(r) >= 1)
        time.sleep(receiver.latency + 0.2)  # a second delivery would have arrived now
        first = receiver.seen()
        assert [s for s, _, _ in first] == [500], \
            "delivered again while the first attempt was in flight"
        body = first[0][1]
        assert body["case_id"] == "deal_sla"
        assert body["payload"]["task"] == "SendToSalesManager"
        row = poll(lambda: api.ok(api.get("/outbox"))["notifications"],
                   lambda rows: rows and rows[0]["attempts"] == 1)
        assert len(row) == 1
        assert (row[0]["state"], row[0]["channel"]) == ("pending", "webhook")
        assert row[0]["last_error"]
        # The backoff (60 s) is on the server's clock: with the clock standing still,
        # no second attempt, however long we wait in real time.
        time.sleep(1.5)
        assert [s for s, _, _ in receiver.seen()] == [500], \
            "tried again before the backoff ran out on the server's clock"

        api.advance("2m")  # past the backoff
        poll(receiver.seen, lambda r: len(r) >= 2)
        time.sleep(0.5)  # a duplicate would come now
        got = receiver.seen()
        assert [s for s, _, _ in got] == [500, 200]  # delivered exactly once
        assert got[0][1] == got[1][1]  # the same notice, tried again
        keys = [headers.get("idempotency-key") for _, _, headers in got]
        assert keys[0] and keys[0] == keys[1], keys  # the receiver can drop duplicates
        delivered = poll(lambda: api.ok(api.get("/outbox", state="delivered"))["notifications"],
                         lambda rows: len(rows) == 1)
        assert delivered[0]["attempts"] == 2
        assert delivered[0]["case_id"] == "deal_sla"
        assert api.ok(api.get("/outbox", state="pending"))["notifications"] == []
        assert api.ok(api.get("/outbox", state="dead"))["notifications"] == []

        # Still exactly one breach, and completing the work resolves it.
        api.ok(api.complete("deal_sla", "SendToSalesManager", MANAGER, "approved"))
        api.settle()
        events = api.history("deal_sla")
        assert len(of_type(events, "SlaBreached")) == 1
        resolved = of_type(events, "SlaResolved")
        assert [e["task"] for e in resolved] == ["SendToSalesManager"]
        assert resolved[0]["item"] == breaches[0]["item"]
        assert len(receiver.seen()) == 2  # resolving sends nothing more
    finally:
        api.close()
