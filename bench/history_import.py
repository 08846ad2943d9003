"""History import: how fast a CSV event log becomes imported work items (issue 6: 100,000
rows "in seconds").

A generated log of ROWS rows: cases of five approval tasks, each item enabled, started
and completed by one of a few people, with two case attributes (ACV, segment) on the
case's first row, timestamps with offsets. Timed stages, each on the same bytes:

- parse: `parse_history` (decode, csv, timestamps, pairing into items) in process;
- write: `write_history` into a fresh SQLite store (one transaction, executemany);
- http: `POST /api/v1/workflows/deal-approval-gate/history/import` end to end against
  a real `caseloop serve` on a temp db (upload, parse on a worker thread, write, the
  Monitor absorbing the items), then `GET .../history/export` as CSV and as XES.

    python bench/history_import.py [--rows 100000] [--no-http] [--smoke]

One JSON line on stdout; a summary on stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

# `python bench/history_import.py` puts bench/ first on sys.path, where bench/http.py
# would shadow the stdlib `http` package (httpx needs it).
ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path
                             if os.path.abspath(p or ".") != str(ROOT / "bench")]

import anyio  # noqa: E402
import httpx  # noqa: E402

from adapters.history import parse_history, write_history  # noqa: E402
from adapters.sqlite_store import SQLiteStore  # noqa: E402

TASKS = ("SendToSalesManager", "SendToLegal", "SendToFinance", "ExecutiveCheck",
         "AllApprovalsComplete")
PEOPLE = ("marcus.thompson@acme.com", "priya.patel@acme.com", "james.rodriguez@acme.com",
          "lisa.wong@acme.com")
WORKFLOW = "deal-approval-gate"


def generate(rows: int) -> bytes:
    out = io.StringIO()
    out.write("case_id,task,event,timestamp,resource,deal_acv,segment\n")
    zone = dt.timezone(dt.timedelta(hours=-5))
    t = dt.datetime(2025, 1, 6, 9, 0, tzinfo=zone)
    n = case = 0
    while n < rows:
        first = True
        for k, task in enumerate(TASKS):
            who = PEOPLE[(case + k) % len(PEOPLE)]
            for event, minutes in (("enabled", 0), ("started", 37), ("completed", 95)):
                if n == rows:
                    break
                attrs = f"{20000 + 1000 * (case % 500)},{('smb', 'mid', 'ent')[case % 3]}" \
                    if first else ","
                first = False
                at = (t + dt.timedelta(minutes=minutes + 11 * k)).isoformat()
                out.write(f"D-{case},{task},{event},{at},{who},{attrs}\n")
                n += 1
        case += 1
        t += dt.timedelta(minutes=7)
    return out.getvalue().encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_stage(data: bytes, workdir: pathlib.Path) -> dict[str, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (workdir / "serve.stderr").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "adapters.cli", "serve", "--port", str(port), "--db",
         str(workdir / "http.db"), "--specs", str(ROOT / "specs"), "--no-access-log",
         "--log-level", "warning"], cwd=ROOT, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                log.flush()
                raise SystemExit("server not ready:\n"
                                 + (workdir / "serve.stderr").read_text(errors="replace"))
            time.sleep(0.1)
        base = f"{url}/api/v1/workflows/{WORKFLOW}/history"
        t0 = time.perf_counter()
        r = httpx.post(base + "/import", content=data, headers={"Content-Type": "text/csv"},
                       timeout=300)
        t1 = time.perf_counter()
        assert r.status_code == 201, r.text[:500]
        out = {"http_import_s": t1 - t0}
        for fmt in ("csv", "xes"):
            t0 = time.perf_counter()
            r = httpx.get(base + "/export", params={"format": fmt}, timeout=300)
            out[f"http_export_{fmt}_s"] = time.perf_counter() - t0
            out[f"http_export_{fmt}_mb"] = len(r.content) / 1e6
            assert r.status_code == 200, r.text[:500]
        return out
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--no-http", action="store_true", help="skip the end-to-end stage")
    ap.add_argument("--smoke", action="store_true", help="1,000 rows, a quick check")
    args = ap.parse_args()
    rows = 1000 if args.smoke else args.rows
    data = generate(rows)

    t0 = time.perf_counter()
    history = parse_history(data)
    parse_s = time.perf_counter() - t0

    async def write(db: str) -> float:
        async with SQLiteStore(db) as store:
            t0 = time.perf_counter()
            await write_history(store, WORKFLOW, history)
            return time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        workdir = pathlib.Path(tmp)
        write_s = anyio.run(write, str(workdir / "write.db"))
        result = {"bench": "history_import", "rows": history.rows, "items": len(history.items),
                  "cases": history.cases, "mb": round(len(data) / 1e6, 2),
                  "parse_s": parse_s, "write_s": write_s,
                  "rows_per_s": history.rows / (parse_s + write_s),
                  "cpus": os.cpu_count()}
        if not args.no_http:
            result.update(http_stage(data, workdir))
            result["http_rows_per_s"] = history.rows / result["http_import_s"]
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                      for k, v in result.items()}))
    summary = (f"{history.rows} rows ({result['mb']} MB) -> {len(history.items)} items: "
               f"parse {parse_s:.2f} s + write {write_s:.2f} s = "
               f"{result['rows_per_s']:,.0f} rows/s")
    if "http_import_s" in result:
        summary += (f"; HTTP import {result['http_import_s']:.2f} s "
                    f"({result['http_rows_per_s']:,.0f} rows/s), export csv "
                    f"{result['http_export_csv_s']:.2f} s, xes {result['http_export_xes_s']:.2f} s")
    print(summary, file=sys.stderr)


if __name__ == "__main__":
    main()
