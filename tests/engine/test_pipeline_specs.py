"""The shipped RevOps pipeline (specs/*.json) driven through the engine API.

Every spec compiles sound and without warnings, every example in specs/README.md
compiles, and each workflow behaves as PIPELINE.md's business rules say. The runtime's
part (running automatic tasks, firing due timers) is played by the tests: an automatic
task is completed with the output its action would report, a timer with `fire_timer`.
Each drive also checks that replaying the case's log rebuilds the same state.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from engine import (
    Case,
    ChecklistIncomplete,
    DataInvalid,
    GuardFailed,
    Net,
    compile_document,
    replay,
)
from engine.events import CaseHandedOn, WorkItemCancelled

SPECS = Path(__file__).resolve().parents[2] / "specs"
SPEC_FILES = sorted(SPECS.glob("*.json"))
HOUR = 3600.0
DAY = 24 * HOUR

# The tutorial's data (seeds/000_882c95c6816c5de5.txt), verbatim.
TUTORIAL_LEAD = {
    "company_name": "TechCorp",
    "contact_name": "John Smith",
    "contact_email": "john.smith@techcorp.com",
    "company_size": 5000,
    "industry": "IT Consulting",
    "location": "San Francisco, CA",
    "use_case": "Enterprise Analytics",
}
TUTORIAL_DEAL = {
    "deal_name": "TechCorp Enterprise Analytics",
    "customer_name": "TechCorp",
    "customer_id": "cust_5893",
    "deal_acv": 600000,
    "deal_value_3yr": 1800000,
    "discount_percent": 0,
    "margin_percent": 0.80,
    "sdr_name": "Sarah Chen",
    "manager_name": "Marcus Thompson",
}
# A deal as it leaves deal-approval-gate: the deal fields plus the approval outcome.
APPROVED_DEAL = {**TUTORIAL_DEAL, "approval_status": "approved"}
# What legal counsel confirms when approving a custom or MSA contract (quality gate).
CHECKED = {"checklist": {"redlines_reviewed": True, "pricing_approved": True}}

_NETS: dict[str, Net] = {}


def net(workflow_id: str) -> Net:
    if workflow_id not in _NETS:
        _NETS[workflow_id] = compile_document((SPECS / f"{workflow_id}.json").read_text())
    return _NETS[workflow_id]


class Drive:
    """A case plus its log and a clock; `done` checks the log replays to the same state."""

    def __init__(self, workflow_id: str, data: dict[str, Any], case_id: str = "c1") -> None:
        self.at = 0.0
        self.case, self.events = Case.create(net(workflow_id), case_id, data, at=self.at)

    def later(self, seconds: float = 60.0) -> float:
        self.at += seconds
        return self.at

    def complete(self, task: str, result: str | None = None,
                 output: dict[str, Any] | None = None) -> list[Any]:
        out = self.case.complete(task, self.later(), result=result, output=output)
        self.events.extend(out)
        return out

    def start(self, task: str) -> None:
        self.events.extend(self.case.start(task, self.later()))

    def item(self, task: str) -> int:
        (it,) = [i for i in self.case.work_items() if self.case.net.tasks[i.task].id == task]
        return it.id

    def fire_timer(self, task: str, after: float) -> list[Any]:
        """Let `after` seconds pass since the item was offered, then fire its timer."""
        iid = self.item(task)
        (due,) = [d for i, d in self.case.pending_timers() if i == iid]
        out = self.case.fire_timer(iid, due - 1)  # not yet due: nothing happens
        assert out == []
        self.at = max(self.at, due)
        assert due == pytest.approx(self.enabled_at(iid) + after)
        out = self.case.fire_timer(iid, self.at)
        self.events.extend(out)
        return out

    def enabled_at(self, iid: int) -> float:
        return next(i.enabled_at for i in self.case.work_items() if i.id == iid)

    def hand_on(self) -> None:
        assert self.case.status == "completed" and self.case.hand_on_to
        self.events.extend(self.case.hand_on(net(self.case.hand_on_to), self.later()))

    @property
    def enabled(self) -> list[str]:
        return sorted(self.case.enabled_tasks())

    def done(self, hand_on_to: str | None) -> None:
        assert self.case.status == "completed"
        assert self.case.hand_on_to == hand_on_to
        assert self.case.work_items() == []
        again = replay(self.events, lambda wf, _version: net(wf))
        assert again.status == self.case.status
        assert again.data == self.case.data
        assert again.tokens_by_condition() == self.case.tokens_by_condition()
        assert again.hand_on_to == self.case.hand_on_to


# --------------------------------------------------------------------------- the specs


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.stem)
def test_every_spec_compiles_sound_without_warnings(path: Path) -> None:
    compiled = compile_document(path.read_text())
    assert compiled.warnings == ()
    assert compiled.workflow_id == path.stem
    spec = json.loads(path.read_text())
    for task in spec["tasks"]:
        assert task.get("description"), f"{path.stem}: task {task['id']} has no description"
    for handover in spec.get("on_complete", []):
        assert (SPECS / f"{handover['workflow']}.json").exists()


def test_the_five_workflows_are_shipped() -> None:
    assert [p.stem for p in SPEC_FILES] == sorted([
        "lead-qualification", "deal-approval-gate", "contract-processing",
        "pricing-exception", "revenue-recognition"])


def _readme_examples() -> list[tuple[str, str]]:
    text = (SPECS / "README.md").read_text()
    blocks = re.findall(r"```(json|yaml)\n(.*?)```", text, re.S)
    return [(lang, body) for lang, body in blocks if re.search(r"^\s*\"?id\"?:", body, re.M)]


def test_readme_has_examples() -> None:
    langs = [lang for lang, _ in _readme_examples()]
    assert langs.count("json") >= 15 and "yaml" in langs


@pytest.mark.parametrize("example", range(len(_readme_examples())))
def test_every_readme_example_compiles(example: int) -> None:
    lang, body = _readme_examples()[example]
    if lang == "json":
        json.loads(body)
    compiled = compile_document(body)
    assert compiled.warnings == ()


# --------------------------------------------------------------------------- WF1


def _scored(score: int) -> Drive:
    d = Drive("lead-qualification", TUTORIAL_LEAD, "lead_techcorp_001")
    assert d.enabled == ["ReceiveMarketingLead"]
    d.complete("ReceiveMarketingLead", "received")
    d.complete("ValidateContactInfo", "valid",
               {"email_valid": True, "phone_valid": True, "company_verified": True})
    assert d.enabled == ["ScoringDecision"]
    d.complete("ScoringDecision", output={"lead_score": score})
    assert d.case.data["lead_score"] == score
    return d


def test_wf1_tutorial_lead_scores_72_and_goes_to_an_sdr() -> None:
    d = _scored(72)
    assert d.enabled == ["AssignToSDR"]
    assert d.case.data["email_valid"] is True
    d.complete("AssignToSDR", output={"assigned_to": "emily.garcia@acme.com"})
    d.done(hand_on_to=None)
    assert d.case.data["assigned_to"] == "emily.garcia@acme.com"


@pytest.mark.parametrize(("score", "task"), [
    (100, "AssignToSDR"), (66, "AssignToSDR"), (65, "ManualReview"), (50, "ManualReview"),
    (40, "ManualReview"), (39, "ArchiveLead"), (20, "ArchiveLead"), (0, "ArchiveLead"),
])
def test_wf1_decision_table_1(score: int, task: str) -> None:
    assert _scored(score).enabled == [task]


@pytest.mark.parametrize(("result", "task"), [("qualified", "AssignToSDR"),
                                              ("disqualified", "ArchiveLead")])
def test_wf1_manual_review_decides(result: str, task: str) -> None:
    d = _scored(50)
    d.complete("ManualReview", result)
    assert d.enabled == [task]
    d.complete(task)
    d.done(hand_on_to=None)


def test_wf1_invalid_contact_is_archived_without_scoring() -> None:
    d = Drive("lead-qualification", TUTORIAL_LEAD)
    d.complete("ReceiveMarketingLead", "received")
    d.complete("ValidateContactInfo", "invalid", {"email_valid": False})
    assert d.enabled == ["ArchiveLead"]
    d.complete("ArchiveLead")
    d.done(hand_on_to=None)
    assert "lead_score" not in d.case.data


def test_wf1_scoring_must_report_a_score() -> None:
    d = Drive("lead-qualification", TUTORIAL_LEAD)
    d.complete("ReceiveMarketingLead")
    d.complete("ValidateContactInfo", "valid")
    with pytest.raises(GuardFailed) as info:
        d.complete("ScoringDecision", output={"score": 72})
    assert info.value.code == 2004 and info.value.field == "lead_score"
    assert d.enabled == ["ScoringDecision"]


@pytest.mark.parametrize(("change", "code", "field"), [
    ({"company_name": None}, 1002, "company_name"),
    ({"contact_email": None}, 1002, "contact_email"),
    ({"company_name": ""}, 1002, "company_name"),  # blank is missing, as at intake
    ({"company_name": "   "}, 1002, "company_name"),
    ({"contact_email": " "}, 1002, "contact_email"),
    ({"company_size": "5000"}, 1001, "company_size"),
    ({"company_size": 5000.5}, 1001, "company_size"),
])
def test_wf1_lead_data_is_checked(change: dict[str, Any], code: int, field: str) -> None:
    data = {k: v for k, v in {**TUTORIAL_LEAD, **change}.items() if v is not None}
    with pytest.raises(DataInvalid) as info:
        Case.create(net("lead-qualification"), "lead", data, at=0.0)
    assert (info.value.code, info.value.field) == (code, field)


# --------------------------------------------------------------------------- WF2

APPROVALS = ["ExecutiveCheck", "SendToFinance", "SendToLegal", "SendToSalesManager"]


def test_wf2_tutorial_deal_needs_four_approvals() -> None:
    d = Drive("deal-approval-gate", TUTORIAL_DEAL, "deal_techcorp_001")
    assert d.enabled == APPROVALS
    d.complete("SendToSalesManager", "approved", {"manager_approval": "APPROVED"})
    d.complete("SendToLegal", "approved", {"legal_approval": "APPROVED"})
    d.complete("SendToFinance", "approved", {"finance_approval": "APPROVED"})
    assert d.enabled == ["ExecutiveCheck"]
    d.complete("ExecutiveCheck", "approved", {"executive_approval": "APPROVED"})
    assert d.enabled == ["AllApprovalsComplete"]
    d.complete("AllApprovalsComplete")
    d.done(hand_on_to="contract-processing")
    assert d.case.data["approval_status"] == "approved"


@pytest.mark.parametrize(("acv", "discount", "expected"), [
    (40_000, 0, ["SendToFinance", "SendToSalesManager"]),
    (50_000, 0.05, ["SendToFinance", "SendToSalesManager"]),
    (120_000, 0.1, ["SendToFinance", "SendToLegal", "SendToSalesManager"]),
    (40_000, 0.2, ["ExecutiveCheck", "SendToFinance", "SendToSalesManager"]),
    (1_500_000, 0, APPROVALS),
])
def test_wf2_decision_table_2(acv: int, discount: float, expected: list[str]) -> None:
    d = Drive("deal-approval-gate", {**TUTORIAL_DEAL, "deal_acv": acv,
                                     "discount_percent": discount})
    assert d.enabled == expected
    for task in expected:
        d.complete(task, "approved")
    assert d.enabled == ["AllApprovalsComplete"]
    d.complete("AllApprovalsComplete")
    d.done(hand_on_to="contract-processing")


def test_wf2_a_rejection_cancels_the_pending_approvals() -> None:
    d = Drive("deal-approval-gate", TUTORIAL_DEAL)
    d.complete("SendToSalesManager", "approved")
    d.complete("SendToLegal", "rejected", {"legal_comment": "liability cap"})
    d.done(hand_on_to=None)
    assert d.case.data["approval_status"] == "rejected"
    assert d.case.tokens_by_condition() == {"end": 1}


@pytest.mark.parametrize("field", ["deal_name", "customer_name"])
@pytest.mark.parametrize("blank", ["", "   ", "\t"])
def test_wf2_deal_and_customer_must_be_named(field: str, blank: str) -> None:
    with pytest.raises(DataInvalid) as info:
        Case.create(net("deal-approval-gate"), "d", {**TUTORIAL_DEAL, field: blank}, at=0.0)
    assert (info.value.code, info.value.field) == (1002, field)


def test_wf2_acv_must_be_positive() -> None:
    with pytest.raises(DataInvalid) as info:
        Case.create(net("deal-approval-gate"), "d", {**TUTORIAL_DEAL, "deal_acv": 0}, at=0.0)
    assert info.value.code == 1003


# --------------------------------------------------------------------------- WF3


def test_wf3_standard_contract_is_signed_electronically() -> None:
    # The tutorial's deal names no contract_type: the schema's default, standard, applies.
    d = Drive("contract-processing", APPROVED_DEAL)
    assert d.case.data["contract_type"] == "standard"
    assert d.enabled == ["PrepareContract"]
    d.complete("PrepareContract", output={"contract_id": "ctr_1"})
    assert d.enabled == ["SendForSignature"]  # the e-signature service's callback
    d.complete("SendForSignature", "signed", {"envelope_id": "env_1"})
    d.done(hand_on_to="revenue-recognition")
    assert d.case.data["contract_status"] == "signed"
    assert d.case.data["contract_id"] == "ctr_1"


def test_wf3_a_discount_hands_on_to_pricing_exception() -> None:
    d = Drive("contract-processing", {**APPROVED_DEAL, "discount_percent": 0.12})
    d.complete("PrepareContract")
    d.complete("SendForSignature", "signed")
    d.done(hand_on_to="pricing-exception")


def test_wf3_defaults_are_filled_in_at_creation() -> None:
    data = {k: v for k, v in APPROVED_DEAL.items() if k != "discount_percent"}
    d = Drive("contract-processing", data)
    assert (d.case.data["contract_type"], d.case.data["discount_percent"]) == ("standard", 0)
    d.complete("PrepareContract")
    d.complete("SendForSignature", "signed")
    d.done(hand_on_to="revenue-recognition")


def test_wf3_custom_contract_amendment_timeout_escalates_to_the_cfo() -> None:
    d = Drive("contract-processing", {**APPROVED_DEAL, "contract_type": "custom"})
    assert d.enabled == ["LegalReview"]
    d.complete("LegalReview", "amendments", {"legal_comment": "indemnity clause"})
    assert d.enabled == ["RequestAmendments"]
    d.fire_timer("RequestAmendments", after=72 * HOUR)
    assert d.enabled == ["Escalate"]
    d.complete("Escalate", "resume")
    assert d.enabled == ["LegalReview"]
    d.complete("LegalReview", "amendments")
    d.complete("RequestAmendments", "amended")  # in time this round: back to legal
    assert d.enabled == ["LegalReview"]
    d.complete("LegalReview", "approved", CHECKED)
    assert d.enabled == ["CustomerSignature"]
    d.complete("CustomerSignature", "signed")
    assert d.enabled == ["SetupProcurement"]
    d.complete("SetupProcurement")
    d.done(hand_on_to="revenue-recognition")


def test_wf3_approving_a_custom_contract_needs_its_checklist() -> None:
    d = Drive("contract-processing", {**APPROVED_DEAL, "contract_type": "custom"})
    with pytest.raises(ChecklistIncomplete) as info:
        d.complete("LegalReview", "approved")
    assert [p.path for p in info.value.problems] == [
        "output_data.checklist.redlines_reviewed", "output_data.checklist.pricing_approved"]
    with pytest.raises(ChecklistIncomplete) as info:
        d.complete("LegalReview", "approved",
                   {"checklist": {"redlines_reviewed": True, "pricing_approved": False}})
    assert [p.path for p in info.value.problems] == ["output_data.checklist.pricing_approved"]
    assert d.enabled == ["LegalReview"]  # refused: the case is as it was
    d.complete("LegalReview", "amendments")  # the gate is on approval only
    d.complete("RequestAmendments", "amended")
    d.complete("LegalReview", "approved", CHECKED)
    assert d.enabled == ["CustomerSignature"]


def test_wf3_a_declined_e_signature_rejects_the_contract() -> None:
    d = Drive("contract-processing", APPROVED_DEAL)
    d.complete("PrepareContract")
    d.complete("SendForSignature", "declined")
    d.done(hand_on_to=None)
    assert d.case.data["contract_status"] == "rejected"


def test_wf3_msa_needs_an_executive_review() -> None:
    d = Drive("contract-processing", {**APPROVED_DEAL, "contract_type": "msa"})
    d.complete("LegalReview", "approved", CHECKED)
    assert d.enabled == ["ExecutiveReview"]
    d.complete("ExecutiveReview", "amendments")
    assert d.enabled == ["RequestAmendments"]
    d.complete("RequestAmendments", "amended")
    d.complete("LegalReview", "approved", CHECKED)
    d.complete("ExecutiveReview", "approved")
    d.complete("CustomerSignature", "signed")
    d.complete("SetupProcurement")
    d.done(hand_on_to="revenue-recognition")


def test_wf3_signature_expires_after_five_days() -> None:
    d = Drive("contract-processing", {**APPROVED_DEAL, "contract_type": "standard"})
    d.complete("PrepareContract")
    d.fire_timer("SendForSignature", after=5 * DAY)
    d.done(hand_on_to=None)
    assert d.case.data["contract_status"] == "expired"


@pytest.mark.parametrize("who", ["LegalReview", "Escalate"])
def test_wf3_a_rejected_contract_ends_without_hand_on(who: str) -> None:
    d = Drive("contract-processing", {**APPROVED_DEAL, "contract_type": "custom"})
    if who == "Escalate":
        d.complete("LegalReview", "amendments")
        d.fire_timer("RequestAmendments", after=72 * HOUR)
    d.complete(who, "rejected")
    d.done(hand_on_to=None)
    assert d.case.data["contract_status"] == "rejected"


@pytest.mark.parametrize(("change", "code", "field"), [
    ({"approval_status": None}, 1002, "approval_status"),
    ({"approval_status": "rejected"}, 1001, "approval_status"),
    ({"discount_percent": 1.5}, 1001, "discount_percent"),
    ({"contract_type": "handshake"}, 1001, "contract_type"),
])
def test_wf3_takes_only_approved_deals(change: dict[str, Any], code: int, field: str) -> None:
    data = {k: v for k, v in {**APPROVED_DEAL, **change}.items() if v is not None}
    with pytest.raises(DataInvalid) as info:
        Case.create(net("contract-processing"), "d", data, at=0.0)
    assert (info.value.code, info.value.field) == (code, field)


def test_wf2_refuses_at_creation_a_contract_type_wf3_would_refuse_at_hand_over() -> None:
    """A deal naming a contract WF3 does not know ("handshake") was approved through WF2
    and then stuck: the hand-over to WF3 refused it (an incident on the merge)."""
    deal = {"deal_name": "x", "customer_name": "y", "deal_acv": 10_000.0}
    with pytest.raises(DataInvalid) as info:
        Case.create(net("deal-approval-gate"), "d", {**deal, "contract_type": "handshake"},
                    at=0.0)
    assert (info.value.code, info.value.field) == (1001, "contract_type")
    wf2, wf3 = (net(w).spec.data.properties["contract_type"].enum  # type: ignore[union-attr]
                for w in ("deal-approval-gate", "contract-processing"))
    assert wf2 == wf3
    Case.create(net("deal-approval-gate"), "d", deal, at=0.0)  # none named: WF3's default


# --------------------------------------------------------------------------- WF4

PRICED_DEAL = {**APPROVED_DEAL, "discount_percent": 0.12, "contract_status": "signed"}


def _justify(d: Drive, **extra: Any) -> None:
    d.complete("JustifyDiscount", "submitted",
               {"justification": "competitive displacement", **extra})


@pytest.mark.parametrize(("discount", "approver"), [
    (0.01, "SalesManagerApproval"), (0.05, "SalesManagerApproval"),
    (0.06, "DirectorApproval"), (0.10, "DirectorApproval"),
    (0.12, "CFOApproval"), (0.15, "CFOApproval"),
    (0.2, "BoardApproval"), (0.25, "BoardApproval"),
    (0.3, "CEOApproval"), (1, "CEOApproval"),
])
def test_wf4_decision_table_4(discount: float, approver: str) -> None:
    d = Drive("pricing-exception", {**PRICED_DEAL, "discount_percent": discount})
    assert d.enabled == ["JustifyDiscount"]
    assert d.case.data["pricing_attempts"] == 0
    _justify(d)
    assert d.enabled == [approver]


def test_wf4_twelve_percent_revised_twice_then_approved_by_the_cfo() -> None:
    d = Drive("pricing-exception", PRICED_DEAL)
    for attempt in (1, 2):
        _justify(d)
        assert d.case.data["pricing_attempts"] == attempt
        assert d.enabled == ["CFOApproval"]
        d.complete("CFOApproval", "revise")
        assert d.enabled == ["JustifyDiscount"]
    _justify(d)
    d.complete("CFOApproval", "approved")
    d.done(hand_on_to="revenue-recognition")
    assert d.case.data["pricing_status"] == "approved"
    assert d.case.data["pricing_attempts"] == 3
    assert d.case.data["discount_justification"] == "competitive displacement"


def test_wf4_third_revision_denies_the_exception() -> None:
    d = Drive("pricing-exception", PRICED_DEAL)
    for _ in range(2):
        _justify(d)
        d.complete("CFOApproval", "revise")
    _justify(d)
    d.complete("CFOApproval", "revise")
    d.done(hand_on_to=None)
    assert d.case.data["pricing_status"] == "denied"
    assert d.case.data["pricing_attempts"] == 3


def test_wf4_denied_outright() -> None:
    d = Drive("pricing-exception", PRICED_DEAL)
    _justify(d)
    d.complete("CFOApproval", "denied")
    d.done(hand_on_to=None)
    assert d.case.data["pricing_status"] == "denied"


def test_wf4_a_revised_discount_goes_to_the_matching_authority() -> None:
    d = Drive("pricing-exception", PRICED_DEAL)
    _justify(d)
    d.complete("CFOApproval", "revise")
    _justify(d, discount_percent=0.04)
    assert d.enabled == ["SalesManagerApproval"]
    d.complete("SalesManagerApproval", "approved")
    d.done(hand_on_to="revenue-recognition")
    assert d.case.data["discount_percent"] == 0.04


def test_wf4_the_attempt_counter_cannot_be_set_from_the_output() -> None:
    d = Drive("pricing-exception", PRICED_DEAL)
    for _ in range(3):
        _justify(d, pricing_attempts=-100)
        d.complete("CFOApproval", "revise")
    d.done(hand_on_to=None)
    assert d.case.data["pricing_attempts"] == 3
    assert d.case.data["pricing_status"] == "denied"


def test_wf4_a_justification_is_required() -> None:
    d = Drive("pricing-exception", PRICED_DEAL)
    with pytest.raises(GuardFailed) as info:
        d.complete("JustifyDiscount", "submitted", {})
    assert info.value.field == "justification"


def test_wf4_is_for_discounts_only() -> None:
    with pytest.raises(DataInvalid):
        Case.create(net("pricing-exception"), "d", APPROVED_DEAL, at=0.0)


# --------------------------------------------------------------------------- WF5


def test_wf5_invoice_path_wins_the_deferred_choice() -> None:
    d = Drive("revenue-recognition", APPROVED_DEAL)
    assert d.enabled == ["PrepaymentReceived", "SendInvoice"]
    d.start("SendInvoice")  # the runtime starts the automatic task: prepay is withdrawn
    assert d.enabled == ["SendInvoice"]
    d.complete("SendInvoice", output={"invoice_id": "inv_1"})
    assert d.enabled == ["PaymentReceived"]
    d.complete("PaymentReceived", "paid")
    assert d.enabled == ["BookRevenue"]
    d.complete("BookRevenue")
    d.complete("SetupBilling")
    d.done(hand_on_to=None)


def test_wf5_prepay_path_wins_the_deferred_choice() -> None:
    d = Drive("revenue-recognition", APPROVED_DEAL)
    invoice = d.item("SendInvoice")
    out = d.complete("PrepaymentReceived", "paid", {"amount": 600000})
    assert WorkItemCancelled(invoice, d.at, "withdrawn") in out
    assert d.enabled == ["BookRevenue"]
    d.complete("BookRevenue")
    d.complete("SetupBilling")
    d.done(hand_on_to=None)


def test_wf5_no_payment_within_60_days_goes_to_collections() -> None:
    d = Drive("revenue-recognition", APPROVED_DEAL)
    d.complete("SendInvoice")
    d.fire_timer("PaymentReceived", after=60 * DAY)
    assert d.enabled == ["Collections"]
    d.complete("Collections", "collected")
    d.complete("BookRevenue")
    d.complete("SetupBilling")
    d.done(hand_on_to=None)


def test_wf5_uncollectable_is_written_off() -> None:
    d = Drive("revenue-recognition", APPROVED_DEAL)
    d.complete("SendInvoice")
    d.fire_timer("PaymentReceived", after=60 * DAY)
    d.complete("Collections", "written_off")
    d.done(hand_on_to=None)
    assert d.case.data["revenue_status"] == "written_off"


# --------------------------------------------------------------------------- hand-over


def _approve_deal(d: Drive) -> None:
    for task in d.enabled:
        d.complete(task, "approved")
    d.complete("AllApprovalsComplete")


def test_tutorial_deal_runs_wf2_wf3_wf5_as_one_case() -> None:
    d = Drive("deal-approval-gate", TUTORIAL_DEAL, "deal_techcorp_001")
    _approve_deal(d)
    assert d.case.hand_on_to == "contract-processing"
    d.hand_on()
    assert d.case.net.workflow_id == "contract-processing"
    assert d.case.status == "active" and d.enabled == ["PrepareContract"]
    (handed_on,) = [e for e in d.events if isinstance(e, CaseHandedOn)]
    assert handed_on.defaults == {"contract_type": "standard"}
    d.complete("PrepareContract")
    d.complete("SendForSignature", "signed")
    assert d.case.hand_on_to == "revenue-recognition"  # WF4 skipped: no discount
    d.hand_on()
    d.complete("SendInvoice")
    d.complete("PaymentReceived", "paid")
    d.complete("BookRevenue")
    d.complete("SetupBilling")
    d.done(hand_on_to=None)
    assert d.case.case_id == "deal_techcorp_001"
    assert d.case.data == {**TUTORIAL_DEAL, "approval_status": "approved",
                           "contract_type": "standard", "contract_status": "signed"}
    handed = [e.workflow_id for e in d.events if isinstance(e, CaseHandedOn)]
    assert handed == ["contract-processing", "revenue-recognition"]


def test_discounted_deal_runs_wf2_wf3_wf4_wf5_as_one_case() -> None:
    d = Drive("deal-approval-gate", {**TUTORIAL_DEAL, "discount_percent": 0.08}, "deal_2")
    _approve_deal(d)
    d.hand_on()
    d.complete("PrepareContract")
    d.complete("SendForSignature", "signed")
    assert d.case.hand_on_to == "pricing-exception"
    d.hand_on()
    _justify(d)
    d.complete("DirectorApproval", "approved")
    d.hand_on()
    assert d.case.net.workflow_id == "revenue-recognition"
    d.complete("PrepaymentReceived", "paid")
    d.complete("BookRevenue")
    d.complete("SetupBilling")
    d.done(hand_on_to=None)
    assert d.case.case_id == "deal_2"
    assert d.case.data["deal_name"] == TUTORIAL_DEAL["deal_name"]
    assert d.case.data["pricing_status"] == "approved"
