"""SLA breach records in the engine, and the conditional checklist gate.

`Case.breach_sla(item, at, target, alert)` records that a work item (item > 0) or the
case's stay in its current workflow (item 0) crossed its alert threshold: one
`SlaBreached`, at most once per open item; `case.breaches` maps the open breaches to
their task (or workflow). The work's end -- the item's completion or cancellation, or
the case's end -- emits `SlaResolved` in the same command. State is a fold over the
events, so replay and snapshots keep the breaches.

The checklist gate: a task's `checklist` must be confirmed by the completion (a dict
{item: true} or a list of names under output `checklist`) when its `checklist_when`
guard holds; otherwise `ChecklistIncomplete` (2004) with one Problem per missing item.

Regression guards for two engine findings made while this file was written (fixed in
engine/case.py `_check_list` since):

C1. A checklist given as a *string* passed the gate by substring match (`c in done`
    on a str), e.g. output {"checklist": "pricing_approved? no, redlines_reviewed? no"}.
C2. A checklist given as a number or boolean (output {"checklist": true}) raised a bare
    TypeError instead of an engine refusal (in the runtime: an ActorFault, HTTP 500).
"""

from __future__ import annotations

import copy
from typing import Any

import hypothesis.strategies as st
import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings

from engine import (
    AlreadyDone,
    Case,
    CaseClosed,
    CaseSnapshot,
    ChecklistIncomplete,
    EngineError,
    GuardFailed,
    NotEnabled,
    SpecError,
    compile_document,
    replay,
)
from engine.events import (
    CaseCancelled,
    CaseCompleted,
    CaseFailed,
    CaseHandedOn,
    SlaBreached,
    SlaResolved,
    WorkItemCancelled,
    WorkItemCompleted,
    WorkItemEnabled,
    decode_events,
    encode_events,
)

# A and-split into B and C, joined by J; J loops back to A on result 'again'.
LOOP = {
    "id": "sla-loop",
    "tasks": [{"id": "A"}, {"id": "B"}, {"id": "C"},
              {"id": "J", "join": "and", "split": "xor"}],
    "flows": [{"from": "start", "to": "A"}, {"from": "A", "to": "B"}, {"from": "A", "to": "C"},
              {"from": "B", "to": "J"}, {"from": "C", "to": "J"},
              {"from": "J", "to": "A", "when": "result == 'again'"}, {"from": "J", "to": "end"}],
}

# WCP-25: Abort (a deferred choice against Join) cancels the region B, C; D runs on.
REGION = {
    "id": "sla-region",
    "conditions": [{"id": "waiting"}, {"id": "outcome"}],
    "tasks": [
        {"id": "A"}, {"id": "B"}, {"id": "C"}, {"id": "D"},
        {"id": "Abort", "cancels": ["B", "C", "A->B", "B->C", "C->Join"]},
        {"id": "Join", "kind": "empty", "join": "and"},
        {"id": "Close", "kind": "empty", "join": "and"},
    ],
    "flows": [
        {"from": "start", "to": "A"}, {"from": "A", "to": "B"}, {"from": "A", "to": "waiting"},
        {"from": "A", "to": "D"}, {"from": "B", "to": "C"}, {"from": "C", "to": "Join"},
        {"from": "waiting", "to": "Join"}, {"from": "waiting", "to": "Abort"},
        {"from": "Abort", "to": "outcome"}, {"from": "Join", "to": "outcome"},
        {"from": "outcome", "to": "Close"}, {"from": "D", "to": "Close"},
        {"from": "Close", "to": "end"},
    ],
}

# Two parallel items X, Y; at its end the case is handed on to sla-second.
HANDS_ON = {
    "id": "sla-first",
    "tasks": [{"id": "Split", "kind": "empty"}, {"id": "X"}, {"id": "Y"},
              {"id": "Both", "kind": "empty", "join": "and"}],
    "flows": [{"from": "start", "to": "Split"}, {"from": "Split", "to": "X"},
              {"from": "Split", "to": "Y"}, {"from": "X", "to": "Both"},
              {"from": "Y", "to": "Both"}, {"from": "Both", "to": "end"}],
    "on_complete": [{"workflow": "sla-second"}],
}
SECOND = {"id": "sla-second", "tasks": [{"id": "Z"}],
          "flows": [{"from": "start", "to": "Z"}, {"from": "Z", "to": "end"}]}

TARGET, ALERT = 3600.0, 4 * 3600.0


