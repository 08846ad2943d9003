"""`caseloop simulate`'s time and peak memory, and a digest of the history it wrote.

Runs `simulate_into` (what the CLI runs, without the progress bar) from the code in
--code (default: this checkout; give another checkout to compare two commits on the
same machine at the same time) into a fresh database, then prints seconds, the
process's peak RSS and the sha256 of every event body in log order: two runs with the
same arguments must print the same digest.

    python bench/simulate_memory.py --deals 8000 --days 60 --db /tmp/sim8k.db

One JSON line on stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import resource
import sqlite3
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
START = 1779753600.0  # 2026-05-26 00:00 UTC: the 180-day store of bench/README.md


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deals", type=int, default=8000)
    ap.add_argument("--days", type=float, default=60)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--db", help="a database file that does not exist yet (required but "
                    "with --smoke)")
    ap.add_argument("--code", default=str(ROOT), help="the checkout whose code to run")
    ap.add_argument("--smoke", action="store_true", help="60 deals over 3 days, a temp db")
    args = ap.parse_args()
    if args.smoke:
        args.deals, args.days = 60, 3.0
        args.db = args.db or os.path.join(tempfile.mkdtemp(prefix="caseloop-sim-"), "sim.db")
    if args.db is None:
        ap.error("--db is required")
    if pathlib.Path(args.db).exists():
        sys.exit(f"{args.db} exists: give a new file")
    sys.path[:] = [args.code] + [p for p in sys.path
                                 if os.path.abspath(p or ".") != str(ROOT / "bench")]
    import anyio

    from adapters.simulation import simulate_into

    t = time.perf_counter()
    summary = anyio.run(lambda: simulate_into(
        args.db, deals=args.deals, days=args.days, pattern="seasonal", seed=args.seed,
        start=START, specs=str(ROOT / "specs")))
    seconds = time.perf_counter() - t
    digest = hashlib.sha256()
    with sqlite3.connect(args.db) as conn:
        for (body,) in conn.execute("SELECT body FROM events ORDER BY pos"):
            digest.update(body)
    print(json.dumps({
        "code": args.code, "deals": args.deals, "days": args.days, "events": summary.events,
        "seconds": round(seconds, 1),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "history_sha256": digest.hexdigest()[:16], "load_avg": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
