"""Hot-path regression guard: the engine's cost relative to a fixed pure-Python workload.

CI machines are shared and noisy, so absolute times say little. This measures, in one
process, alternating, K rounds of

  (a) the hot path: 300 cases of the shipped deal approval gate created and every work
      item completed (bench/hot_path.py's cases and order), and
  (b) a fixed reference workload: plain-Python dict/list/int/object work of about the
      same duration, which no change to caseloop can make faster or slower,

and takes the median of the per-round ratios (a)/(b), in process CPU time (a round that
loses its core to another process does not count against either side). The ratio moves
with the engine, not with the machine's mood. `--record` stores it in
bench/guard_reference.json; tests/bench/test_hot_path_guard.py fails when the current
ratio exceeds the recorded one by more than 50 %.

Re-record (and say why in the commit) when the hot path gets deliberately more expensive
or the machine kind or Python version changes; never edit `reference_workload`, or
every recorded ratio becomes meaningless.

    python bench/guard.py            # measure and compare with the record
    python bench/guard.py --record   # measure and write bench/guard_reference.json
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import pathlib
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

BENCH = pathlib.Path(__file__).resolve().parent
REFERENCE_FILE = BENCH / "guard_reference.json"
sys.path.append(str(BENCH))  # after the stdlib: a bench/ file never shadows it

import hot_path  # noqa: E402  (inserts the repository root into sys.path itself)

HOT_CASES = 300
ROUNDS = 21
TOLERANCE = 1.5  # fail when the ratio grows beyond 1.5x the recorded one
REF_SIZE = 3000  # reference workload size, fixed: about as long as the hot workload


class _Slot:
    __slots__ = ("count", "key", "state")

    def __init__(self, key: int, state: str) -> None:
        self.key = key
        self.state = state
        self.count = 0


def reference_workload(size: int = REF_SIZE) -> int:
    """Deterministic interpreter-bound work shaped like an engine's: small dicts and
    objects created, looked up, replaced; list and bitset arithmetic; method calls.
    Returns a checksum so the work cannot be skipped and stays the same work."""
    records: list[dict[str, Any]] = []
    for i in range(size):
        rec = {"id": i, "acv": 600000 + i, "tokens": [0] * 10, "marked": 0, "items": {}}
        for j in range(4):
            rec["items"][j + 1] = _Slot(j + 1, "enabled")
        rec["tokens"][2] += 1
        rec["marked"] |= 1 << 2
        records.append(rec)
    total = 0
    for step in range(1, 5):
        for rec in records:
            items = dict(rec["items"])
            slot = items.pop(step)
            slot.count += 1
            tokens = rec["tokens"][:]
            tokens[step + 3] += 1
            marked = rec["marked"] | (1 << (step + 3))
            rec["items"], rec["tokens"], rec["marked"] = items, tokens, marked
            if rec["acv"] > 250000 and marked.bit_count() > step:
                total += slot.key + len(items) + tokens[step + 3]
            data = {**rec, "last": step}
            total += len(data) + (data["id"] & 7)
    return total


REFERENCE_CHECKSUM = 174000  # reference_workload() of REF_SIZE: proves it is the same work


def hot_workload(net: Any) -> int:
    cases = hot_path.create_cases(net, HOT_CASES)
    n = hot_path.complete_all(cases)
    if not all(c.status == "completed" for c in cases):
        raise AssertionError("a hot-path case did not complete")
    return n


def _cpu(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    gc.disable()
    try:
        t0 = time.process_time()
        out = fn()
        return time.process_time() - t0, out
    finally:
        gc.enable()


def measure(rounds: int = ROUNDS) -> dict[str, Any]:
    """Median over `rounds` of hot/reference CPU time, the sides alternating first."""
    net = hot_path.load_net()
    hot_workload(net)  # warm up both: first-call costs are not the steady state
    reference_workload()
    ratios, hot_s, ref_s = [], [], []
    for r in range(rounds):
        order = ("hot", "ref") if r % 2 == 0 else ("ref", "hot")
        got: dict[str, float] = {}
        for side in order:
            if side == "hot":
                got[side], _ = _cpu(lambda: hot_workload(net))
            else:
                got[side], check = _cpu(reference_workload)
                if check != REFERENCE_CHECKSUM:
                    raise AssertionError("reference workload is not deterministic")
        ratios.append(got["hot"] / got["ref"])
        hot_s.append(got["hot"])
        ref_s.append(got["ref"])
    return {
        "ratio": round(statistics.median(ratios), 4),
        "ratio_min": round(min(ratios), 4),
        "ratio_max": round(max(ratios), 4),
        "rounds": rounds,
        "hot_ms_median": round(statistics.median(hot_s) * 1e3, 2),
        "ref_ms_median": round(statistics.median(ref_s) * 1e3, 2),
        "hot_cases": HOT_CASES,
        "ref_size": REF_SIZE,
    }


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": sys.version.split()[0],
            "implementation": platform.python_implementation()}


def load_reference() -> dict[str, Any]:
    return json.loads(REFERENCE_FILE.read_text())


def record(rounds: int = ROUNDS) -> dict[str, Any]:
    m = measure(rounds)
    ref = {
        **m,
        "tolerance": TOLERANCE,
        "recorded": datetime.date.today().isoformat(),
        "machine": machine(),
        "note": "median CPU-time ratio: hot path (bench/guard.py hot_workload) / "
                "reference_workload; re-record with `python bench/guard.py --record`",
    }
    REFERENCE_FILE.write_text(json.dumps(ref, indent=2) + "\n")
    return ref


def check(rounds: int = ROUNDS) -> tuple[bool, dict[str, Any]]:
    """(within tolerance, details) for the current hot path against the record."""
    ref = load_reference()
    m = measure(rounds)
    limit = ref["ratio"] * ref.get("tolerance", TOLERANCE)
    return m["ratio"] <= limit, {**m, "recorded_ratio": ref["ratio"], "limit": round(limit, 4),
                                 "growth": round(m["ratio"] / ref["ratio"], 3)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record", action="store_true", help=f"write {REFERENCE_FILE.name}")
    ap.add_argument("--rounds", type=int, default=ROUNDS)
    a = ap.parse_args(argv)
    if a.record:
        print(json.dumps(record(a.rounds)))
        return
    ok, details = check(a.rounds)
    print(json.dumps({"ok": ok, **details}))
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
