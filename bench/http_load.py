"""Load process for bench/http.py: a minimal asyncio HTTP/1.1 keep-alive client.

Run by bench/http.py in a process of its own, so that the client and the server do not
share one interpreter's time slices. C connections (opened before the clock starts) each
send one request at a time and take the next from one shared iterator; responses are read
by Content-Length (chunked and close-delimited bodies are handled too, but slower). The
requests are pre-built bytes, so the client spends a few µs per request on its side.

Routes (`--route`), for case ids `b_<first>` … `b_<first + warmup + count - 1>`:

* `bare`      POST /bench/bare                                   (ids unused)
* `create`    POST /api/v1/workflows/<workflow>/cases            {"case_id": id, "data": {}}
* `complete`  POST /api/v1/cases/<id>/tasks/<task>/complete      {"result": "approved"}

The first `--warmup` requests are sent and checked but not timed. Prints one JSON object
on stdout: counts, seconds, requests/s, latency percentiles, status counts, the client's
own CPU time, and a few non-2xx samples.

    python bench/http_load.py --port 8000 --route bare --count 20000 [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

# `python bench/http_load.py` puts bench/ first on sys.path, where bench/http.py would
# shadow the stdlib `http` package for anything imported later.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

WORKFLOW = "bench-approval"
TASK = "Approve"


def case_id(i: int) -> str:
    return f"b_{i}"


def target(route: str, i: int, workflow: str = WORKFLOW, task: str = TASK) -> tuple[str, bytes]:
    """(path, JSON body) of request i of a route."""
    if route == "bare":
        return "/bench/bare", b'{"result": "approved"}'
    if route == "create":
        body = json.dumps({"case_id": case_id(i), "data": {}}).encode()
        return f"/api/v1/workflows/{workflow}/cases", body
    if route == "complete":
        return f"/api/v1/cases/{case_id(i)}/tasks/{task}/complete", b'{"result": "approved"}'
    raise ValueError(f"unknown route {route!r}")


def build(host: str, port: int, path: str, body: bytes, method: str = "POST") -> bytes:
    head = (f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: keep-alive\r\n\r\n")
    return head.encode("latin-1") + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """-> (status, body, server keeps the connection open)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    status = int(lines[0][9:12])
    length = -1
    chunked = False
    keep = not lines[0].startswith(b"HTTP/1.0")
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            v = value.strip().lower()
            keep = v == b"keep-alive" or (keep and v != b"close")
    if chunked:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                break
            parts.append(await reader.readexactly(size + 2))
        body = b"".join(p[:-2] for p in parts)
    elif length >= 0:
        body = await reader.readexactly(length) if length else b""
    elif status in (204, 304) or 100 <= status < 200:
        body = b""
    else:  # delimited by close
        body, keep = await reader.read(), False
    return status, body, keep


class Load:
    """Shared state of one run: the request iterator and what came back."""

    def __init__(self, host: str, port: int, requests: Iterator[bytes]) -> None:
        self.host, self.port = host, port
        self.requests = requests
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.samples: list[dict[str, Any]] = []
        self.transport_errors = 0

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        # asyncio sets TCP_NODELAY on TCP transports.
        return await asyncio.open_connection(self.host, self.port)

    async def worker(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        reader, writer = conn
        pc = time.perf_counter
        lat, statuses = self.latencies, self.statuses
        for req in self.requests:  # shared: the next free connection takes the next one
            t = pc()
            try:
                writer.write(req)
                status, body, keep = await read_response(reader)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    ValueError) as e:
                self.transport_errors += 1
                if len(self.samples) < 5:
                    self.samples.append({"error": repr(e), "request": req[:120].decode()})
                writer.close()
                reader, writer = await self.connect()
                continue
            lat.append(pc() - t)
            statuses[status] += 1
            if not 200 <= status < 300 and len(self.samples) < 5:
                self.samples.append({"status": status,
                                     "body": body[:300].decode(errors="replace"),
                                     "request": req.split(b"\r\n", 1)[0].decode()})
            if not keep:
                writer.close()
                reader, writer = await self.connect()
        writer.close()

    async def run(self, conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
                  ) -> None:
        await asyncio.gather(*(self.worker(c) for c in conns))


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def run(host: str, port: int, route: str, first: int, count: int, warmup: int,
              concurrency: int) -> dict[str, Any]:
    def reqs(lo: int, hi: int) -> list[bytes]:
        return [build(host, port, *target(route, i)) for i in range(lo, hi)]

    warm = Load(host, port, iter(reqs(first, first + warmup)))
    timed_reqs = reqs(first + warmup, first + warmup + count)
    n_conn = max(1, min(concurrency, count))
    conns = await asyncio.gather(*(warm.connect() for _ in range(n_conn)))
    if warmup:
        await warm.run(conns)
        conns = await asyncio.gather(*(warm.connect() for _ in range(n_conn)))
    load = Load(host, port, iter(timed_reqs))
    c0 = time.process_time()
    t0 = time.perf_counter()
    await load.run(conns)
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    lat = sorted(load.latencies)
    ok = sum(n for s, n in load.statuses.items() if 200 <= s < 300)
    warm_ok = sum(n for s, n in warm.statuses.items() if 200 <= s < 300)
    return {
        "route": route,
        "requests": count,
        "concurrency": n_conn,
        "ok": ok,
        "non_2xx": count - ok,
        "transport_errors": load.transport_errors,
        "warmup": warmup,
        "warmup_non_2xx": warmup - warm_ok,
        "statuses": {str(s): n for s, n in sorted(load.statuses.items())},
        "seconds": round(dt, 4),
        "requests_per_s": round(count / dt, 1),
        "p50_ms": round(_pct(lat, 0.50) * 1e3, 3),
        "p90_ms": round(_pct(lat, 0.90) * 1e3, 3),
        "p99_ms": round(_pct(lat, 0.99) * 1e3, 3),
        "max_ms": round(lat[-1] * 1e3, 3) if lat else 0.0,
        "client_cpu_s": round(cpu, 4),
        "client_cpu_us_per_request": round(cpu / count * 1e6, 2),
        "client_busy": round(cpu / dt, 3),  # near 1.0: the client may be the bottleneck
        "loop": type(asyncio.get_running_loop()).__module__,
        "samples": warm.samples + load.samples,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--route", choices=("bare", "create", "complete"), required=True)
    ap.add_argument("--first", type=int, default=0, help="first case number (b_<first>)")
    ap.add_argument("--count", type=int, required=True, help="timed requests")
    ap.add_argument("--warmup", type=int, default=0, help="untimed requests before")
    ap.add_argument("--concurrency", type=int, default=64, help="keep-alive connections")
    a = ap.parse_args(argv)
    try:
        import uvloop  # type: ignore[import-not-found]  # only if installed
    except ImportError:
        pass
    else:
        uvloop.install()
    row = asyncio.run(run(a.host, a.port, a.route, a.first, a.count, a.warmup,
                          a.concurrency))
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