class Logged:
    """A case with its log: every command's events are appended to `.events`."""

    def __init__(self, spec: dict[str, Any], data: dict[str, Any] | None = None) -> None:
        self.net = compile_document(spec)
        self.case, self.events = Case.create(self.net, "c1", data or {}, 0.0)

    def do(self, command: str, *args: Any, **kwargs: Any) -> list[Any]:
        out = getattr(self.case, command)(*args, **kwargs)
        self.events.extend(out)
        return out

    def item(self, task: str) -> int:
        return self.case.work_item(task).id


def encoded(snap: CaseSnapshot) -> bytes:
    return msgspec.msgpack.encode(snap)


def names(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


# ------------------------------------------------------------------ raising a breach
def test_a_breach_is_recorded_once_with_its_task_and_thresholds() -> None:
    lg = Logged(LOOP)
    a = lg.item("A")
    events = lg.do("breach_sla", a, 100.0, TARGET, ALERT)
    assert events == [SlaBreached(a, 100.0, "A", TARGET, ALERT)]
    assert lg.case.breaches == {a: "A"}
    before, version = encoded(lg.case.snapshot()), lg.case.version
    with pytest.raises(EngineError) as again:
        lg.case.breach_sla(a, 200.0, TARGET, ALERT)
    assert isinstance(again.value, AlreadyDone) and again.value.code == 3004
    assert encoded(lg.case.snapshot()) == before and lg.case.version == version
    assert lg.case.breaches == {a: "A"}
    # the work goes on: the breach changes nothing in the net
    assert lg.case.enabled_tasks() == ["A"]


def test_the_workflow_stay_is_item_zero_named_by_the_workflow() -> None:
    lg = Logged(LOOP)
    events = lg.do("breach_sla", 0, 50.0, TARGET, ALERT)
    assert events == [SlaBreached(0, 50.0, "sla-loop", TARGET, ALERT)]
    assert lg.case.breaches == {0: "sla-loop"}
    with pytest.raises(AlreadyDone):
        lg.case.breach_sla(0, 60.0, TARGET, ALERT)


def test_a_breach_is_refused_for_an_item_that_is_not_open() -> None:
    lg = Logged(LOOP)
    a = lg.item("A")
    lg.do("complete", "A", 10.0)
    before = encoded(lg.case.snapshot())
    for gone in (a, 999):  # completed; never existed
        with pytest.raises(NotEnabled) as info:
            lg.case.breach_sla(gone, 20.0, TARGET, ALERT)
        assert info.value.code == 2003
        assert encoded(lg.case.snapshot()) == before
    assert lg.case.breaches is None


def test_a_closed_case_takes_no_breach() -> None:
    lg = Logged(SECOND)
    lg.do("complete", "Z", 5.0)
    assert lg.case.status == "completed"
    with pytest.raises(CaseClosed):
        lg.case.breach_sla(0, 6.0, TARGET, ALERT)


# ---------------------------------------------------------------- resolving breaches
def test_completing_a_breached_item_resolves_it_alone_in_the_same_command() -> None:
    lg = Logged(LOOP)
    lg.do("complete", "A", 10.0)
    b, c = lg.item("B"), lg.item("C")
    lg.do("breach_sla", b, 20.0, TARGET, ALERT)
    lg.do("breach_sla", c, 21.0, TARGET, ALERT)
    lg.do("breach_sla", 0, 22.0, TARGET, ALERT)
    events = lg.do("complete", "B", 30.0)
    assert names(events) == ["WorkItemCompleted", "SlaResolved"]
    assert events[1] == SlaResolved(b, 30.0)
    assert lg.case.breaches == {c: "C", 0: "sla-loop"}


def test_completing_an_item_that_was_not_breached_resolves_nothing() -> None:
    lg = Logged(LOOP)
    lg.do("complete", "A", 10.0)
    lg.do("breach_sla", lg.item("C"), 20.0, TARGET, ALERT)
    events = lg.do("complete", "B", 30.0)
    assert not any(type(e) is SlaResolved for e in events)
    assert lg.case.breaches == {lg.item("C"): "C"}


def test_a_started_breached_item_is_resolved_when_completed() -> None:
    lg = Logged(LOOP)
    a = lg.item("A")
    lg.do("start", "A", 1.0, "ann")
    lg.do("breach_sla", a, 2.0, TARGET, ALERT)
    assert not any(type(e) is SlaResolved for e in lg.events)
    events = lg.do("complete", a, 3.0)
    assert SlaResolved(a, 3.0) in events
    assert lg.case.breaches is None


def test_cancel_item_resolves_its_breach() -> None:
    lg = Logged(LOOP)
    lg.do("complete", "A", 10.0)
    b, c = lg.item("B"), lg.item("C")
    lg.do("breach_sla", b, 20.0, TARGET, ALERT)
    lg.do("breach_sla", c, 20.0, TARGET, ALERT)
    events = lg.do("cancel_item", b, 25.0)
    i = names(events).index("WorkItemCancelled")
    assert events[i].item == b and SlaResolved(b, 25.0) in events[i + 1:]
    assert [e.item for e in events if type(e) is SlaResolved] == [b]
    assert lg.case.breaches == {c: "C"}


def test_a_cancellation_region_resolves_the_breaches_it_cancels() -> None:
    lg = Logged(REGION)
    lg.do("complete", "A", 1.0)
    b, d = lg.item("B"), lg.item("D")
    lg.do("breach_sla", b, 5.0, TARGET, ALERT)
    lg.do("breach_sla", d, 5.0, TARGET, ALERT)
    events = lg.do("complete", "Abort", 9.0)
    cancelled = [e.item for e in events if type(e) is WorkItemCancelled]
    assert cancelled == [b]
    resolved = [e for e in events if type(e) is SlaResolved]
    assert resolved == [SlaResolved(b, 9.0)]
    # resolved after the cancellation of its item
    assert events.index(resolved[0]) > names(events).index("WorkItemCancelled")
    assert lg.case.breaches == {d: "D"}


def test_the_case_completing_resolves_every_open_breach_including_item_zero() -> None:
    lg = Logged(REGION)
    lg.do("complete", "A", 1.0)
    d = lg.item("D")
    lg.do("breach_sla", 0, 2.0, TARGET, ALERT)
    lg.do("breach_sla", d, 3.0, TARGET, ALERT)
    lg.do("complete", "Abort", 4.0)
    assert lg.case.breaches == {0: "sla-region", d: "D"}
    events = lg.do("complete", "D", 5.0)
    assert lg.case.status == "completed"
    resolved = {e.item: e.at for e in events if type(e) is SlaResolved}
    assert resolved == {d: 5.0, 0: 5.0}
    done = names(events).index("CaseCompleted")
    assert [e.item for e in events[done:] if type(e) is SlaResolved] == [0]
    assert lg.case.breaches is None


def test_the_case_ending_with_open_items_resolves_them_all() -> None:
    """The case reaches its end while breached items are still open (cancel_remaining
    is not needed: cancelling the case is the common way)."""
    lg = Logged(LOOP)
    lg.do("complete", "A", 1.0)
    b, c = lg.item("B"), lg.item("C")
    for item in (b, c, 0):
        lg.do("breach_sla", item, 2.0, TARGET, ALERT)
    events = lg.do("cancel", 10.0, "customer walked away")
    assert lg.case.status == "cancelled"
    assert sorted(e.item for e in events if type(e) is SlaResolved) == [0, b, c]
    assert all(e.at == 10.0 for e in events if type(e) is SlaResolved)
    assert lg.case.breaches is None
    assert names(events)[-1] == "SlaResolved"  # nothing is left open after the end


def test_a_deadlocked_case_resolves_its_breaches() -> None:
    lg = Logged(LOOP)
    lg.do("complete", "A", 1.0)
    lg.do("breach_sla", 0, 2.0, TARGET, ALERT)
    lg.do("cancel_item", "B", 3.0)  # B's thread is withdrawn: J can never fire
    events = lg.do("complete", "C", 4.0)
    assert any(type(e) is CaseFailed for e in events)
    assert SlaResolved(0, 4.0) in events and lg.case.breaches is None


def test_a_hand_on_starts_a_fresh_workflow_stay() -> None:
    first, second = compile_document(HANDS_ON), compile_document(SECOND)
    case, log = Case.create(first, "c1", {}, 0.0)
    y = case.work_item("Y").id
    log += case.breach_sla(0, 1.0, TARGET, ALERT)
    log += case.breach_sla(y, 1.0, TARGET, ALERT)
    log += case.complete("X", 2.0)
    events = case.complete("Y", 3.0)
    log += events
    assert case.status == "completed" and case.hand_on_to == "sla-second"
    assert sorted(e.item for e in events if type(e) is SlaResolved) == [0, y]
    assert case.breaches is None
    log += case.hand_on(second, 4.0)
    assert case.breaches is None
    events = case.breach_sla(0, 5.0, TARGET, ALERT)
    log += events
    assert events == [SlaBreached(0, 5.0, "sla-second", TARGET, ALERT)]
    nets = {n.workflow_id: n for n in (first, second)}
    again = replay(log, lambda w, _v: nets[w])
    assert again.snapshot() == case.snapshot() and again.breaches == {0: "sla-second"}
    assert any(type(e) is CaseHandedOn for e in log)


# ------------------------------------------------------------- replay and snapshots
def _breached_mid_run() -> Logged:
    lg = Logged(LOOP)
    lg.do("complete", "A", 1.0)
    lg.do("breach_sla", lg.item("B"), 2.0, TARGET, ALERT)
    lg.do("breach_sla", lg.item("C"), 2.5, TARGET, ALERT)
    lg.do("breach_sla", 0, 3.0, TARGET, ALERT)
    lg.do("complete", "C", 4.0)
    return lg


def test_replay_rebuilds_the_same_breaches() -> None:
    lg = _breached_mid_run()
    assert lg.case.breaches == {lg.item("B"): "B", 0: "sla-loop"}
    again = replay(lg.events, lg.net)
    assert again.breaches == lg.case.breaches
    assert again.snapshot() == lg.case.snapshot()
    # through the encoded log as well (what the store keeps)
    stored = replay(decode_events(encode_events(lg.events)), lg.net)
    assert stored.snapshot() == lg.case.snapshot()


def test_snapshot_restore_keeps_breaches_and_resolves_them_later() -> None:
    lg = _breached_mid_run()
    b = lg.item("B")
    raw = encoded(lg.case.snapshot())
    restored = Case.restore(lg.net, msgspec.msgpack.decode(raw, type=CaseSnapshot))
    assert restored.breaches == {b: "B", 0: "sla-loop"}
    assert restored.snapshot() == lg.case.snapshot()
    with pytest.raises(AlreadyDone):  # still raised once, also after a restore
        restored.breach_sla(b, 5.0, TARGET, ALERT)
    events = restored.complete("B", 6.0)
    assert SlaResolved(b, 6.0) in events and restored.breaches == {0: "sla-loop"}
    # a restored case continued by the events after its snapshot is the live case
    live_events = lg.do("complete", "B", 6.0)
    assert live_events == events
    onto = replay(events, lg.net, onto=Case.restore(
        lg.net, msgspec.msgpack.decode(raw, type=CaseSnapshot)))
    assert onto.snapshot() == lg.case.snapshot()


def test_a_snapshot_without_breaches_restores_with_none() -> None:
    lg = Logged(LOOP)
    snap = lg.case.snapshot()
    assert snap.breaches is None
    assert Case.restore(lg.net, snap).breaches is None


def test_a_refused_command_keeps_the_breaches() -> None:
    lg = _breached_mid_run()
    before = dict(lg.case.breaches or {})
    with pytest.raises(NotEnabled):
        lg.case.complete("J", 9.0)  # not enabled: B is still open
    assert lg.case.breaches == before


# ----------------------------------------------------------------- the property
# A step: ("complete"|"start"|"cancel_item"|"breach", which open item, a result) or
# ("breach0"|"cancel", ...). Items are picked among the open ones by index.
OPS = ["complete"] * 4 + ["breach"] * 4 + ["start", "breach0", "cancel_item", "cancel"]
STEPS = st.lists(st.tuples(
    st.sampled_from(OPS),
    st.integers(0, 7),
    st.sampled_from([None, "again", "again"])), min_size=3, max_size=40)


def _ends(e: Any, item: int) -> bool:
    t = type(e)
    if t in (WorkItemCompleted, WorkItemCancelled):
        return e.item == item
    return t in (CaseCompleted, CaseCancelled, CaseFailed)


@pytest.mark.parametrize("spec", [LOOP, REGION], ids=["loop", "region"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=STEPS)
def test_open_breaches_are_breached_minus_resolved(spec: dict[str, Any],
                                                  steps: list[tuple[str, int, Any]]) -> None:
    net = compile_document(copy.deepcopy(spec))
    case, log = Case.create(net, "p", {}, 0.0)
    breached: set[int] = set()
    resolved: set[int] = set()
    task_of: dict[int, str] = {e.item: e.task for e in log if type(e) is WorkItemEnabled}
    at = 0.0
    for op, k, result in steps:
        if case.status != "active":
            break
        at += 1.0
        items = [i for i in case.work_items() if i.state != "failed"]
        it = items[k % len(items)] if items else None
        try:
            if op == "breach0":
                events = case.breach_sla(0, at, TARGET, ALERT)
            elif op == "cancel":
                events = case.cancel(at)
            elif it is None:
                continue
            elif op == "breach":
                events = case.breach_sla(it.id, at, TARGET, ALERT)
            elif op == "complete":
                events = case.complete(it.id, at, result)
            elif op == "start":
                events = case.start(it.id, at, "someone")
            else:
                events = case.cancel_item(it.id, at)
        except EngineError:
            # refused (already breached, already started, ...): nothing happened
            continue
        for n, e in enumerate(events):
            if type(e) is WorkItemEnabled:
                task_of[e.item] = e.task
            elif type(e) is SlaBreached:
                assert e.item not in breached - resolved, "a breach raised twice"
                assert e.task == (task_of[e.item] if e.item else net.workflow_id)
                breached.add(e.item)
            elif type(e) is SlaResolved:
                assert e.item in breached - resolved, "resolved before it was breached"
                assert any(_ends(x, e.item) for x in events[:n]), \
                    "resolved without its work ending in the same command"
                assert e.at == at
                resolved.add(e.item)
        log += events
        assert set(case.breaches or ()) == breached - resolved
        assert case.breaches is None or all(case.breaches.values())
        # every open breach names an open item (or the workflow stay)
        assert all(i == 0 or i in case.items for i in case.breaches or ())
    event(f"breaches raised: {min(len(breached), 3)}, resolved: {min(len(resolved), 3)}")
    if case.status != "active":
        assert case.breaches is None
    again = replay(log, net)
    assert again.snapshot() == case.snapshot()
    assert again.breaches == case.breaches


# ------------------------------------------------------------- the checklist gate
def checklist_spec(when: str | None = None, checklist: list[str] | None = None,
                   ) -> dict[str, Any]:
    task: dict[str, Any] = {"id": "Review", "split": "xor",
                            "checklist": ["redlines_reviewed", "pricing_approved"]
                            if checklist is None else checklist}
    if when is not None:
        task["checklist_when"] = when
    return {
        "id": "gate",
        "data": {"properties": {"deal_acv": {"type": "number"}}},
        "tasks": [{"id": "Prepare"}, task, {"id": "Sign"}, {"id": "Redo"}],
        "flows": [{"from": "start", "to": "Prepare"}, {"from": "Prepare", "to": "Review"},
                  {"from": "Review", "to": "Sign", "when": "result == 'approved'"},
                  {"from": "Review", "to": "Redo"},
                  {"from": "Sign", "to": "end"}, {"from": "Redo", "to": "end"}],
    }


def at_review(when: str | None = None, data: dict[str, Any] | None = None) -> Case:
    case, _ = Case.create(compile_document(checklist_spec(when)), "g", data or {}, 0.0)
    case.complete("Prepare", 1.0)
    return case


def refused(case: Case, result: str | None, output: dict[str, Any] | None,
            ) -> ChecklistIncomplete:
    before = encoded(case.snapshot())
    with pytest.raises(ChecklistIncomplete) as info:
        case.complete("Review", 2.0, result, output)
    assert encoded(case.snapshot()) == before, "a refused completion changed the case"
    return info.value


def test_unconditional_checklist_lists_each_missing_item() -> None:
    err = refused(at_review(), "approved", None)
    assert err.code == 2004 and err.kind == "invalid"
    assert [p.path for p in err.problems] == ["output_data.checklist.redlines_reviewed",
                                              "output_data.checklist.pricing_approved"]
    err = refused(at_review(), "rejected", {"checklist": {"redlines_reviewed": True}})
    assert [p.path for p in err.problems] == ["output_data.checklist.pricing_approved"]


def test_checklist_as_dict_needs_true_values() -> None:
    err = refused(at_review(), "approved",
                  {"checklist": {"redlines_reviewed": True, "pricing_approved": False}})
    assert [p.path for p in err.problems] == ["output_data.checklist.pricing_approved"]
    err = refused(at_review(), "approved",
                  {"checklist": {"redlines_reviewed": "yes", "pricing_approved": 1}})
    assert len(err.problems) == 2, "only true confirms an item"
    case = at_review()
    case.complete("Review", 2.0, "approved",
                  {"checklist": {"redlines_reviewed": True, "pricing_approved": True,
                                 "extra": False}})
    assert case.enabled_tasks() == ["Sign"]


def test_checklist_as_list_of_names() -> None:
    err = refused(at_review(), "approved", {"checklist": ["pricing_approved"]})
    assert [p.path for p in err.problems] == ["output_data.checklist.redlines_reviewed"]
    case = at_review()
    case.complete("Review", 2.0, "approved",
                  {"checklist": ["pricing_approved", "redlines_reviewed"]})
    assert case.enabled_tasks() == ["Sign"]


def test_checklist_when_on_the_result() -> None:
    when = "result == 'approved'"
    err = refused(at_review(when), "approved", {})
    assert len(err.problems) == 2
    case = at_review(when)  # not approving: the gate does not apply
    case.complete("Review", 2.0, "needs_changes")
    assert case.enabled_tasks() == ["Redo"]
    case = at_review(when)
    case.complete("Review", 2.0, "approved", {"checklist": {"redlines_reviewed": True,
                                                            "pricing_approved": True}})
    assert case.enabled_tasks() == ["Sign"]


def test_checklist_when_on_the_case_data() -> None:
    when = "deal_acv > 100000"
    err = refused(at_review(when, {"deal_acv": 250000}), "approved", {})
    assert len(err.problems) == 2
    small = at_review(when, {"deal_acv": 40000})
    small.complete("Review", 2.0, "approved")
    assert small.enabled_tasks() == ["Sign"]


def test_checklist_when_on_an_output_field_shadowing_the_data() -> None:
    when = "deal_acv > 100000"
    # the completion raises the figure: the gate sees the output over the data
    err = refused(at_review(when, {"deal_acv": 40000}), "approved", {"deal_acv": 500000})
    assert len(err.problems) == 2
    case = at_review(when, {"deal_acv": 250000})
    case.complete("Review", 2.0, "approved", {"deal_acv": 50000})
    assert case.enabled_tasks() == ["Sign"]


def test_checklist_when_reading_a_missing_field_is_refused_and_located() -> None:
    case = at_review("risk == 'high'")
    before = encoded(case.snapshot())
    with pytest.raises(GuardFailed) as info:
        case.complete("Review", 2.0, "approved")
    assert info.value.field == "risk"
    assert encoded(case.snapshot()) == before
    case.complete("Review", 2.0, "approved", {"risk": "low"})
    assert case.enabled_tasks() == ["Sign"]


def test_checklist_when_without_a_checklist_is_a_spec_error() -> None:
    spec = checklist_spec("result == 'approved'", checklist=[])
    with pytest.raises(SpecError) as info:
        compile_document(spec)
    assert [p.path for p in info.value.problems] == ["/tasks/1/checklist_when"]


def test_a_checklist_when_that_does_not_parse_is_located() -> None:
    with pytest.raises(SpecError) as info:
        compile_document(checklist_spec("result == == 'approved'"))
    (problem,) = info.value.problems
    assert problem.path == "/tasks/1/checklist_when"
    assert "parse" in problem.problem
    with pytest.raises(SpecError) as both:  # and still located without a checklist
        compile_document(checklist_spec("result ==", checklist=[]))
    assert {p.path for p in both.value.problems} == {"/tasks/1/checklist_when"}
    assert len(both.value.problems) == 2


def test_a_checklist_given_as_text_does_not_confirm_by_substring() -> None:
    """C1: a string is neither {item: true} nor a list of names."""
    case = at_review()
    with pytest.raises(ChecklistIncomplete):
        case.complete("Review", 2.0, "approved",
                      {"checklist": "pricing_approved? no. redlines_reviewed? no."})


@pytest.mark.parametrize("value", [True, 7], ids=["bool", "int"])
def test_a_checklist_of_the_wrong_type_is_refused_not_a_crash(value: Any) -> None:
    """C2: a malformed checklist is an engine refusal (422), not a TypeError."""
    case = at_review()
    before = encoded(case.snapshot())
    with pytest.raises(EngineError):
        case.complete("Review", 2.0, "approved", {"checklist": value})
    assert encoded(case.snapshot()) == before


def test_a_task_with_authority_limits_cannot_accept_signals() -> None:
    """A signal names no person, so no limit could be checked: refused at registration."""
    spec = checklist_spec("result == 'approved'")
    spec["tasks"][1]["authority"] = {"discount": "discount"}
    compile_document(spec)  # authority alone is fine
    spec["tasks"][1]["accepts_signal"] = True
    with pytest.raises(SpecError) as info:
        compile_document(spec)
    assert [p.path for p in info.value.problems] == ["/tasks/1/accepts_signal"]
