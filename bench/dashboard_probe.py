"""Every dashboard page against a running `caseloop serve`, in Debian's Chromium.

For each page (overview, SLOs, bottlenecks, approvers, recommendations, today, cases,
and a case's timeline with --case): seconds from navigation until the page has
rendered (`#page[data-rendered]` moved on and is no longer aria-busy), table rows
drawn, console and page errors, the server's RSS afterwards (--pid), and each API
call the page made: status, bytes, milliseconds. Screenshots into --shots. For "what
does a year of history do to the dashboard" (bench/README.md, "A year of history").

    python bench/dashboard_probe.py --port 18400 --pid PID --case sim-...-deal-00504

Plain text on stdout. Needs the playwright package (dev extra) and /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from typing import Any

from playwright.sync_api import sync_playwright

PAGES = ["overview", "slo", "bottlenecks", "approvers", "recommendations", "today", "cases"]
RENDERED = "Number(document.getElementById('page').dataset.rendered || 0)"  # an expression


def rss_mb(pid: int | None) -> int | None:
    if pid is None:
        return None
    with open(f"/proc/{pid}/status") as f:
        return next((int(line.split()[1]) // 1024 for line in f
                     if line.startswith("VmRSS:")), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--pid", type=int)
    ap.add_argument("--case", help="a case id whose timeline page to open too")
    ap.add_argument("--shots", default="/tmp/caseloop-dashboard-shots")
    args = ap.parse_args()
    os.makedirs(args.shots, exist_ok=True)
    pages = PAGES + ([f"case/{args.case}"] if args.case else [])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        errors: list[str] = []
        calls: list[tuple[str, int, int, float]] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))

        def answered(r: Any) -> None:
            if "/api/v1" in r.url:
                try:
                    size = len(r.body())
                except Exception:  # a stream (events/stream) has no body to take
                    size = -1
                calls.append((r.url.split("/api/v1", 1)[1][:90], r.status, size,
                              r.request.timing.get("responseEnd", 0)))

        page.on("response", answered)
        page.goto(f"http://127.0.0.1:{args.port}/#/today", wait_until="domcontentloaded")
        page.wait_for_function(f"() => {RENDERED} > 0", timeout=120_000)
        print(f"server RSS at start: {rss_mb(args.pid)} MB")
        for name in pages:
            calls.clear()
            errors.clear()
            before = page.evaluate(f"() => {RENDERED}")
            t = time.perf_counter()
            page.evaluate(f"location.hash = '#/{name}'")
            try:
                page.wait_for_function(
                    f"() => {RENDERED} > {before} && "
                    "!document.getElementById('page').hasAttribute('aria-busy')",
                    timeout=120_000)
                seconds = time.perf_counter() - t
            except Exception:
                seconds = math.nan
            page.screenshot(path=os.path.join(args.shots, name.replace("/", "_") + ".png"))
            rows = page.evaluate("() => document.querySelectorAll('#page tr').length")
            print(f"{name:20s} {seconds:6.2f} s  rows {rows:4d}  server RSS "
                  f"{rss_mb(args.pid)} MB  errors {errors[:3]}")
            for path, status, size, ms in calls:
                print(f"    {status} {size / 1e3:8.1f} KB {ms:7.0f} ms  {path}")
        browser.close()


if __name__ == "__main__":
    main()
