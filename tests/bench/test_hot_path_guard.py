"""Regression guard: the hot path's cost relative to a fixed pure-Python workload.

Ratios, not absolute times (CI machines are shared and noisy): bench/guard.py alternates
rounds of the hot path (300 deal-gate cases, every item completed) and a fixed reference
workload in this process and takes the median CPU-time ratio. It must stay within 1.5x
of the ratio recorded in bench/guard_reference.json (`python bench/guard.py --record`).
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys

BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench"


def _guard():  # a module loaded by path: bench/ is not a package
    spec = importlib.util.spec_from_file_location("caseloop_bench_guard", BENCH / "guard.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


guard = _guard()


def test_reference_workload_is_the_recorded_work() -> None:
    # Editing the reference workload silently invalidates every recorded ratio.
    assert guard.reference_workload() == guard.REFERENCE_CHECKSUM


def test_reference_record_is_usable() -> None:
    ref = guard.load_reference()
    assert ref["ratio"] > 0
    assert ref["hot_cases"] == guard.HOT_CASES
    assert ref["ref_size"] == guard.REF_SIZE


def test_hot_path_cost_relative_to_reference_within_tolerance() -> None:
    # Ratios only: a wall-time limit here failed CI on a machine busy with other jobs
    # while the ratio itself held (what the guard is for).
    ok, details = guard.check()
    assert ok, (
        f"hot path regressed: hot/reference CPU-time ratio {details['ratio']} is "
        f"{details['growth']}x the recorded {details['recorded_ratio']} (limit "
        f"{details['limit']}, 1.5x). If the slowdown is deliberate, re-record with "
        f"`python bench/guard.py --record` and say why. Details: {details}"
    )
