"""The case state machine: errors with codes, atomic commands, timers, hand-on, replay."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from engine import (
    AlreadyDone,
    Case,
    CaseClosed,
    ChecklistIncomplete,
    DataInvalid,
    GuardFailed,
    NotEnabled,
    ProtectedField,
    SpecError,
    UnknownResult,
    UnknownTask,
    compile_document,
    decode_events,
    encode_events,
    replay,
)

SPECS = pathlib.Path(__file__).resolve().parents[2] / "specs"
DEAL = {"deal_name": "TechCorp", "customer_name": "TechCorp", "deal_acv": 600000,
        "discount_percent": 0}


def gate():
    return compile_document((SPECS / "deal-approval-gate.json").read_text())


def fingerprint(case: Case) -> Any:
    return (case.status, dict(case.data), case.tokens_by_condition(), case.marked,
            sorted((i.id, i.task, i.state, i.due) for i in case.work_items()),
            case.version, case.hand_on_to)


def test_tutorial_deal_offers_four_approvals_then_the_merge() -> None:
    case, events = Case.create(gate(), "deal_techcorp_001", DEAL, 0.0)
    assert case.enabled_tasks() == ["SendToSalesManager", "SendToLegal", "SendToFinance",
                                    "ExecutiveCheck"]
    for task in case.enabled_tasks():
        events += case.complete(task, 60.0, "approved", {f"{task}_ok": True})
    assert case.enabled_tasks() == ["AllApprovalsComplete"]
    events += case.complete("AllApprovalsComplete", 120.0)
    assert case.status == "completed" and case.hand_on_to == "contract-processing"
    assert fingerprint(replay(events, gate())) == fingerprint(case)


def test_data_schema_errors_carry_pipeline_codes_and_fields() -> None:
    net = gate()
    with pytest.raises(DataInvalid) as missing:
        Case.create(net, "d", {"deal_name": "x", "customer_name": "y"}, 0.0)
    assert (missing.value.code, missing.value.field) == (1002, "deal_acv")
    with pytest.raises(DataInvalid) as zero:
        Case.create(net, "d", {**DEAL, "deal_acv": 0}, 0.0)
    assert (zero.value.code, zero.value.field) == (1003, "deal_acv")
    with pytest.raises(DataInvalid) as typed:
        Case.create(net, "d", {**DEAL, "deal_acv": "lots"}, 0.0)
    assert (typed.value.code, typed.value.field) == (1001, "deal_acv")


def named(min_length: int = 1, **field: Any) -> Any:
    """A one-task workflow whose required `title` has a `min_length`."""
    return compile_document({
        "id": "named",
        "data": {"required": ["title"], "properties": {
            "title": {"type": "string", "min_length": min_length, **field},
            "note": {"type": "string", "min_length": 3}}},
        "tasks": [{"id": "Write", "role": "sdr"}],
        "flows": [{"from": "start", "to": "Write"}, {"from": "Write", "to": "end"}]})


@pytest.mark.parametrize("blank", ["", " ", "\t\n ", "\u00a0\u2003"])
def test_a_blank_string_is_shorter_than_any_min_length(blank: str) -> None:
    # Spaces are not a name: a deal called " " is as unnamed as one called "".
    with pytest.raises(DataInvalid) as info:
        Case.create(named(), "c", {"title": blank}, 0.0)
    assert (info.value.code, info.value.field) == (1001, "title")
    assert "blank" in str(info.value)


def test_min_length_counts_the_text_without_surrounding_spaces() -> None:
    case, _ = Case.create(named(), "c", {"title": " x "}, 0.0)
    assert case.data["title"] == " x "  # checked, never rewritten
    Case.create(named(), "c", {"title": "x", "note": "abc"}, 0.0)
    with pytest.raises(DataInvalid) as info:
        Case.create(named(), "c", {"title": "x", "note": " ab  "}, 0.0)
    assert (info.value.code, info.value.field) == (1001, "note")
    assert "at least 3" in str(info.value)
    Case.create(named(min_length=0), "c", {"title": ""}, 0.0)  # 0: any string


def test_min_length_reports_the_fields_own_code_also_for_what_a_task_writes() -> None:
    net = named(code=1002)
    with pytest.raises(DataInvalid) as info:
        Case.create(net, "c", {"title": "  "}, 0.0)
    assert (info.value.code, info.value.field) == (1002, "title")
    case, _ = Case.create(net, "c", {"title": "Renewal"}, 0.0)
    with pytest.raises(DataInvalid) as info:  # a completion cannot blank it either
        case.complete("Write", 1.0, output={"note": "  "})
    assert (info.value.code, info.value.field) == (1001, "note")
    assert case.enabled_tasks() == ["Write"]


def test_declared_defaults_fill_missing_fields() -> None:
    case, _ = Case.create(gate(), "d", {k: v for k, v in DEAL.items()
                                        if k != "discount_percent"}, 0.0)
    assert case.data["discount_percent"] == 0


def test_errors_distinguish_unknown_not_enabled_and_already_done() -> None:
    case, _ = Case.create(gate(), "d", {**DEAL, "deal_acv": 40000}, 0.0)
    with pytest.raises(UnknownTask) as unknown:
        case.complete("NoSuchTask", 1.0)
    assert unknown.value.kind == "not_found"
    with pytest.raises(NotEnabled) as not_enabled:
        case.complete("SendToLegal", 1.0)  # legal is not selected under 50K
    assert not_enabled.value.code == 2003
    case.complete("SendToFinance", 1.0, "approved")
    with pytest.raises(AlreadyDone) as done:
        case.complete("SendToFinance", 2.0, "approved")
    assert done.value.code == 3004


def test_a_failing_guard_leaves_the_case_exactly_as_it_was() -> None:
    spec = {
        "id": "wf",
        "tasks": [{"id": "Score"}, {"id": "Route", "kind": "empty", "split": "xor"},
                  {"id": "High"}, {"id": "Low"}],
        "flows": [{"from": "start", "to": "Score"}, {"from": "Score", "to": "Route"},
                  {"from": "Route", "to": "High", "when": "score > 65"},
                  {"from": "Route", "to": "Low"},
                  {"from": "High", "to": "end"}, {"from": "Low", "to": "end"}],
    }
    net = compile_document(spec)
    case, _ = Case.create(net, "c", {}, 0.0)
    before = fingerprint(case)
    # Score completes without reporting `score`: the empty routing task's guard, fired
    # in the same command, cannot be decided -> 2004 naming the field, nothing changed.
    with pytest.raises(GuardFailed) as exc:
        case.complete("Score", 1.0, output={"other": 1})
    assert (exc.value.code, exc.value.field) == (2004, "score")
    assert fingerprint(case) == before
    case.complete("Score", 2.0, output={"score": 72})
    assert case.enabled_tasks() == ["High"]


def test_checklist_gate_lists_missing_items() -> None:
    spec = {"id": "wf", "tasks": [{"id": "Sign", "checklist": ["redlines_reviewed",
                                                                "pricing_approved"]}],
            "flows": [{"from": "start", "to": "Sign"}, {"from": "Sign", "to": "end"}]}
    case, _ = Case.create(compile_document(spec), "c", {}, 0.0)
    with pytest.raises(ChecklistIncomplete) as exc:
        case.complete("Sign", 1.0, output={"checklist": {"redlines_reviewed": True}})
    assert "pricing_approved" in str(exc.value) and exc.value.code == 2004
    case.complete("Sign", 1.0, output={"checklist": ["redlines_reviewed", "pricing_approved"]})
    assert case.status == "completed"


def timed_spec(on_timeout: str) -> dict[str, Any]:
    return {
        "id": "wf",
        "tasks": [{"id": "Amend", "split": "xor",
                   "timer": {"after": "72h", "on_timeout": on_timeout}},
                  {"id": "Escalate"}, {"id": "Sign"}],
        "flows": [{"from": "start", "to": "Amend"},
                  {"from": "Amend", "to": "Escalate", "when": "result == 'timeout'"},
                  {"from": "Amend", "to": "Sign"},
                  {"from": "Escalate", "to": "end"}, {"from": "Sign", "to": "end"}],
    }


def test_a_task_listing_its_results_refuses_any_other_and_changes_nothing() -> None:
    spec = {"id": "wf", "tasks": [{"id": "Decide", "split": "xor",
                                   "results": ["yes", "no"]}, {"id": "Yes"}],
            "flows": [{"from": "start", "to": "Decide"},
                      {"from": "Decide", "to": "end", "when": "result == 'no'"},
                      {"from": "Decide", "to": "Yes"}, {"from": "Yes", "to": "end"}]}
    case, _ = Case.create(compile_document(spec), "c1", {}, 0.0)
    before = fingerprint(case)
    for result in ("No", "maybe", None):
        with pytest.raises(UnknownResult) as info:
            case.complete("Decide", 1.0, result)
        assert (info.value.code, info.value.field) == (2003, "result")
        assert "'no' or 'yes'" in info.value.message
        assert fingerprint(case) == before
    case.complete("Decide", 1.0, "no")
    assert case.status == "completed"


@pytest.mark.parametrize(("task", "path"), [
    ({"id": "T", "kind": "empty", "results": ["a"]}, "/tasks/0/results"),
    ({"id": "T", "results": ["a"], "timer": {"after": "1h"}}, "/tasks/0/timer/result"),
    ({"id": "T", "authority_when": "result == 'a'"}, "/tasks/0/authority_when"),
    ({"id": "T", "authority": {"acv": "x"}, "authority_when": "result =="},
     "/tasks/0/authority_when"),
])
def test_results_and_conditions_a_task_cannot_use_are_spec_errors(task: dict[str, Any],
                                                      path: str) -> None:
    spec = {"id": "wf", "tasks": [task],
            "flows": [{"from": "start", "to": "T"}, {"from": "T", "to": "end"}]}
    with pytest.raises(SpecError) as info:
        compile_document(spec)
    assert path in [p.path for p in info.value.problems]


def test_a_timer_may_complete_with_one_of_the_results() -> None:
    spec = {"id": "wf", "tasks": [{"id": "T", "results": ["done", "late"],
                                   "timer": {"after": 60, "result": "late"}}],
            "flows": [{"from": "start", "to": "T"}, {"from": "T", "to": "end"}]}
    case, _ = Case.create(compile_document(spec), "c1", {}, 0.0)
    case.fire_timer(case.work_items()[0].id, 60.0)
    assert case.status == "completed"


def test_a_completion_may_not_change_the_declared_figures_others_signed_off() -> None:
    case, _ = Case.create(gate(), "d1", DEAL, 0.0)
    before = fingerprint(case)
    for output in ({"deal_acv": 50000}, {"discount_percent": 0.9, "note": "ok"}):
        with pytest.raises(ProtectedField) as info:
            case.check_output("SendToLegal", output)
        assert info.value.code == 2003 and info.value.kind == "invalid"
        assert info.value.field == f"output_data.{next(iter(output))}"
        assert fingerprint(case) == before
    # What it may write: fields of its own, a declared one unset or null, the same value.
    case = Case.create(gate(), "d2", {**DEAL, "deal_value_3yr": None}, 0.0)[0]
    fine = {"legal_approval": "APPROVED", "margin_percent": 0.4, "deal_acv": 600000,
            "deal_value_3yr": 1800000}
    case.check_output("SendToLegal", fine)
    case.complete("SendToLegal", 1.0, "approved", fine)
    assert case.data["legal_approval"] == "APPROVED" and case.data["margin_percent"] == 0.4


def test_a_task_mapping_a_declared_field_may_revise_it() -> None:
    spec = {"id": "wf", "data": {"properties": {"discount_percent": {"type": "number"}}},
            "tasks": [{"id": "Justify", "output": {"discount_percent": "discount_percent"}},
                      {"id": "Note"}],
            "flows": [{"from": "start", "to": "Justify"}, {"from": "Justify", "to": "Note"},
                      {"from": "Note", "to": "end"}]}
    case, _ = Case.create(compile_document(spec), "c1", {"discount_percent": 0.2}, 0.0)
    case.check_output("Justify", {"discount_percent": 0.12})
    case.complete("Justify", 1.0, None, {"discount_percent": 0.12})
    assert case.data["discount_percent"] == 0.12
    with pytest.raises(ProtectedField):
        case.check_output("Note", {"discount_percent": 0.5})


def test_a_timer_may_write_the_declared_data_its_spec_says() -> None:
    # The spec's own timer is not a person rewriting figures: it completes (a review
    # found it refused, and the item stuck past its deadline for good).
    spec = {"id": "wf", "data": {"properties": {"level": {"type": "string",
                                                          "default": "low"}}},
            "tasks": [{"id": "B", "timer": {"after": 60, "result": "expired",
                                            "output": {"level": "escalated"}}}],
            "flows": [{"from": "start", "to": "B"}, {"from": "B", "to": "end"}]}
    case, _ = Case.create(compile_document(spec), "c1", {}, 0.0)
    case.fire_timer(case.work_items()[0].id, 60.0)
    assert case.status == "completed" and case.data["level"] == "escalated"


def test_timer_routes_on_timeout_and_is_harmless_early_or_late() -> None:
    case, _ = Case.create(compile_document(timed_spec("complete")), "c", {}, 0.0)
    ((item, due),) = case.pending_timers()
    assert due == 72 * 3600.0
    assert case.fire_timer(item, due - 1) == []  # not yet due: nothing happens
    events = case.fire_timer(item, due)
    assert [type(e).__name__ for e in events][:2] == ["TimerFired", "WorkItemCompleted"]
    assert case.enabled_tasks() == ["Escalate"]


def test_timer_of_a_completed_item_does_nothing() -> None:
    case, _ = Case.create(compile_document(timed_spec("complete")), "c", {}, 0.0)
    ((item, due),) = case.pending_timers()
    case.complete("Amend", 10.0, "approved")
    assert case.enabled_tasks() == ["Sign"]
    before = fingerprint(case)
    assert case.fire_timer(item, due) == [] and fingerprint(case) == before


def test_timer_can_fail_the_item_instead() -> None:
    case, _ = Case.create(compile_document(timed_spec("fail")), "c", {}, 0.0)
    ((item, due),) = case.pending_timers()
    case.fire_timer(item, due)
    assert [i.state for i in case.work_items()] == ["failed"] and case.status == "active"


def test_hand_on_keeps_one_case_id_and_history() -> None:
    nets = {p.stem: compile_document(p.read_text()) for p in SPECS.glob("*.json")}
    case, events = Case.create(nets["deal-approval-gate"], "deal_1", DEAL, 0.0)
    for task in case.enabled_tasks():
        events += case.complete(task, 1.0, "approved")
    events += case.complete("AllApprovalsComplete", 2.0)
    with pytest.raises(CaseClosed):
        case.hand_on(nets["revenue-recognition"], 3.0)  # not where the spec hands on to
    events += case.hand_on(nets["contract-processing"], 3.0)
    assert case.case_id == "deal_1" and case.net.workflow_id == "contract-processing"
    assert case.status == "active" and case.enabled_tasks()
    rebuilt = replay(events, lambda wf, _v: nets[wf])
    assert fingerprint(rebuilt) == fingerprint(case)


def test_closed_case_refuses_commands() -> None:
    case, _ = Case.create(gate(), "d", DEAL, 0.0)
    case.cancel(1.0)
    assert case.status == "cancelled" and case.work_items() == []
    with pytest.raises(CaseClosed):
        case.complete("SendToLegal", 2.0)


def test_events_roundtrip_through_msgpack_and_replay() -> None:
    case, events = Case.create(gate(), "d", DEAL, 0.0)
    events += case.complete("SendToFinance", 1.0, "rejected", {"reason": "margin"})
    blob = encode_events(events)
    decoded = decode_events(blob)
    assert decoded == events
    assert fingerprint(replay(decoded, gate())) == fingerprint(case)
    assert case.status == "completed" and case.hand_on_to is None
    assert case.data["approval_status"] == "rejected"
    json.dumps([type(e).__name__ for e in decoded])  # names are what the API shows


def test_snapshot_roundtrip_restores_the_identical_case() -> None:
    import msgspec

    from engine import CaseSnapshot

    case, events = Case.create(gate(), "d", DEAL, 0.0)
    events += case.complete("SendToLegal", 1.0, "approved", {"legal": "ok"})
    case.start("SendToFinance", 2.0, by="james")
    blob = msgspec.msgpack.encode(case.snapshot())
    restored = Case.restore(gate(), msgspec.msgpack.decode(blob, type=CaseSnapshot))
    assert fingerprint(restored) == fingerprint(case)
    # and it goes on exactly like the original
    a = case.complete("SendToFinance", 3.0, "approved")
    b = restored.complete("SendToFinance", 3.0, "approved")
    assert a == b and fingerprint(restored) == fingerprint(case)


def test_a_started_item_can_be_reassigned_and_replays_so() -> None:
    """A started item passes to another holder (reallocation); an offered, a failed or
    a finished one cannot be reassigned, and a refusal changes nothing."""
    case, events = Case.create(gate(), "d", DEAL, 0.0)
    events += case.start("SendToLegal", 10.0, by="lee")
    (legal,) = [i for i in case.work_items() if i.state == "started"]
    before = fingerprint(case)
    events += case.reassign(legal.id, 20.0, by="awaiting:e_signature")
    assert case.items[legal.id].by == "awaiting:e_signature"
    assert fingerprint(case)[:5] == before[:5] and case.version == before[5] + 1
    mid = replay(decode_events(encode_events(events)), gate())
    assert mid.items[legal.id].by == "awaiting:e_signature"
    assert fingerprint(mid) == fingerprint(case)
    offered = next(i for i in case.work_items() if i.state == "enabled")
    with pytest.raises(NotEnabled):
        case.reassign(offered.id, 21.0, by="x")
    events += case.complete(legal.id, 30.0, "approved", by="esign")
    with pytest.raises((NotEnabled, AlreadyDone)):
        case.reassign(legal.id, 31.0, by="x")
    rebuilt = replay(decode_events(encode_events(events)), gate())
    assert fingerprint(rebuilt) == fingerprint(case)
    restored = Case.restore(gate(), case.snapshot())
    assert fingerprint(restored) == fingerprint(case)
