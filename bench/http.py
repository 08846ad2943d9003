"""HTTP throughput: complete-task requests/s of `caseloop serve` against its bare JSON route.

Starts `caseloop serve --bench-route` (one uvicorn process, one event loop) on a free
loopback port with a fresh SQLite file in a temp dir, waits for `GET /health/ready`,
registers a one-task workflow (`bench-approval`: start → Approve → end), and creates
all the cases it will need (untimed, 64 requests in flight). Then it alternates timed
runs, bare, complete, bare, complete, … (`--repeat` of each), each run in a separate
load process (bench/http_load.py: raw asyncio HTTP/1.1 keep-alive client, 64
connections, one request in flight per connection), so that the client does not share
an interpreter with the server:

* bare:     `POST /bench/bare` -- a trivial Starlette endpoint that reads the body and
            returns `{"ok": true}`: the floor of uvicorn + Starlette on this machine.
* complete: `POST /api/v1/cases/b_<i>/tasks/Approve/complete` {"result": "approved"},
            each request on a fresh case (a completed task answers 409); 200 with the
            case view, after the store has committed (and so the case is done).

Each run starts with untimed warm-up requests of its route. Reported per run:
requests/s, p50/p90/p99 latency, server CPU µs per request (from /proc, Linux only),
the client's own CPU share (`client_busy` near 1.0 would mean the client is the
bottleneck); per route the median; and `ratio` = median complete/s ÷ median bare/s.
Target (issue): ratio ≥ 0.5. Any non-2xx answer or transport error fails the run.

    python bench/http.py [--requests 20000] [--concurrency 64] [--repeat 3] [--json]
                         [--smoke] [--server-cmd "caseloop"] [--server-args "..."]

`serve` runs with its defaults (uvicorn access log on, a cost on both routes that lifts
the ratio); `--server-args --no-access-log` measures without it. Progress goes to
stderr; stdout gets the result table, or with `--json` one JSON object. Machines are
shared: compare the ratio within one invocation.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

BENCH = pathlib.Path(__file__).resolve().parent
ROOT = BENCH.parent
# `python bench/http.py` puts bench/ first on sys.path, where this very file would
# shadow the stdlib `http` package for anything imported later.
sys.path[:] = [p for p in sys.path if pathlib.Path(p or ".").resolve() != BENCH]

LOAD = BENCH / "http_load.py"
HOST = "127.0.0.1"
WORKFLOW = "bench-approval"
SPEC: dict[str, Any] = {
    "id": WORKFLOW,
    "name": "bench",
    "tasks": [{"id": "Approve", "role": "sales_manager"}],
    "flows": [{"from": "start", "to": "Approve"}, {"from": "Approve", "to": "end"}],
}
TARGET_RATIO = 0.5


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    out: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(),
                           "platform": platform.platform(),
                           "python": sys.version.split()[0],
                           "implementation": platform.python_implementation()}
    with contextlib.suppress(OSError, AttributeError):
        out["loadavg_1m"] = round(os.getloadavg()[0], 2)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def request(port: int, method: str, path: str, body: Any = None,
            timeout: float = 10.0) -> tuple[int, bytes]:
    """One blocking HTTP/1.1 request on its own connection (setup and probes only)."""
    data = b"" if body is None else json.dumps(body).encode()
    head = (f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            "Connection: close\r\n\r\n").encode()
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(head + data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.startswith(b"HTTP/1."):
        raise ConnectionError(f"not an HTTP response: {raw[:80]!r}")
    head_b, _, rest = raw.partition(b"\r\n\r\n")
    return int(head_b[9:12]), rest


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (all its threads), Linux /proc only."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """`caseloop serve --bench-route` as a subprocess; stderr to a file in tmp."""

    def __init__(self, cmd: list[str], tmp: pathlib.Path, extra: Sequence[str] = ()) -> None:
        self.port = free_port()
        self.log = tmp / "server.log"
        self.argv = [*cmd, "serve", "--host", HOST, "--port", str(self.port),
                     "--db", str(tmp / "bench.db"), "--bench-route", *extra]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        with self.log.open("wb") as fh:
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, stdout=fh, stderr=fh,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.fail(f"server exited with {self.proc.returncode} before ready")
            with contextlib.suppress(OSError):
                if request(self.port, "GET", "/health/ready", timeout=2.0)[0] == 200:
                    return
            time.sleep(0.05)
        self.fail(f"server not ready after {timeout} s")

    def tail(self, n: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        return ""

    def fail(self, msg: str) -> None:
        raise SystemExit(f"http bench: {msg}\n  command: {shlex.join(self.argv)}\n"
                         f"  server log (tail):\n{self.tail()}")

    def cpu(self) -> float | None:
        return None if self.proc is None else cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def load(server: Server, route: str, first: int, count: int, warmup: int,
         concurrency: int) -> dict[str, Any]:
    """One run of bench/http_load.py in its own process; fails on any non-2xx."""
    cmd = [sys.executable, str(LOAD), "--host", HOST, "--port", str(server.port),
           "--route", route, "--first", str(first), "--count", str(count),
           "--warmup", str(warmup), "--concurrency", str(concurrency)]
    c0 = server.cpu()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    c1 = server.cpu()
    if p.returncode != 0:
        server.fail(f"load process failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
    row: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
    if row["non_2xx"] or row["transport_errors"] or row["warmup_non_2xx"]:
        server.fail(f"{route}: {row['non_2xx']} non-2xx, {row['warmup_non_2xx']} in warm-up, "
                    f"{row['transport_errors']} transport errors of {count} requests; "
                    f"statuses {row['statuses']}; samples {json.dumps(row['samples'])}")
    del row["samples"]
    if c0 is not None and c1 is not None:  # includes the warm-up: a cost, not a rate
        row["server_cpu_us_per_request"] = round((c1 - c0) / (count + warmup) * 1e6, 1)
    return row


def setup(server: Server, n_cases: int, concurrency: int) -> dict[str, Any]:
    status, body = request(server.port, "POST", "/api/v1/workflows", SPEC)
    if status not in (200, 201):
        server.fail(f"registering {WORKFLOW}: {status} {body[:300]!r}")
    status, body = request(server.port, "POST", "/bench/bare", {"result": "approved"})
    if status != 200:
        server.fail(f"/bench/bare: {status} {body[:300]!r} (is --bench-route mounted?)")
    return load(server, "create", 0, n_cases, 0, concurrency)


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(r[key] for r in rows), 3)


def run(requests: int, concurrency: int, repeat: int, warmup: int,
        server_cmd: list[str], server_args: list[str] | None = None,
        progress: bool = True) -> dict[str, Any]:
    def say(msg: str) -> None:
        if progress:
            print(msg, file=sys.stderr, flush=True)

    per_run = warmup + requests
    with tempfile.TemporaryDirectory(prefix="caseloop-http-") as tmp:
        server = Server(server_cmd, pathlib.Path(tmp), server_args or [])
        try:
            t = time.perf_counter()
            server.start()
            say(f"server ready on port {server.port} in {time.perf_counter() - t:.2f} s")
            created = setup(server, repeat * per_run, concurrency)
            say(f"created {created['requests']:,} cases: {created['requests_per_s']:,.0f}/s")
            runs: list[dict[str, Any]] = []
            for i in range(repeat):
                for route in ("bare", "complete"):
                    row = load(server, route, i * per_run, requests, warmup, concurrency)
                    row["round"] = i
                    runs.append(row)
                    say(f"  {route:<8} round {i}: {row['requests_per_s']:>9,.0f} req/s  "
                        f"p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms  "
                        f"server {row.get('server_cpu_us_per_request', '?')} CPU-us/req  "
                        f"client busy {row['client_busy']:.2f}")
        finally:
            server.stop()
    routes: dict[str, Any] = {}
    for route in ("bare", "complete"):
        rs = [r for r in runs if r["route"] == route]
        routes[route] = {k: _median(rs, k) for k in
                         ("requests_per_s", "p50_ms", "p99_ms", "client_busy")}
        if all("server_cpu_us_per_request" in r for r in rs):
            routes[route]["server_cpu_us_per_request"] = _median(
                rs, "server_cpu_us_per_request")
    pairs = [c["requests_per_s"] / b["requests_per_s"]
             for b, c in zip(runs[::2], runs[1::2], strict=True)]
    ratio = routes["complete"]["requests_per_s"] / routes["bare"]["requests_per_s"]
    return {
        "bench": "http",
        "requests": requests,
        "warmup": warmup,
        "concurrency": concurrency,
        "repeat": repeat,
        "bare_requests_per_s": routes["bare"]["requests_per_s"],
        "complete_requests_per_s": routes["complete"]["requests_per_s"],
        "ratio": round(ratio, 3),
        "ratio_per_round": [round(x, 3) for x in pairs],
        "target_ratio": TARGET_RATIO,
        "met": ratio >= TARGET_RATIO,
        "routes": routes,
        "create_requests_per_s": created["requests_per_s"],
        "runs": runs,
        "server_cmd": shlex.join(server.argv),
        "machine": machine(),
    }


def table(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [f"caseloop HTTP: {m['cpu']}, {m['cores']} cores, {m['platform']}, "
             f"Python {m['python']}, load avg {m.get('loadavg_1m', '?')}",
             f"{res['requests']:,} timed requests per run (+{res['warmup']:,} warm-up), "
             f"{res['concurrency']} keep-alive connections, separate load process", "",
             f"{'route':<9} {'round':>5} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} "
             f"{'p99 ms':>8} {'srv CPU-us/req':>15} {'client busy':>12}", "-" * 82]
    for r in res["runs"]:
        lines.append(f"{r['route']:<9} {r['round']:>5} {r['requests_per_s']:>9,.0f} "
                     f"{r['p50_ms']:>8.2f} {r['p90_ms']:>8.2f} {r['p99_ms']:>8.2f} "
                     f"{r.get('server_cpu_us_per_request', '-'):>15} "
                     f"{r['client_busy']:>12.2f}")
    verdict = "met" if res["met"] else "MISSED"
    lines += ["", f"median bare {res['bare_requests_per_s']:,.0f} req/s, complete "
              f"{res['complete_requests_per_s']:,.0f} req/s: ratio {res['ratio']} "
              f"(per round {res['ratio_per_round']}); target >= {res['target_ratio']} "
              f"{verdict}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=20000, help="timed requests per run")
    ap.add_argument("--concurrency", type=int, default=64, help="keep-alive connections")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each route, alternating")
    ap.add_argument("--warmup", type=int, default=-1,
                    help="untimed requests before each run (default: requests/10, <= 1000)")
    ap.add_argument("--server-cmd", default=f"{shlex.quote(sys.executable)} -m adapters.cli",
                    help="command that takes `serve ...` (default: this Python, "
                         "-m adapters.cli, from the checkout); e.g. 'caseloop'")
    ap.add_argument("--server-args", default="--no-access-log",
                    help="`serve` options (default: no access log, the stricter test: "
                         "logging adds the same cost to both routes and lifts the ratio)")
    ap.add_argument("--smoke", action="store_true", help="tiny quick run: checks it works")
    ap.add_argument("--json", action="store_true", help="print one JSON object of results")
    a = ap.parse_args(argv)
    if a.smoke:
        a.requests, a.repeat = 300, 1
    warmup = a.warmup if a.warmup >= 0 else min(1000, a.requests // 10)
    res = run(a.requests, a.concurrency, a.repeat, warmup, shlex.split(a.server_cmd),
              shlex.split(a.server_args))
    res["smoke"] = a.smoke
    print(json.dumps(res) if a.json else table(res), flush=True)


if __name__ == "__main__":
    main()
