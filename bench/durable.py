"""Durable throughput: the runtime over the SQLite group-commit store, ack after COMMIT.

The net is the shipped `specs/deal-approval-gate.json` with the placeholder actions, so
the automatic AllApprovalsComplete runs and completes each case. For each concurrency
level N, N workers (one case in flight each) take cases off a shared queue: create
the case, then complete its four approvals one by one, each `await rt.complete(...)`
returning only after the store has COMMITted its events. The clock ends once every
automatic completion is durable too (`rt.wait_idle()`).

Counted: every completion (4 human + 1 automatic per case) and every create. The
timed window contains both, so completions/s is over a mixed create+complete load.
`mean_batch` is appends per COMMIT (store.appends_committed / store.commits);
`commits_inline` counts the commits of small rounds written on the event loop; per case
there are 6 appends (create, 4 approvals, the action's completion), 7 when the runtime
claims the automatic item before running its action. `cpu_us_per_completion` is the
process CPU time (event loop + SQLite writer thread) per completion: the cost, less
sensitive than the rate to other work on a shared machine.
Only deal-approval-gate is registered, so the approved case ends there (no hand-on to
contract processing). A fresh SQLite file in a temp dir per level; VirtualClock.

With `--monitor` a MAPE-K Monitor follows the store while the run goes on, as a server
runs it (`--monitor-in process`, the default): a tail process of its own
(adapters.monitor_tail) folds the log, and the Monitor here takes what changed from it
at every `catch_up()`. `--monitor-in loop` folds in this process's event loop instead
(what the store handed on as its rounds committed). `catch_up()` comes every 50 ms, as
a dashboard polling it would; `--monitor-every 1` is the server's period
(`adapters.http.app.FOLLOW_EVERY`). A last `catch_up()` takes the rest before the
clock stops: all of the cost of observing is inside the timed window, at any period.
The tail is started (its imports) before the clock. The row gains `monitor_*` fields
(`monitor_appends_read`: appends read back from the log; `monitor_appends_tailed`:
folded by the tail; `monitor_last_catch_up_s`: that last catch-up) and
`tail_cpu_us_per_completion`, which `cpu_us_per_completion` includes. Every row also
has `served_completions_per_s`, the clock stopped once the last completion is durable:
without the end of a periodic catch-up under way then, nor the Monitor's last catch-up,
in which a tail folds, the commands done, what it had not folded by then -- at idle
priority behind a saturated machine it lags: at N = 1,000 that catch-up was a median
5 % of a 10,000-case run's window and 2.4 % of a 30,000-case one's (bench/README, "The
run's end").
`--alternate` runs each level without and with it, in turns (the runs rotate which
goes first), and prints the overhead (target: <= 5 % fewer completions/s) as the
median of the pairs, with a bootstrap interval of that median, their quartiles and
range: on a shared machine one pair alone can be off by a quarter. With
`--monitor-in process,loop` each repeat runs without and with each, and the overhead
of each is printed.

`--pool FILE...` runs nothing: it pairs the rows of earlier `--alternate` runs (their
`repeat`) and prints the overhead over all of them, pooled.

`--writer thread|process` picks the store's writer (`SQLiteStore(writer=...)`; the
default is `caseloop serve`'s, the process); `thread,process` runs both in turns per
repeat and prints the paired rate ratio. With the writer process the CPU is the
parent's plus the child's (/proc), each also apart.

`--collector serving|default`: the garbage collector's pace in this process. By
default `caseloop serve`'s (young collections every 10,000 allocations:
adapters/collector.py); `default` is the interpreter's (every 700), which every run
before that pace was set had (bench/README, "The collector's pace");
`default,serving` runs both in turns per repeat and prints the paired rate ratio.

    python bench/durable.py [--concurrency 1,10,100,1000] [--cases N] [--repeat 1]
                            [--durability normal|full] [--writer process] [--profile]
                            [--collector serving|default|default,serving]
                            [--smoke] [--monitor | --alternate] [--monitor-every 0.05]
                            [--monitor-in process|loop|process,loop]
    python bench/durable.py --pool RUN.jsonl [RUN.jsonl ...]

One JSON line per level on stdout; a short summary on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import json
import pathlib
import pstats
import statistics
import sys
import tempfile
import time
from typing import Any

import anyio
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from actors import Runtime, VirtualClock, placeholder_actions  # noqa: E402
from adapters.collector import serving_pace  # noqa: E402
from adapters.monitor_tail import fold_in, monitor_tail  # noqa: E402
from adapters.sqlite_store import SQLiteStore  # noqa: E402
from engine import compile_document  # noqa: E402
from mapek.monitor import Monitor  # noqa: E402
from mapek.stats import bootstrap  # noqa: E402

# The tutorial's TechCorp deal (specs/examples/techcorp-deal.json).
DEAL = json.loads((ROOT / "specs" / "examples" / "techcorp-deal.json").read_text())
APPROVALS = ("SendToSalesManager", "SendToLegal", "SendToFinance", "ExecutiveCheck")
APPROVED = {"approval": "APPROVED"}
WORKFLOW = "deal-approval-gate"
# Cases per level by default: enough for a stable rate, small enough that the whole
# run (four levels) stays well under two minutes on a shared two-core machine.
DEFAULT_CASES = {1: 400, 10: 1500, 100: 3000, 1000: 3000}
# The collector's pace a run has (--collector): caseloop serve's, or the interpreter's.
PACES = {"serving": serving_pace, "default": contextlib.nullcontext}


def load_net():
    return compile_document((ROOT / "specs" / f"{WORKFLOW}.json").read_text())


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def run_level(concurrency: int, n_cases: int, durability: str, tmp: str,
                    profile: cProfile.Profile | None = None,
                    monitor: str | None = None, every: float = 0.05,
                    writer: str = "thread") -> dict[str, Any]:
    path = str(pathlib.Path(tmp) / f"durable-{concurrency}-{time.monotonic_ns()}.db")
    net = load_net()
    ids = [f"deal_{i:07d}" for i in range(n_cases)]
    acks: list[float] = []  # ack latency of every human completion, seconds
    pc = time.perf_counter
    store = SQLiteStore(path, durability=durability, writer=writer)  # type: ignore[arg-type]
    async with store, Runtime(store, VirtualClock(0.0), placeholder_actions()) as rt, (
            contextlib.AsyncExitStack()) as stack:
        rt.add_net(net)
        queue = iter(ids)

        async def worker() -> None:
            for cid in queue:  # a shared iterator: N cases in flight at any time
                data = dict(DEAL)
                await rt.create(WORKFLOW, cid, data)
                for task in APPROVALS:
                    t = pc()
                    await rt.complete(cid, task, "approved", APPROVED, "bench")
                    acks.append(pc() - t)

        # As a server runs it: folding in a tail process of its own, or here.
        tail = (await stack.enter_async_context(monitor_tail(path))
                if monitor == "process" else None)
        watcher = Monitor(store, tail=tail) if monitor else None
        if watcher is not None:  # the tail started (its imports) before the clock does
            await watcher.catch_up()
        catch_ups = 0
        monitored: dict[str, Any] = {}

        async def observe() -> None:
            nonlocal catch_ups
            assert watcher is not None
            while True:
                await watcher.catch_up()
                catch_ups += 1
                await anyio.sleep(every)

        if profile is not None:
            profile.enable()
        c0 = time.process_time()  # all threads: the loop's and SQLite's
        w0 = store.writer_cpu_now() or 0.0  # writer="process": the child's
        def tail_cpu() -> float:  # the monitor's tail process: CPU seconds so far
            return (tail.cpu_now() if tail is not None else None) or 0.0

        m0 = tail_cpu()
        tail_pid = tail.process.pid if tail is not None else None
        t0 = pc()
        async with anyio.create_task_group() as outer:
            if watcher is not None:
                outer.start_soon(observe)
            async with anyio.create_task_group() as tg:
                for _ in range(min(concurrency, n_cases)):
                    tg.start_soon(worker)
            await rt.wait_idle()  # the automatic completions, committed
            served = pc() - t0
            outer.cancel_scope.cancel()
        lag, last = 0, 0.0
        if watcher is not None:
            # Inside the window: the Monitor's cost is all of its fold, not what the
            # last period happened to catch (at a period of a second, most of a run).
            lag = len(watcher.open) + len(watcher.closed)
            last = pc()
            await watcher.catch_up()
            last = pc() - last
        dt = pc() - t0
        cpu = time.process_time() - c0
        wcpu = (store.writer_cpu_now() or 0.0) - w0
        mcpu = tail_cpu() - m0
        if tail is not None and (tail.process.pid != tail_pid or not (
                watcher is not None and watcher.mirrors)):  # its CPU: another's, or none
            raise SystemExit("the monitor's tail process was lost mid-run: this run "
                             "measures that, not the tail (see stderr)")
        if watcher is not None:
            monitored = {"monitor_catch_ups": catch_ups,
                         # items seen by the periodic catch-ups; the rest by the last one
                         "monitor_items_seen_periodically": lag,
                         "monitor_items": len(watcher.open) + len(watcher.closed),
                         # the last catch-up, after the last completion was durable
                         "monitor_last_catch_up_s": round(last, 4),
                         # folded as the store handed them on / read back from the log
                         "monitor_appends_handed_on": watcher.appends_handed_on,
                         "monitor_appends_read": watcher.appends_read,
                         "monitor_appends_tailed": watcher.appends_tailed,
                         "monitor_in": monitor}
            if monitor == "process":  # the tail's fold: C, or Python (FOLD_ENV)
                monitored["tail_fold"] = fold_in()
        if profile is not None:
            profile.disable()
        done = 0
        for cid in ids:
            case = await rt.get(cid)
            done += case.status == "completed"
        assert done == n_cases, f"only {done} of {n_cases} cases completed"
        assert not rt.incidents, rt.incidents[:3]
        commits, appends = store.commits, store.appends_committed
        inline = store.commits_inline
    human, automatic = len(APPROVALS) * n_cases, n_cases
    return {
        "bench": "durable",
        "durability": durability,
        "concurrency": concurrency,
        "cases": n_cases,
        "completions": human + automatic,
        "human_completions": human,
        "automatic_completions": automatic,
        "seconds": round(dt, 3),
        "completions_per_s": round((human + automatic) / dt),
        # until the last completion was durable: the Monitor's last catch-up not counted
        "served_s": round(served, 3),
        "served_completions_per_s": round((human + automatic) / served),
        "creates_per_s": round(n_cases / dt),
        "appends_per_s": round(appends / dt),
        "commits": commits,
        "commits_inline": inline,
        "appends_committed": appends,
        "mean_batch": round(appends / commits, 1),
        "cpu_s": round(cpu, 3),
        "cpu_us_per_completion": round((cpu + wcpu + mcpu) / (human + automatic) * 1e6, 1),
        "writer": writer,
        # writer="process": the parent's (event loop) and the child's (SQLite) apart; the
        # Monitor's tail process (--monitor-in process) apart too
        "parent_cpu_us_per_completion": round(cpu / (human + automatic) * 1e6, 1),
        "child_cpu_us_per_completion": round(wcpu / (human + automatic) * 1e6, 1),
        "tail_cpu_us_per_completion": round(mcpu / (human + automatic) * 1e6, 1),
        "ack_p50_ms": round(_pct(acks, 0.50) * 1e3, 2),
        "ack_p99_ms": round(_pct(acks, 0.99) * 1e3, 2),
        "python": sys.version.split()[0],
        "gc_young_threshold": gc.get_threshold()[0],  # the collector's pace it ran at
        **monitored,
    }


def _spread(pcts: list[float]) -> str:
    """Median, and the middle half and the range of the pairs: on a shared machine a
    single pair can be off by a quarter either way, so the median alone says little."""
    q = (statistics.quantiles(pcts, n=4, method="inclusive") if len(pcts) > 1
         else [pcts[0]] * 3)
    lo, hi = _median_interval(pcts)
    return (f"{statistics.median(pcts):.1f} % (90 % interval of the median {lo:.1f}..{hi:.1f}; "
            f"quartiles {q[0]:.1f}..{q[2]:.1f}, range {min(pcts):.1f}..{max(pcts):.1f})")


def _median_interval(pcts: list[float], level: float = 0.90, resamples: int = 4000,
                     ) -> tuple[float, float]:
    """Percentile bootstrap interval of the median of the pairs (mapek.stats; fixed
    seed: the same pairs give the same interval)."""
    est = bootstrap(np.asarray(pcts, dtype=float), lambda a: np.median(a, axis=1),
                    np.random.default_rng(0), resamples=resamples, level=level, minimum=2)
    return (est.low, est.high) if est is not None else (pcts[0], pcts[0])


def summary(row: dict[str, Any]) -> str:
    return (f"durable[{row['durability']},{row['writer']}] N={row['concurrency']:>4}: "
            f"{row['completions_per_s']:>6} completions/s, {row['creates_per_s']:>5} creates/s, "
            f"batch {row['mean_batch']:>6}, ack p50 {row['ack_p50_ms']} ms "
            f"p99 {row['ack_p99_ms']} ms, {row['cpu_us_per_completion']} CPU-us/completion "
            f"(parent {row['parent_cpu_us_per_completion']}, child "
            f"{row['child_cpu_us_per_completion']}) "
            f"({row['cases']} cases, {row['seconds']} s)")


def overhead(n: int, place: str, paired: list[tuple[dict[str, Any], dict[str, Any]]],
             ) -> str:
    """The Monitor's cost over pairs of runs (without it, with it): a pair shares the
    machine's mood. Over the whole window (the target's measure), and served: until the
    last completion was durable, the Monitor's last catch-up not counted -- what the
    commands paid while they ran, which is less than a sustained peak pays: a tail at
    idle priority had folded only part of the log by then, the rest coming in that
    catch-up with the machine otherwise idle."""
    def pct(key: str) -> list[float]:
        return [100 * (1 - on[key] / off[key]) for off, on in paired]

    cpu = [100 * (on["cpu_us_per_completion"] / off["cpu_us_per_completion"] - 1)
           for off, on in paired]
    served = (f"served {_spread(pct('served_completions_per_s'))}, "
              if all("served_s" in r for pair in paired for r in pair) else "")
    return (f"durable N={n:>4}: monitor (in {place}) overhead {served}"
            f"with its last catch-up {_spread(pct('completions_per_s'))} completions/s, "
            f"{_spread(cpu)} CPU per completion ({len(paired)} paired runs)")


def _place(row: dict[str, Any]) -> str | None:
    """Where a row's Monitor folded (None: no Monitor; rows from before `monitor_in`
    had it in the loop)."""
    return row.get("monitor_in") or ("loop" if "monitor_catch_ups" in row else None)


def pool(paths: list[str]) -> None:
    """The overhead over the pairs of several --alternate runs' JSON lines, one run per
    file (a repeat's rows share `repeat`; rows written before it had one come a repeat
    after another, one without the Monitor in each)."""
    pairs: dict[tuple[int, str], list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for path in paths:
        rows = [json.loads(line) for line in pathlib.Path(path).read_text().splitlines()
                if line.startswith("{")]
        per_repeat = 1 + len({_place(r) for r in rows} - {None})
        repeats: dict[tuple[int, int], list[dict[str, Any]]] = {}
        for i, r in enumerate(rows):
            rep = r.get("repeat", i // per_repeat)
            repeats.setdefault((r["concurrency"], rep), []).append(r)
        for (n, _), rs in repeats.items():
            offs = [r for r in rs if _place(r) is None]
            if len(offs) != 1:
                raise SystemExit(f"{path}: N={n}: a repeat without exactly one run "
                                 "without the Monitor (one run per file)")
            for r in rs:
                if (place := _place(r)) is not None:
                    pairs.setdefault((n, place), []).append((offs[0], r))
    for (n, place), paired in sorted(pairs.items()):
        print(overhead(n, place, paired))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", default="1,10,100,1000",
                    help="comma-separated concurrent cases per level")
    ap.add_argument("--cases", type=int, default=0,
                    help="cases per level (default: 400/1500/3000/3000 for 1/10/100/1000)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per level (one line each)")
    ap.add_argument("--durability", choices=("normal", "full"), default="normal")
    ap.add_argument("--writer", default="process",
                    help="the store's writer: thread, process, or thread,process to run "
                         "both in turns per repeat (completions/s ratio printed)")
    ap.add_argument("--collector", default="serving",
                    help="the garbage collector's pace: serving (caseloop serve's, "
                         "adapters/collector.py), default (the interpreter's), or "
                         "default,serving to run both in turns per repeat (completions/s "
                         "ratio printed)")
    ap.add_argument("--profile", action="store_true",
                    help="cProfile the timed windows; top entries to stderr")
    ap.add_argument("--smoke", action="store_true", help="tiny run for CI: checks it works")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--monitor", action="store_true",
                      help="a Monitor follows the store during the run (catch_up every 50 ms)")
    mode.add_argument("--alternate", action="store_true",
                      help="each repeat runs without and with the monitor (in turns); "
                           "prints the overhead")
    ap.add_argument("--monitor-in", default="process",
                    help="where the Monitor folds: process (a tail process of its own, as "
                         "a server runs it), loop (this process's event loop), or "
                         "process,loop: with --alternate, each repeat runs without and "
                         "with each, in turns")
    ap.add_argument("--monitor-every", type=float, default=0.05, metavar="SECONDS",
                    help="the monitor's catch-up period (under valgrind, ~40x slower: 2 keeps "
                         "as many appends per catch-up as 0.05 natively)")
    ap.add_argument("--pool", nargs="+", metavar="FILE",
                    help="run nothing: print the overhead over the pairs of these "
                         "--alternate runs' JSON lines, pooled")
    a = ap.parse_args(argv)
    if a.pool:
        return pool(a.pool)
    levels = [int(x) for x in a.concurrency.split(",") if x.strip()]
    writers = [w for w in a.writer.split(",") if w]
    if not writers or any(w not in ("thread", "process") for w in writers):
        ap.error("--writer: thread, process or thread,process")
    collectors = [c for c in a.collector.split(",") if c]
    if not collectors or any(c not in PACES for c in collectors):
        ap.error("--collector: serving, default or default,serving")
    variants = [(w, c) for w in writers for c in collectors]
    if len(set(variants)) < len(variants):
        ap.error("--writer and --collector: each at most once")
    if len(variants) > 2:
        ap.error("two writers or two collectors, not both")
    if a.alternate and len(variants) > 1:
        ap.error("--alternate takes one writer and one collector")
    places = [p for p in a.monitor_in.split(",") if p]
    if not places or any(p not in ("process", "loop") for p in places):
        ap.error("--monitor-in: process, loop or process,loop")
    if a.smoke:
        levels, a.cases, a.repeat = [1, 10], 20, 1
    prof = cProfile.Profile() if a.profile else None
    with tempfile.TemporaryDirectory(prefix="caseloop-durable-") as tmp:
        for n in levels:
            cases = a.cases or DEFAULT_CASES.get(n, 3000)
            pairs: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {
                place: [] for place in places}
            by_variant: dict[tuple[str, str], list[dict[str, Any]]] = {
                v: [] for v in variants}
            for rep in range(a.repeat):
                rows = []
                # Runs alternate which goes first: a process that has run more (heap,
                # caches, the disk's dirty pages) must not always favour one side.
                runs: list[str | None] = ([None, *places] if a.alternate else
                                          [places[0] if a.monitor else None])
                turn = rep % len(runs)
                runs = runs[turn:] + runs[:turn]
                for writer, collector in (variants if rep % 2 == 0 else variants[::-1]):
                    for place in runs:
                        with PACES[collector]():
                            row = anyio.run(run_level, n, cases, a.durability, tmp, prof,
                                            place, a.monitor_every, writer)
                        row["collector"], row["repeat"] = collector, rep
                        rows.append(row)
                        by_variant[(writer, collector)].append(row)
                        print(json.dumps(row), flush=True)
                        print(summary(row) + (f" [monitor in {place}]" if place else ""),
                              file=sys.stderr, flush=True)
                if a.alternate:
                    off = next(r for r in rows if "monitor_in" not in r)
                    for r in rows:
                        if "monitor_in" in r:
                            pairs[r["monitor_in"]].append((off, r))
            if len(variants) == 2:  # paired ratios, as below
                rate = [100 * (y["completions_per_s"] / x["completions_per_s"] - 1)
                        for x, y in zip(*by_variant.values(), strict=True)]
                (w0, c0), (w1, c1) = variants
                what = (f"{w1} vs {w0} writer" if w0 != w1 else
                        f"the {c1} vs the {c0} collector's pace")
                print(f"durable N={n:>4}: {what}: {_spread(rate)} completions/s "
                      f"({len(rate)} pairs)", file=sys.stderr, flush=True)
            for place, paired in pairs.items():
                if paired:  # (--alternate)
                    print(overhead(n, place, paired), file=sys.stderr, flush=True)
    if prof is not None:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(30)
        print(s.getvalue(), file=sys.stderr)


if __name__ == "__main__":
    main()
