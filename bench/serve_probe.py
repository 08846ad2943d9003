"""One request against a running `caseloop serve`, and how the server fares meanwhile.

Streams GET PATH to its end (bytes, seconds to the first byte and to the end) while a
second client asks GET /health every 0.25 s (median and worst answer: is the event
loop free to answer others?) and, given the server's pid, samples its resident memory
every 0.1 s (before, peak, after). For the questions "does a year's export stall the
server?" and "is it streamed or built whole?" (bench/README.md, "A year of history").

    python bench/serve_probe.py --port 18400 --pid PID \\
        '/api/v1/workflows/lead-qualification/history/export?format=csv'

One JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import threading
import time

# bench/http.py would shadow the stdlib `http` package that httpx needs.
ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != str(ROOT / "bench")]

import httpx  # noqa: E402


def rss_mb(pid: int | None) -> int | None:
    if pid is None:
        return None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("path")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--pid", type=int, help="the server's pid, for its memory")
    args = ap.parse_args()
    base = f"http://127.0.0.1:{args.port}"
    done = threading.Event()
    peak = [rss_mb(args.pid) or 0]
    probes: list[float] = []

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb(args.pid) or 0)
            time.sleep(0.1)

    def probe() -> None:
        with httpx.Client(timeout=300) as c:
            while not done.is_set():
                t = time.perf_counter()
                c.get(base + "/health")
                probes.append(time.perf_counter() - t)
                time.sleep(0.25)

    before = rss_mb(args.pid)
    threads = [threading.Thread(target=sample), threading.Thread(target=probe)]
    for th in threads:
        th.start()
    t0 = time.perf_counter()
    first, size = None, 0
    try:
        with httpx.Client(timeout=600) as c, c.stream("GET", base + args.path) as r:
            for chunk in r.iter_bytes():
                first = first if first is not None else time.perf_counter() - t0
                size += len(chunk)
    finally:
        total = time.perf_counter() - t0
        done.set()
        for th in threads:
            th.join()
    probes.sort()
    print(json.dumps({
        "path": args.path, "status": r.status_code, "mb": round(size / 1e6, 1),
        "first_byte_s": round(first or total, 2), "total_s": round(total, 2),
        "health_n": len(probes),
        "health_median_s": round(probes[len(probes) // 2], 3) if probes else None,
        "health_max_s": round(probes[-1], 3) if probes else None,
        "rss_before_mb": before, "rss_peak_mb": peak[0], "rss_after_mb": rss_mb(args.pid),
        "load_avg": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
