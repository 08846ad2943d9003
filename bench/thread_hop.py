"""What a hop into a worker thread and back costs here, next to a small SQLite commit.

The store writes a small round on the event loop and a large one in its writer thread
(adapters/sqlite_store.py, `_inline`); this is the measurement behind that line:

* `hop`: `anyio.to_thread.run_sync` of a no-op with a one-token limiter, awaited;
* `commit_inline`: BEGIN IMMEDIATE, one 200-byte INSERT, COMMIT (WAL, synchronous
  NORMAL) on the calling thread;
* `commit_in_thread`: the same transaction through `to_thread.run_sync`.

    python bench/thread_hop.py [--n 2000]

One JSON line: microseconds per operation, wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import tempfile
import time

import anyio


async def measure(n: int) -> dict[str, float]:
    limiter = anyio.CapacityLimiter(1)
    await anyio.to_thread.run_sync(lambda: None, limiter=limiter)  # start the worker
    t = time.perf_counter()
    for _ in range(n):
        await anyio.to_thread.run_sync(lambda: None, limiter=limiter)
    hop = (time.perf_counter() - t) / n

    with tempfile.TemporaryDirectory(prefix="caseloop-hop-") as tmp:
        db = sqlite3.connect(os.path.join(tmp, "hop.db"), isolation_level=None,
                             check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE e (case_id TEXT, seq INTEGER, body BLOB,"
                   " PRIMARY KEY (case_id, seq))")
        body = b"x" * 200

        def commit(i: int) -> None:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO e VALUES (?, ?, ?)", (f"case-{i}", i, body))
            db.execute("COMMIT")

        t = time.perf_counter()
        for i in range(n):
            commit(i)
        inline = (time.perf_counter() - t) / n
        t = time.perf_counter()
        for i in range(n, 2 * n):
            await anyio.to_thread.run_sync(commit, i, limiter=limiter)
        threaded = (time.perf_counter() - t) / n
        db.close()
    return {"hop_us": round(hop * 1e6, 1), "commit_inline_us": round(inline * 1e6, 1),
            "commit_in_thread_us": round(threaded * 1e6, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    a = ap.parse_args()
    print(json.dumps({"bench": "thread_hop", "n": a.n, **anyio.run(measure, a.n)}))


if __name__ == "__main__":
    main()
