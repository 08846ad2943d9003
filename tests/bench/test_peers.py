"""The benchmark peers say the same thing: bench/peers/*.bpmn (SpiffWorkflow) and the
caseloop specs beside them route the same cases to the same approvals, which is what
bench/vs_spiff.py's `plan` assumes. Checked on the caseloop side by running the specs, on
the BPMN side by reading the XML (SpiffWorkflow itself is a `bench` extra, not installed
in CI)."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys
import xml.etree.ElementTree as ET

import pytest

from engine import Case, compile_document

BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench"
PEERS = BENCH / "peers"
BPMN = "{http://www.omg.org/spec/BPMN/20100524/MODEL}"


def _vs_spiff():  # a module loaded by path: bench/ is not a package
    spec = importlib.util.spec_from_file_location("caseloop_bench_vs_spiff",
                                                  BENCH / "vs_spiff.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


vs = _vs_spiff()


@pytest.mark.parametrize("variant", ["and", "or"])
def test_caseloop_peer_follows_the_plan(variant: str) -> None:
    net = compile_document((PEERS / f"deal-approval-gate-{variant}.json").read_text())
    assert not net.warnings
    for i, deal in enumerate(vs.deals(6)):
        case, _ = Case.create(net, f"c{i}", deal, 0.0)
        todo = vs.plan(deal, variant)
        assert sorted(case.enabled_tasks()) == sorted(todo)
        for task in todo:
            case.complete(task, 1.0, "approved", vs.APPROVED, "t")
        assert case.enabled_tasks() == [vs.FINAL]
        case.complete(vs.FINAL, 1.0, "approved", None, "t")
        assert case.status == "completed"
        assert case.data["approval_status"] == "approved"


def test_or_plan_skips_executive_below_250k() -> None:
    deals = vs.deals(4)
    assert [len(vs.plan(d, "or")) for d in deals] == [4, 3, 4, 3]
    assert all(vs.plan(d, "and") == vs.APPROVALS for d in deals)


@pytest.mark.parametrize("variant", ["and", "or"])
def test_bpmn_peer_has_the_same_tasks_and_routing(variant: str) -> None:
    root = ET.parse(PEERS / f"deal-approval-gate-{variant}.bpmn").getroot()
    proc = root.find(f"{BPMN}process")
    assert proc is not None and proc.get("id") == f"deal_approval_gate_{variant}"
    users = [t.get("id") for t in proc.iter(f"{BPMN}userTask")]
    assert users == list(vs.APPROVALS)
    assert [t.get("id") for t in proc.iter(f"{BPMN}scriptTask")] == [vs.FINAL]
    gateway = f"{BPMN}{'parallelGateway' if variant == 'and' else 'inclusiveGateway'}"
    assert len(list(proc.iter(gateway))) == 2
    conditions = {f.get("targetRef"): f.find(f"{BPMN}conditionExpression")
                  for f in proc.iter(f"{BPMN}sequenceFlow")
                  if f.get("sourceRef") == "RouteApprovals"}
    spec = (PEERS / f"deal-approval-gate-{variant}.json").read_text()
    flows = {f["to"]: f.get("when") for f in json.loads(spec)["flows"]
             if f["from"] == "RouteApprovals"}
    assert set(conditions) == set(flows) == set(vs.APPROVALS)
    for task, cond in conditions.items():
        if variant == "and":
            assert cond is None and flows[task] is None
        else:  # the same guard in both languages (Python's True is caseloop's true)
            assert cond.text.strip().lower() == flows[task]
