"""Hot path, engine alone: the deal approval gate in memory, many cases, every item completed.

The net is the shipped `specs/deal-approval-gate.json`: an OR-split into the four
approvals the deal's ACV selects, an OR-join, AllApprovalsComplete. Every case gets the
tutorial's deal data (ACV 600K, so all four approvals run). Cases are completed in
interleaved rounds (every case's manager approval, then every legal approval, ...), the
order a busy approval desk produces.

Prints one JSON line: completions/s, µs per completion, resident bytes per open case
(tracemalloc over creating the cases, data included). `--smoke` runs a tiny size for CI.

    python bench/hot_path.py [--cases 20000] [--repeat 5] [--smoke]
"""

from __future__ import annotations

import argparse
import gc
import json
import pathlib
import sys
import time
import tracemalloc

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import Case, compile_document  # noqa: E402

# The tutorial's TechCorp deal (specs/examples/techcorp-deal.json).
DEAL = json.loads((ROOT / "specs" / "examples" / "techcorp-deal.json").read_text())
ROUNDS = ("SendToSalesManager", "SendToLegal", "SendToFinance", "ExecutiveCheck",
          "AllApprovalsComplete")
APPROVED = {"approval": "APPROVED"}


def load_net():
    return compile_document((ROOT / "specs" / "deal-approval-gate.json").read_text())


def create_cases(net, n: int) -> list[Case]:
    cases = []
    for i in range(n):
        data = dict(DEAL)
        data["deal_acv"] = 600000 + i  # a distinct int per case, as real deals have
        case, _ = Case.create(net, f"deal_{i:07d}", data, 0.0)
        cases.append(case)
    return cases


def complete_all(cases: list[Case]) -> int:
    n = 0
    at = 1.0
    for task in ROUNDS:
        for case in cases:
            case.complete(task, at, "approved", APPROVED, "bench")
            n += 1
    return n


def bytes_per_open_case(net, n: int) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    cases = create_cases(net, n)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    size = sum(s.size_diff for s in after.compare_to(before, "filename"))
    # The list holding the cases is the benchmark's, not the cases'.
    size -= sys.getsizeof(cases)
    return size / n


def run(cases_n: int, repeat: int) -> dict[str, object]:
    net = load_net()
    best = float("inf")
    completions = 0
    for _ in range(repeat):
        cases = create_cases(net, cases_n)
        gc.collect()
        gc.disable()
        t0 = time.perf_counter()
        completions = complete_all(cases)
        dt = time.perf_counter() - t0
        gc.enable()
        assert all(c.status == "completed" for c in cases), "a case did not complete"
        best = min(best, dt)
    per_case = bytes_per_open_case(net, min(cases_n, 20000))
    return {
        "bench": "hot_path",
        "cases": cases_n,
        "completions": completions,
        "completions_per_s": round(completions / best),
        "us_per_completion": round(best / completions * 1e6, 3),
        "bytes_per_open_case": round(per_case),
        "python": sys.version.split()[0],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--smoke", action="store_true", help="tiny run for CI: checks it works")
    a = ap.parse_args(argv)
    if a.smoke:
        a.cases, a.repeat = 200, 1
    print(json.dumps(run(a.cases, a.repeat)))


if __name__ == "__main__":
    main()
