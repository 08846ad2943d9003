"""Every benchmark in one go: one table, bench/results.json, a dated row in bench/README.md.

Runs the hot path (bench/hot_path.py), caseloop vs SpiffWorkflow (bench/vs_spiff.py) and
the hot-path regression guard (bench/guard.py) in this process, and the benchmarks that
other parts of caseloop bring -- durable store, resident memory, recovery, HTTP,
MAPE-K analysis -- as scripts once they exist: any of the file names in LATER below,
run as `python bench/<file> [--smoke]`, printing one JSON object per line
(bench/hot_path.py's convention). Until then they are listed as pending; that is not
a failure.

Writes bench/results.json (this run) and appends one row -- date, CPU model, cores,
Python, key numbers -- under "## Results log" in bench/README.md (the heading is added if
missing; the file is only ever appended to).

    python bench/run_all.py [--smoke] [--no-log]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import pathlib
import subprocess
import sys
import time
from typing import Any

BENCH = pathlib.Path(__file__).resolve().parent
sys.path.append(str(BENCH))  # after the stdlib: a bench/ file never shadows it

import guard  # noqa: E402
import hot_path  # noqa: E402
import vs_spiff  # noqa: E402

RESULTS = BENCH / "results.json"
README = BENCH / "README.md"
LOG_HEADING = "## Results log"
LOG_COLUMNS = ("date", "CPU", "cores", "Python", "hot path compl/s", "hot path B/case",
               "vs Spiff in memory (and/or)", "vs Spiff persisted", "B/open case vs Spiff",
               "guard ratio", "pending")
# Benchmarks that land with later issues, and the script names they may take.
LATER = {
    "durable": ("durable.py",),
    "memory": ("memory.py",),
    "recovery": ("recovery.py",),
    "http": ("http.py",),
    "mapek": ("mapek_analysis.py", "mapek_bench.py", "analysis.py"),
}


def machine() -> dict[str, Any]:
    return guard.machine()


def run_script(path: pathlib.Path, smoke: bool) -> dict[str, Any]:
    cmd = [sys.executable, str(path), *(["--smoke"] if smoke else [])]
    if path.name == "http.py":
        cmd.append("--json")  # it prints a table for people otherwise
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    except subprocess.TimeoutExpired:
        return {"status": "error", "error": "timed out after 1800 s"}
    rows = []
    for line in p.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                rows.append(json.loads(line))
    out: dict[str, Any] = {"script": path.name, "rows": rows,
                           "wall_s": round(time.perf_counter() - t0, 1)}
    if p.returncode != 0 or not rows:
        out["status"] = "error"
        out["error"] = (p.stderr.strip().splitlines() or ["no JSON output"])[-1]
    else:
        out["status"] = "ok"
    return out


def run_all(smoke: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = {}
    t0 = time.perf_counter()
    results["hot_path"] = {"status": "ok", "rows": [
        hot_path.run(200, 1) if smoke else hot_path.run(20000, 5)]}
    results["hot_path"]["wall_s"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    try:
        rows = (vs_spiff.run(20, 1, persisted_cases=8, mem_cases=20,
                              persisted_repeat=1) if smoke
                else vs_spiff.run())
        results["vs_spiff"] = {"status": "ok", "rows": rows}
    except ImportError as e:  # SpiffWorkflow comes with `pip install .[bench]`
        results["vs_spiff"] = {"status": "error",
                               "error": f"{e} (install it: pip install -e '.[bench]')"}
    results["vs_spiff"]["wall_s"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    ok, details = guard.check()
    results["guard"] = {"status": "ok" if ok else "regressed", "rows": [details],
                        "wall_s": round(time.perf_counter() - t0, 1)}

    for name, files in LATER.items():
        found = next((BENCH / f for f in files if (BENCH / f).is_file()), None)
        if found is None:
            results[name] = {"status": "pending",
                             "note": f"not written yet (looked for {', '.join(files)})"}
        else:
            results[name] = run_script(found, smoke)
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "smoke": smoke,
            "machine": machine(), "results": results}


def _fmt_row(row: dict[str, Any]) -> str:
    skip = {"bench", "python", "spiffworkflow"}
    parts = []
    for k, v in row.items():
        if k in skip or isinstance(v, dict | list):
            continue
        parts.append(f"{k}={v:,}" if isinstance(v, int) and not isinstance(v, bool)
                     else f"{k}={v}")
    return " ".join(parts)


def table(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [f"{report['date']}  {m['cpu']}, {m['cores']} cores, Python {m['python']}"
             + ("  (smoke)" if report["smoke"] else ""), ""]
    head = f"{'benchmark':<10} {'status':<9} {'wall s':>6}  numbers"
    lines += [head, "-" * 100]
    for name, res in report["results"].items():
        wall = f"{res['wall_s']:>6}" if "wall_s" in res else f"{'':>6}"
        status = res["status"]
        if name == "vs_spiff" and status == "ok":
            lines.append(f"{name:<10} {status:<9} {wall}  see table below")
            continue
        if status == "pending":
            lines.append(f"{name:<10} {status:<9} {wall}  {res['note']}")
        elif status == "error":
            lines.append(f"{name:<10} {status:<9} {wall}  {res['error']}")
        else:
            for i, row in enumerate(res["rows"]):
                lead = f"{name:<10} {status:<9} {wall}" if i == 0 else " " * 27
                lines.append(f"{lead}  {_fmt_row(row)}")
    vs = report["results"].get("vs_spiff", {})
    if vs.get("status") == "ok":
        lines += ["", vs_spiff.table(vs["rows"])]
    return "\n".join(lines)


def _ratio(rows: list[dict[str, Any]], mode: str, variant: str, key: str) -> str:
    for r in rows:
        if r["mode"] == mode and r["variant"] == variant:
            v = r[key]
            return "pending" if v is None else (f"{v}x" if key.endswith("per_s") else f"{v:.3f}")
    return "-"


def log_row(report: dict[str, Any]) -> str:
    m, res = report["machine"], report["results"]
    hp = res["hot_path"]["rows"][0]
    vs = res["vs_spiff"].get("rows", []) if res["vs_spiff"]["status"] == "ok" else []
    mem = " / ".join(
        f"{_ratio(vs, 'memory-seq', v, 'ratio_completions_per_s')} seq, "
        f"{_ratio(vs, 'memory-inter', v, 'ratio_completions_per_s')} inter"
        for v in ("and", "or")) if vs else res["vs_spiff"]["status"]
    pers = " / ".join(
        f"{_ratio(vs, 'persisted', v, 'ratio_completions_per_s')} serial, "
        f"{_ratio(vs, 'persisted-concurrent', v, 'ratio_completions_per_s')} concurrent"
        for v in ("and", "or")) if vs else "-"
    size = " / ".join(_ratio(vs, "memory-inter", v, "ratio_bytes_per_open_case")
                    for v in ("and", "or")) if vs else "-"
    g = res["guard"]["rows"][0]
    pending = ", ".join(k for k, v in res.items() if v["status"] == "pending") or "none"
    cells = [report["date"][:10] + (" (smoke)" if report["smoke"] else ""), m["cpu"],
             str(m["cores"]), m["python"], f"{hp['completions_per_s']:,}",
             f"{hp['bytes_per_open_case']:,}", mem, pers, size,
             f"{g['ratio']} (rec. {g['recorded_ratio']})", pending]
    return "| " + " | ".join(c.replace("|", "/") for c in cells) + " |"


def append_log(report: dict[str, Any], path: pathlib.Path = README) -> None:
    """Append the run's row under LOG_HEADING; never rewrites what is there."""
    text = path.read_text() if path.exists() else ""
    chunk = ""
    if LOG_HEADING not in text:
        chunk += ("" if not text or text.endswith("\n\n") else
                  "\n" if text.endswith("\n") else "\n\n")
        chunk += (f"{LOG_HEADING}\n\nAppended by `python bench/run_all.py`. Ratios are "
                  "caseloop/SpiffWorkflow (speed: completions/s; size: bytes per open "
                  "case, and/or variants).\n\n"
                  "| " + " | ".join(LOG_COLUMNS) + " |\n"
                  "|" + "---|" * len(LOG_COLUMNS) + "\n")
    elif not text.endswith("\n"):
        chunk += "\n"
    with path.open("a") as fh:
        fh.write(chunk + log_row(report) + "\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks that all run")
    ap.add_argument("--no-log", action="store_true",
                    help="do not append to bench/README.md (results.json is still written)")
    a = ap.parse_args(argv)
    report = run_all(a.smoke)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    if not a.no_log:
        append_log(report)
    print(f"\nwrote {RESULTS.relative_to(BENCH.parent)}"
          + ("" if a.no_log else f", appended a row to {README.relative_to(BENCH.parent)}"))
    if any(r["status"] == "error" for r in report["results"].values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
