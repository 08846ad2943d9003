"""Registration: every problem at once, each located; unsound nets rejected with a trace."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from engine import SpecError, compile_document
from engine.compiler import MAX_NODES


def seq(*tasks: str, **extra: Any) -> dict[str, Any]:
    flows = [{"from": "start", "to": tasks[0]}]
    flows += [{"from": a, "to": b} for a, b in itertools.pairwise(tasks)]
    flows.append({"from": tasks[-1], "to": "end"})
    return {"id": "wf", "tasks": [{"id": t} for t in tasks], "flows": flows, **extra}


def problems(spec: Any) -> dict[str, str]:
    with pytest.raises(SpecError) as exc:
        compile_document(spec)
    assert exc.value.code == 2000 and exc.value.kind == "invalid"
    return {p.path: p.problem for p in exc.value.problems}


def test_a_valid_sequence_compiles_with_indices() -> None:
    net = compile_document(seq("A", "B"))
    assert [t.id for t in net.tasks] == ["A", "B"]
    assert "A->B" in net.cond_ids and net.warnings == ()


def test_all_structural_problems_are_reported_together_and_located() -> None:
    spec = seq("A", "B")
    spec["tasks"].append({"id": "A"})  # duplicate
    spec["flows"].append({"from": "B", "to": "Nowhere"})  # dangling
    spec["flows"].append({"from": "start", "to": "end"})  # condition to condition
    spec["tasks"][0]["cancels"] = ["Ghost"]
    found = problems(spec)
    assert "duplicate id 'A'" in found["/tasks/2/id"]
    assert "unknown task or condition 'Nowhere'" in found["/flows/3/to"]
    assert "cannot join two conditions" in found["/flows/4"]
    assert "'Ghost'" in found["/tasks/0/cancels/0"]


def test_unreachable_task_and_no_path_to_end() -> None:
    spec = seq("A")
    spec["conditions"] = [{"id": "island"}, {"id": "sink"}]
    spec["tasks"] += [{"id": "Orphan"}, {"id": "Stuck"}]
    spec["flows"] += [{"from": "island", "to": "Orphan"}, {"from": "Orphan", "to": "end"},
                      {"from": "A", "to": "Stuck"}, {"from": "Stuck", "to": "sink"}]
    found = problems(spec)
    assert "unreachable" in found["/tasks/1"]
    assert "no path to the end" in found["/tasks/2"]


def test_guard_syntax_errors_are_located_at_the_flow() -> None:
    spec = seq("A", "B")
    spec["tasks"][0]["split"] = "xor"
    spec["flows"].insert(2, {"from": "A", "to": "end", "when": "score >> 3"})
    found = problems(spec)
    assert "guard does not parse" in found["/flows/2/when"]


def test_xor_split_needs_exactly_one_default() -> None:
    spec = seq("A", "B")
    spec["tasks"][0]["split"] = "xor"
    spec["flows"][1]["when"] = "x > 1"
    spec["flows"].insert(2, {"from": "A", "to": "end", "when": "x <= 1"})
    assert "exactly one outgoing flow must be the default" in problems(spec)["/tasks/0/split"]


def test_and_split_flows_carry_no_guards() -> None:
    spec = seq("A", "B")
    spec["flows"][1]["when"] = "x > 1"
    assert "AND split" in problems(spec)["/flows/1/when"]


def test_shape_errors_name_the_path() -> None:
    spec = seq("A")
    spec["tasks"][0]["join"] = "sometimes"
    found = problems(spec)
    (path, problem), = found.items()
    assert path == "/tasks/0/join" and "sometimes" not in path and problem


def test_unsound_and_join_after_xor_split_is_a_deadlock_with_its_trace() -> None:
    spec = {
        "id": "wf",
        "tasks": [{"id": "Pick", "split": "xor"}, {"id": "Left"}, {"id": "Right"},
                  {"id": "Join", "join": "and"}],
        "flows": [{"from": "start", "to": "Pick"},
                  {"from": "Pick", "to": "Left", "when": "x == 1"},
                  {"from": "Pick", "to": "Right"},
                  {"from": "Left", "to": "Join"}, {"from": "Right", "to": "Join"},
                  {"from": "Join", "to": "end"}],
    }
    found = problems(spec)
    text = " ".join(found.values())
    assert "deadlock: after Pick -> Left nothing can fire" in text or \
        "deadlock: after Pick -> Right nothing can fire" in text
    assert "dead task: 'Join'" in found["/tasks/3"]


def test_unsound_xor_join_after_and_split_leaves_a_token_behind() -> None:
    spec = {
        "id": "wf",
        "tasks": [{"id": "Fork"}, {"id": "Left"}, {"id": "Right"}, {"id": "Merge"}],
        "flows": [{"from": "start", "to": "Fork"}, {"from": "Fork", "to": "Left"},
                  {"from": "Fork", "to": "Right"}, {"from": "Left", "to": "Merge"},
                  {"from": "Right", "to": "Merge"}, {"from": "Merge", "to": "end"}],
    }
    text = " ".join(problems(spec).values())
    assert "improper completion" in text and "tokens left on" in text


def test_livelock_without_option_to_complete_is_rejected() -> None:
    spec = {
        "id": "wf",
        "tasks": [{"id": "A", "split": "xor"}, {"id": "Loop1"}, {"id": "Loop2"}],
        "conditions": [{"id": "c1"}, {"id": "c2"}],
        "flows": [{"from": "start", "to": "A"}, {"from": "A", "to": "end", "when": "x"},
                  {"from": "A", "to": "c1"}, {"from": "c1", "to": "Loop1"},
                  {"from": "Loop1", "to": "c2"}, {"from": "c2", "to": "Loop2"},
                  {"from": "Loop2", "to": "c1"}],
    }
    found = problems(spec)
    assert any("no path to the end" in p for p in found.values())


def test_too_large_to_decide_is_accepted_with_an_explicit_warning() -> None:
    # Eight parallel two-step branches: 3**8 interleavings, far above a bound of 50.
    branches = [(f"A{i}", f"B{i}") for i in range(8)]
    spec = {
        "id": "wf",
        "tasks": [{"id": "Fork"}, {"id": "Join", "join": "and"}]
        + [{"id": t} for pair in branches for t in pair],
        "flows": [{"from": "start", "to": "Fork"}, {"from": "Join", "to": "end"}]
        + [f for a, b in branches for f in ({"from": "Fork", "to": a}, {"from": a, "to": b},
                                            {"from": b, "to": "Join"})],
    }
    net = compile_document(spec, state_bound=50)
    assert net.warnings and "not decided" in net.warnings[0]
    assert compile_document(spec).warnings == ()  # the default bound decides it


def parallel(n: int) -> dict[str, Any]:
    """One AND-split into n tasks joined again: 2**n markings, each n firings wide."""
    names = [f"T{i}" for i in range(n)]
    return {"id": "wide", "tasks": [{"id": "Fork"}, {"id": "Join", "join": "and"}]
            + [{"id": t} for t in names],
            "flows": [{"from": "start", "to": "Fork"}, {"from": "Join", "to": "end"}]
            + [{"from": "Fork", "to": t} for t in names]
            + [{"from": t, "to": "Join"} for t in names]}


def test_a_wide_net_is_given_up_on_within_the_work_bound() -> None:
    # 20,000 states of 100 parallel tasks were 400 million steps: 31 s of a server
    # that checks at registration. The work bound gives up after ten million.
    started = time.monotonic()
    net = compile_document(parallel(100))
    assert time.monotonic() - started < 10, "the soundness check ran past its work bound"
    assert len(net.warnings) == 1 and "steps of work" in net.warnings[0]


def test_more_than_max_nodes_is_refused_at_tasks() -> None:
    # n + 2 tasks and 2n conditions, the flows from task to task (start and end are
    # not counted): 3n + 2 nodes.
    assert compile_document(parallel(166), state_bound=50).warnings  # 500: allowed
    found = problems(parallel(167))  # 503
    assert list(found) == ["/tasks"] and f"at most {MAX_NODES}" in found["/tasks"]
    assert compile_document(parallel(167), check_soundness=False)  # stored specs still load


def test_yaml_and_json_give_the_same_net() -> None:
    yaml_text = """
