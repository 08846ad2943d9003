"""Every benchmark script still runs: `python bench/<script> --smoke` exits 0 and prints
its JSON rows. Their numbers are not asserted here (speed is measured in bench/, on
purpose not in timed tests); what this catches is a script left behind by a change it
depends on -- bench/recovery.py unpacked the store's rows one short for a session
after the store's rows gained the case-row touch, and only a full run found it."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from adapters.collector import YOUNG

ROOT = pathlib.Path(__file__).resolve().parents[2]
# bench/run_all.py's scripts, history_import.py and simulate_memory.py (hot_path and vs_spiff run
# in-process there and in test_hot_path_guard / test_peers; mapek_eval's harness runs
# in tests/mapek).
SCRIPTS = ["durable.py", "memory.py", "recovery.py", "http.py", "mapek_analysis.py",
           "history_import.py", "simulate_memory.py"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_benchmark_runs(script: str) -> None:
    cmd = [sys.executable, str(ROOT / "bench" / script), "--smoke"]
    if script == "http.py":
        cmd.append("--json")  # a table for people otherwise
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT,
                       check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    assert rows, f"no JSON rows on stdout:\n{p.stdout[-2000:]}"


def test_the_durable_benchmark_observes_with_the_monitor_in_each_place(tmp_path) -> None:
    """--alternate runs without the Monitor and with it in each place; every append is
    observed: folded by the tail process, or here (handed on or read back). --pool
    over the rows it printed pairs them as the run did."""
    cmd = [sys.executable, str(ROOT / "bench" / "durable.py"), "--smoke", "--alternate",
           "--monitor-in", "process,loop", "--monitor-every", "0.01"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT,
                       check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    by_place: dict[str, list[dict]] = {}
    for row in rows:
        by_place.setdefault(row.get("monitor_in", "none"), []).append(row)
    assert sorted(by_place) == ["loop", "none", "process"]
    assert all(len(r) == 2 for r in by_place.values())  # levels 1 and 10
    for row in by_place["process"]:
        assert row["monitor_appends_tailed"] == row["appends_committed"] > 0
        assert row["monitor_appends_handed_on"] + row["monitor_appends_read"] == 0
    for row in by_place["loop"]:
        assert row["monitor_appends_tailed"] == 0
        assert (row["monitor_appends_handed_on"] + row["monitor_appends_read"]
                == row["appends_committed"])
    for row in by_place["process"] + by_place["loop"]:  # served: before the last catch-up
        assert 0 < row["served_s"] <= row["seconds"]
        assert row["monitor_last_catch_up_s"] >= 0
    overheads = sorted(line for line in p.stderr.splitlines() if " overhead " in line)
    assert [line.split(" overhead ")[0] for line in overheads] == [
        "durable N=   1: monitor (in loop)", "durable N=   1: monitor (in process)",
        "durable N=  10: monitor (in loop)", "durable N=  10: monitor (in process)"]
    (tmp_path / "run.jsonl").write_text(p.stdout)
    pooled = subprocess.run([sys.executable, str(ROOT / "bench" / "durable.py"), "--pool",
                             str(tmp_path / "run.jsonl")], capture_output=True, text=True,
                            timeout=60, cwd=ROOT, check=False)
    assert pooled.returncode == 0, pooled.stderr[-3000:]
    assert sorted(pooled.stdout.splitlines()) == overheads


def test_the_durable_benchmark_runs_at_each_collector_pace() -> None:
    """--collector default,serving runs each level at the interpreter's pace and at
    `caseloop serve`'s, in turns, says which in each row and prints their paired
    ratio; runs are at serve's pace unless told otherwise."""
    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([sys.executable, str(ROOT / "bench" / "durable.py"), "--smoke",
                            *extra], capture_output=True, text=True, timeout=300,
                           cwd=ROOT, check=False)
        assert p.returncode == 0, p.stderr[-3000:]
        return p

    def rows(p: subprocess.CompletedProcess[str]) -> list[tuple[int, str]]:
        out = [r for r in map(json.loads, (line for line in p.stdout.splitlines()
                                           if line.startswith("{")))]
        # The pace each run had, as the collector had it then.
        assert all(r["gc_young_threshold"] == {"default": 700, "serving": YOUNG}[
            r["collector"]] for r in out), out
        return [(r["concurrency"], r["collector"]) for r in out]

    both = run("--collector", "default,serving")
    assert rows(both) == [(1, "default"), (1, "serving"), (10, "default"), (10, "serving")]
    assert [line.split(":")[1] for line in both.stderr.splitlines()
            if "collector's pace" in line] == [
        " the serving vs the default collector's pace"] * 2
    assert rows(run()) == [(1, "serving"), (10, "serving")]
    for bad_pace in ("never", "serving,serving"):
        bad = subprocess.run([sys.executable, str(ROOT / "bench" / "durable.py"), "--smoke",
                              "--collector", bad_pace], capture_output=True, text=True,
                             timeout=60, cwd=ROOT, check=False)
        assert bad.returncode == 2 and "--collector" in bad.stderr, bad_pace
