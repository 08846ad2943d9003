"""Resident memory: many open cases held by the runtime, then passivated.

Creates N deal-approval-gate cases through `Runtime.create` over the SQLite
group-commit store (ack after COMMIT; `--workers` creates in flight, so the store
batches them) and leaves each with its four approvals enabled. Bytes per open case is
the tracemalloc difference between a snapshot before the first create and one after
the last (after `gc.collect()`); the benchmark keeps no list of cases or ids, so
everything in the difference is held by the runtime (actors, LRU table, timer heap)
and the cases (state, work items, data). Memory SQLite allocates itself (page cache)
is not traced by tracemalloc; the process RSS is reported beside it.

Then the cases are passivated the documented way -- the runtime's idle timeout, on
its virtual clock (advanced past the timeout, not past the approvals' 24 h timers) --
and the traced memory still held is reported per case: what a passivated case costs.

The data are the hot path's (bench/hot_path.py): the tutorial's deal, with a distinct
ACV per case. Only deal-approval-gate is registered.

    python bench/memory.py [--cases 100000] [--workers 1000] [--top 8] [--smoke]

One JSON line on stdout; a short summary (and where the bytes are) on stderr.
"""

from __future__ import annotations

import argparse
import gc
import json
import pathlib
import sys
import tempfile
import time
import tracemalloc
from typing import Any

import anyio

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from actors import Runtime, VirtualClock, placeholder_actions  # noqa: E402
from adapters.sqlite_store import SQLiteStore  # noqa: E402
from engine import compile_document  # noqa: E402

# The tutorial's TechCorp deal (specs/examples/techcorp-deal.json).
DEAL = json.loads((ROOT / "specs" / "examples" / "techcorp-deal.json").read_text())
WORKFLOW = "deal-approval-gate"
APPROVALS = ["SendToSalesManager", "SendToLegal", "SendToFinance", "ExecutiveCheck"]
IDLE_TIMEOUT = 3600.0  # an hour: below the sales manager's 24 h timer


def rss_bytes() -> int:
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def traced(snap: tracemalloc.Snapshot) -> int:
    return sum(s.size for s in snap.statistics("filename"))


def top_lines(after: tracemalloc.Snapshot, before: tracemalloc.Snapshot, n_cases: int,
              top: int) -> list[str]:
    out = []
    for s in after.compare_to(before, "lineno")[:top]:
        frame = s.traceback[0]
        name = pathlib.Path(frame.filename)
        where = (str(name.relative_to(ROOT)) if name.is_relative_to(ROOT)
                 else f"{name.parent.name}/{name.name}")
        out.append(f"    {s.size_diff / n_cases:8.1f} B/case  {where}:{frame.lineno}")
    return out


