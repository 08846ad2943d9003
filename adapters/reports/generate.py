"""`caseloop report`: one HTML page per analyzer, an index, the assets, manifest.json.

Theory of operation
-------------------
1. Read the configuration (--specs: roles, SLOs, costs) and the event log's stamp --
   a count and the last row, not the log itself.
2. Each analyzer's stamp is that log stamp plus the digests of the config files it
   depends on, its options and the renderer's digest. Pages whose stamp equals the
   manifest's, and whose file is still there, are up to date.
3. Only if some page is stale is the history read (once, for all stale pages, cut at
   the stamp) and only the stale pages are computed and written -- each atomically.
   The index is rewritten when a page was; assets when they are missing or differ;
   the manifest last, so an interrupted run leaves a manifest that still describes
   the pages on disk (a page written but not yet recorded is simply redone).

Nothing is written at all when everything is up to date: files, mtimes and the
manifest stay as they were.
"""

from __future__ import annotations

import datetime as dt
import pathlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from adapters.reports.catalog import ANALYZERS, Analyzer
from adapters.reports.collect import History, log_stamp, open_store, read_history
from adapters.reports.config import ReportConfig, load_report_config
from adapters.reports.manifest import (
    Entry,
    Manifest,
    Stamp,
    read_manifest,
    write_atomic,
    write_manifest,
)
from adapters.reports.render import copy_assets, render_index, render_page, renderer_digest

INDEX = "index.html"


@dataclass(slots=True)
class Outcome:
    out: pathlib.Path
    written: list[Entry] = field(default_factory=list)
    unchanged: list[Entry] = field(default_factory=list)
    assets: list[str] = field(default_factory=list)
    index_written: bool = False
    seconds: float = 0.0
    read_seconds: float = 0.0  # reading the history (once, for every stale page)
    timings: dict[str, float] = field(default_factory=dict)  # analyzer -> seconds

    @property
    def up_to_date(self) -> bool:
        return not (self.written or self.assets or self.index_written)


def stamp_of(analyzer: Analyzer, log: Any, cfg: ReportConfig, renderer: str) -> Stamp:
    return Stamp(log, {name: cfg.digests[name] for name in analyzer.configs},
                 {"time_zone": cfg.time_zone} if analyzer.uses_time_zone else {}, renderer)


def _iso(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="seconds")


async def generate(db: str | pathlib.Path, out: str | pathlib.Path, specs: str | pathlib.Path
                   = "specs", *, time_zone: str = "UTC",
                   clock: Callable[[], float] = time.time) -> Outcome:
    """Bring the reports in `out` up to date with the database `db` (see above)."""
    started = time.perf_counter()
    cfg = load_report_config(specs, time_zone)
    out_dir = pathlib.Path(out)
    outcome = Outcome(out_dir)
    renderer = renderer_digest()
    old = read_manifest(out_dir)
    async with open_store(db) as store:
        log = await log_stamp(store)
        stale: list[tuple[Analyzer, Stamp]] = []
        for a in ANALYZERS:
            stamp = stamp_of(a, log, cfg, renderer)
            prior = old.entry(a.id) if old is not None else None
            if prior is not None and prior.stamp == stamp and (out_dir / a.file).exists():
                outcome.unchanged.append(prior)
            else:
                stale.append((a, stamp))
        t = time.perf_counter()
        history: History | None = await read_history(store, log, cfg.directory) if stale else None
        outcome.read_seconds = time.perf_counter() - t
    out_dir.mkdir(parents=True, exist_ok=True)
    outcome.assets = copy_assets(out_dir)
    for a, stamp in stale:
        assert history is not None
        t = time.perf_counter()
        entry = Entry(a.id, a.title, a.file, _iso(clock()), stamp)
        write_atomic(out_dir / a.file, render_page(a, a.build(history, cfg), entry).encode())
        outcome.written.append(entry)
        outcome.timings[a.id] = time.perf_counter() - t
    entries = {e.analyzer: e for e in outcome.written + outcome.unchanged}
    ordered = [(a, entries[a.id]) for a in ANALYZERS]
    if stale or not (out_dir / INDEX).exists():
        write_atomic(out_dir / INDEX, render_index(ordered).encode())
        outcome.index_written = True
    manifest = Manifest([e for _, e in ordered])
    if manifest != old:
        write_manifest(out_dir, manifest)
    outcome.seconds = time.perf_counter() - started
    return outcome


# ------------------------------------------------------------------- the CLI
def run_cli(args: Any) -> int:
    """`caseloop report` (args from adapters.cli): generate, then say what was written."""
    import anyio
    from rich.console import Console
    from rich.table import Table

    console = Console()
    try:
        outcome = anyio.run(lambda: generate(args.db, args.out, args.specs,
                                             time_zone=args.time_zone))
    except (ValueError, FileNotFoundError) as exc:
        Console(stderr=True).print(f"caseloop report: error: {exc}", markup=False,
                                   highlight=False, soft_wrap=True)
        return 1
    if outcome.up_to_date:
        console.print(f"{outcome.out}: up to date ({len(outcome.unchanged)} pages, "
                      f"{outcome.seconds:.2f} s)", markup=False, highlight=False)
        return 0
    table = Table(title=f"caseloop report into {outcome.out}", title_justify="left")
    for col in ("page", "analyzer", "", "seconds"):
        table.add_column(col, justify="right" if col == "seconds" else "left")
    for e in outcome.written:
        table.add_row(e.file, e.title, "written", f"{outcome.timings.get(e.analyzer, 0):.2f}")
    for e in outcome.unchanged:
        table.add_row(e.file, e.title, "up to date", "")
    console.print(table)
    extra = ([INDEX] if outcome.index_written else []) + outcome.assets
    if extra:
        console.print("also written: " + ", ".join(extra), markup=False, highlight=False)
    console.print(f"{len(outcome.written)} written, {len(outcome.unchanged)} up to date in "
                  f"{outcome.seconds:.2f} s (reading the history {outcome.read_seconds:.2f} s);"
                  f" open {outcome.out / INDEX}", markup=False, highlight=False)
    return 0