id: wf
tasks: [{id: A}, {id: B}]
flows:
  - {from: start, to: A}
  - {from: A, to: B}
  - {from: B, to: end}
"""
    a, b = compile_document(yaml_text), compile_document(seq("A", "B"))
    assert a.cond_ids == b.cond_ids and [t.id for t in a.tasks] == [t.id for t in b.tasks]


def test_shipped_specs_validate_from_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from adapters.cli import main

    assert main(["validate", "specs"]) == 0
    out = capsys.readouterr().out
    for wf in ("lead-qualification", "deal-approval-gate", "contract-processing",
               "pricing-exception", "revenue-recognition"):
        assert f"{wf} v1" in out and "sound" in out


def test_the_cli_walks_the_tutorial_deal_to_revenue(capsys: pytest.CaptureFixture[str],
                                                    ) -> None:
    # Found in review: `caseloop walk` answered "approved" everywhere and stopped with a
    # traceback once the e-signature task listed its results (signed, declined, expired).
    from adapters.cli import main

    assert main(["walk", "--specs", "specs"]) == 0
    out = capsys.readouterr().out
    assert "-> handed on to revenue-recognition" in out
    assert out.rstrip().splitlines()[-1].startswith("deal_techcorp_001: completed after")


def test_cli_reports_located_problems_and_fails(tmp_path: Any,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from adapters.cli import main

    bad = tmp_path / "bad.json"
    bad.write_text('{"id": "bad", "tasks": [{"id": "A"}], "flows": '
                   '[{"from": "start", "to": "A"}, {"from": "A", "to": "Nope"}]}')
    assert main(["validate", str(bad)]) == 1
    assert f"error {bad}:/flows/1/to: unknown task or condition 'Nope'" in capsys.readouterr().out


@pytest.mark.parametrize("after", ["999999999999w", "9" * 400, 1e300, "5300w"])
def test_a_timer_longer_than_a_century_is_located(after: Any) -> None:
    # Its deadline would lie past what a date can hold: every view of the case failed.
    spec = {"id": "wf", "tasks": [{"id": "T", "timer": {"after": after}}],
            "flows": [{"from": "start", "to": "T"}, {"from": "T", "to": "end"}]}
    found = problems(spec)
    assert list(found) == ["/tasks/0/timer/after"] and "century" in found[
        "/tasks/0/timer/after"]
    spec["tasks"][0]["timer"]["after"] = "5200w"  # just under: fine
    assert compile_document(spec)


@pytest.mark.parametrize("delay", ["20000w", "soon", -5])
def test_an_action_delay_the_runtime_cannot_wait_is_located(delay: Any) -> None:
    spec = {"id": "wf", "tasks": [{"id": "T", "kind": "automatic", "action": "a",
                                   "params": {"delay": delay}}],
            "flows": [{"from": "start", "to": "T"}, {"from": "T", "to": "end"}]}
    assert list(problems(spec)) == ["/tasks/0/params/delay"]


@pytest.mark.parametrize(("field", "path", "words"), [
    ({"type": "number", "min_length": 1}, "/data/properties/amount/min_length", "string"),
    ({"type": "string", "min_length": -1}, "/data/properties/amount/min_length", ">= 0"),
])
def test_a_min_length_that_cannot_apply_is_located(field: dict[str, Any], path: str,
                                                   words: str) -> None:
    found = problems(seq("A", data={"properties": {"amount": field}}))
    assert list(found) == [path], found
    assert words in found[path], found