async def run(n: int, workers: int, tmp: str, top: int, trace: bool = True,
              ) -> tuple[dict[str, Any], list[str]]:
    net = compile_document((ROOT / "specs" / f"{WORKFLOW}.json").read_text())
    clock = VirtualClock(0.0)
    notes: list[str] = []
    store = SQLiteStore(str(pathlib.Path(tmp) / "memory.db"))
    async with store, Runtime(store, clock, placeholder_actions(),
                              idle_timeout=IDLE_TIMEOUT) as rt:
        rt.add_net(net)
        # Warm up outside the measurement: first-use caches (compiled guards,
        # interned names, SQLite statements) are not per-case memory.
        await rt.create(WORKFLOW, "warmup", dict(DEAL))
        counter = iter(range(n))

        async def creator() -> None:
            for i in counter:
                data = dict(DEAL)
                data["deal_acv"] = 600000 + i  # a distinct int per case
                await rt.create(WORKFLOW, f"deal_{i:07d}", data)

        gc.collect()
        rss0 = rss_bytes()
        if trace:
            tracemalloc.start()
            before = tracemalloc.take_snapshot()
        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(min(workers, n)):
                tg.start_soon(creator)
        create_s = time.perf_counter() - t0
        # The store's writer keeps its last round (up to `workers` appends, with their
        # events and rows) until the next commit: a constant, not a per-case cost. One
        # more small append (on the warm-up case) replaces it.
        await rt.complete("warmup", "SendToFinance", "approved")
        gc.collect()
        rss1 = rss_bytes()
        if trace:
            after = tracemalloc.take_snapshot()
        resident = rt.resident - 1  # less the warm-up case
        probe = await rt.get(f"deal_{n - 1:07d}")
        enabled = sorted(probe.enabled_tasks())
        assert resident == n, (resident, n)
        assert enabled == sorted(APPROVALS), enabled
        del probe
        if trace:
            per_case = (traced(after) - traced(before)) / n
            notes.append(f"  where the bytes of an open case are (top {top} lines):")
            notes += top_lines(after, before, n, top)

        # Passivate: let the idle timeout pass on the virtual clock.
        t1 = time.perf_counter()
        clock.advance_to(IDLE_TIMEOUT / 2)
        await anyio.sleep(0.01)
        clock.advance_to(IDLE_TIMEOUT + 1)
        for _ in range(1000):
            if rt.resident == 0:
                break
            await anyio.sleep(0.001)
        passivate_s = time.perf_counter() - t1
        resident_after = rt.resident
        gc.collect()
        rss2 = rss_bytes()
        if trace:
            passive = tracemalloc.take_snapshot()
            tracemalloc.stop()
            per_case_passive = (traced(passive) - traced(before)) / n
            notes.append("  what a passivated case still holds (top lines):")
            notes += top_lines(passive, before, n, min(top, 4))
        # It comes back on demand from the store.
        again = await rt.get(f"deal_{n // 2:07d}")
        assert sorted(again.enabled_tasks()) == sorted(APPROVALS)
    row: dict[str, Any] = {"bench": "memory", "mode": "tracemalloc" if trace else "rss",
                           "cases": n, "resident_open": resident}
    if trace:
        row |= {"bytes_per_open_case": round(per_case), "target_bytes": 2048,
                "bytes_per_passivated_case": round(per_case_passive)}
    else:  # RSS is only meaningful without tracemalloc's own tables
        row |= {"rss_bytes_per_open_case": round((rss1 - rss0) / n),
                "rss_mb_open": round(rss1 / 2**20, 1),
                "rss_mb_after_passivation": round(rss2 / 2**20, 1)}
    row |= {"create_s": round(create_s, 2), "creates_per_s": round(n / create_s),
            "resident_after_passivation": resident_after,
            "passivate_s": round(passivate_s, 3), "python": sys.version.split()[0]}
    return row, notes


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=1000, help="creates in flight")
    ap.add_argument("--top", type=int, default=8, help="allocation sites to list")
    ap.add_argument("--no-trace", action="store_true",
                    help="no tracemalloc: report process RSS growth and untraced create time")
    ap.add_argument("--smoke", action="store_true", help="tiny run for CI: checks it works")
    a = ap.parse_args(argv)
    if a.smoke:
        a.cases = 2000
    with tempfile.TemporaryDirectory(prefix="caseloop-memory-") as tmp:
        row, notes = anyio.run(run, a.cases, a.workers, tmp, a.top, not a.no_trace)
    print(json.dumps(row), flush=True)
    if a.no_trace:
        print(f"memory (RSS): {row['cases']} open cases, RSS +{row['rss_bytes_per_open_case']}"
              f" B each ({row['rss_mb_open']} MB; {row['rss_mb_after_passivation']} MB after "
              f"passivating to {row['resident_after_passivation']} resident); created in "
              f"{row['create_s']} s ({row['creates_per_s']}/s)", file=sys.stderr)
    else:
        print(f"memory: {row['cases']} open cases, {row['bytes_per_open_case']} B each (traced;"
              f" target <= 2048); created in {row['create_s']} s under tracemalloc; after "
              f"passivation {row['resident_after_passivation']} resident, "
              f"{row['bytes_per_passivated_case']} B/case still held", file=sys.stderr)
    print("\n".join(notes), file=sys.stderr)


if __name__ == "__main__":
    main()
