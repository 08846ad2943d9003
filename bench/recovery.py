"""Recovery: restart over a log of 1,000,000 events until the runtime serves again.

The log. The real runtime, with the five pipeline specs and the placeholder actions,
drives deal cases in memory over a capturing store (no I/O per append); the store
writes the appends it is handed to the SQLite file in big transactions, with the
store's schema (`adapters.sqlite_schema`) and row format (`sqlite_writer.round_rows`:
one events row per append, the cases and work_items projections, snapshots exactly
where the runtime asked for them -- every 100 events of a case). So the file is what a
long-running server would have left, only written faster. The cases, in waves of a few thousand:

* closed (45 %): approved, standard contract signed, paid: handed on WF2 -> WF3 -> WF5
  and completed;
* approving (20 %): 0-3 of the four approvals done (24 h timer pending);
* signing (15 %): approved, contract out for signature (5-day timer pending);
* negotiating (20 %): a custom contract going round LegalReview <-> RequestAmendments
  2-80 times (72 h timers; the long ones carry snapshots);
* stuck (0.1 %): AllApprovalsComplete's action claimed but never answered (the
  process "died" during the call): recovery must resume it.

The file is cached under /tmp keyed by a version string (schema, specs, event types,
this generator), so reruns skip the generation. Each measured run copies it to a
temp dir (warm OS page cache: this is a process restart, not a cold boot).

The measurement, in a fresh child process: from process start (the parent's clock
just before spawning it) until a random open case's `rt.get` and one completion on it
(ack after COMMIT) succeed. The child reports the breakdown: interpreter + imports,
open (`SQLiteStore.__aenter__`), specs (read from the store, compiled, registered),
recover (`Runtime.__aenter__`: re-arm pending timers, resume automatic items), first
activation (`rt.get`: snapshot + events after it), first completion. Clock:
VirtualClock at the log's last time, so no timer is overdue.

    python bench/recovery.py [--events 1000000] [--repeat 3] [--regen] [--smoke]

One JSON line per run (and one for the generation) on stdout; a summary on stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from typing import Any

T_START = time.time()  # the child's earliest moment (before the heavy imports)

import anyio  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from actors import Runtime, VirtualClock, placeholder_actions  # noqa: E402
from actors.ports import Append, ItemRow, SpecRow, StoredCase, TimerKey, TimerRow  # noqa: E402
from adapters import sqlite_schema, sqlite_writer  # noqa: E402
from adapters.sqlite_store import SQLiteStore  # noqa: E402
from engine import compile_document  # noqa: E402
from engine.net import KIND_NAME  # noqa: E402

GEN_VERSION = "recovery-gen-2"  # 2: the log is stamped with the schema version
CACHE = pathlib.Path(tempfile.gettempdir()) / "caseloop-bench-cache"
PIPELINE = ("lead-qualification", "deal-approval-gate", "contract-processing",
            "pricing-exception", "revenue-recognition")
T0 = 1_700_000_000.0  # virtual time of the first event
WAVE = 3000  # cases driven together (well under the resident cap)
# The tutorial's TechCorp deal (specs/examples/techcorp-deal.json).
DEAL = json.loads((ROOT / "specs" / "examples" / "techcorp-deal.json").read_text())
# profile -> (share, answers by task)
PROFILES: dict[str, tuple[float, dict[str, str]]] = {
    "closed": (0.45, {"CustomerSignature": "signed", "PaymentReceived": "paid"}),
    "approving": (0.20, {}),
    "signing": (0.15, {}),
    "negotiating": (0.20, {"LegalReview": "amend", "RequestAmendments": "revised"}),
}
STUCK_SHARE = 0.001


def spec_text(wf: str) -> str:
    return (ROOT / "specs" / f"{wf}.json").read_text()


def cache_key(events: int, seed: int) -> str:
    h = hashlib.sha256()
    for part in (GEN_VERSION, sqlite_schema.SCHEMA, (ROOT / "engine" / "events.py").read_text(),
                 *(spec_text(wf) for wf in PIPELINE), f"{events}/{seed}"):
        h.update(part.encode())
    return f"{GEN_VERSION}-{events}-{h.hexdigest()[:12]}"


# ------------------------------------------------------------------ generation
class CaptureStore:
    """The runtime's EventStore port, writing to SQLite in big batches (no per-append I/O)."""

    FLUSH = 20_000  # appends per transaction

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=OFF")
        # The store's own creation: a log of the current schema version, so a restart
        # measures recovery, not the upgrade of a version-0 database (~0.25 s here).
        sqlite_schema.create_schema(self.db)
        self.buffer: list[Append] = []
        self.events = self.appends = self.snapshots = 0

    async def append(self, batch: Append) -> None:
        self.buffer.append(batch)
        self.events += len(batch.events)
        self.appends += 1
        self.snapshots += batch.snapshot is not None
        if len(self.buffer) >= self.FLUSH:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        events, *projections = sqlite_writer.round_rows(self.buffer)
        self.buffer = []
        db = self.db
        db.execute("BEGIN")
        db.executemany(sqlite_writer.INSERT_EVENT, events)
        sqlite_writer.write_projections(db, *projections)
        db.execute("COMMIT")

    def save_specs(self, at: float) -> None:
        for wf in PIPELINE:
            doc = spec_text(wf)
            net = compile_document(doc)
            self.db.execute(
                "INSERT OR IGNORE INTO specs (workflow_id, version, digest, document,"
                " registered_at) VALUES (?, ?, ?, ?, ?)",
                (net.workflow_id, net.version, hashlib.sha256(doc.encode()).hexdigest(), doc,
                 at))

    def close(self) -> None:
        self.flush()
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.close()

    async def load(self, case_id: str) -> StoredCase | None:
        raise AssertionError(f"generator: {case_id} was passivated while still in use")

    async def case_exists(self, case_id: str) -> bool:
        return False

    async def save_spec(self, row: SpecRow) -> None:
        pass

    async def specs(self) -> list[SpecRow]:
        return []

    async def pending_timers(self, after: TimerKey | None = None,
                             limit: int | None = None) -> list[TimerRow]:
        return []

    async def open_items(self, kind: str | None = None) -> list[ItemRow]:
        return []


def _human_items(case: Any) -> list[Any]:
    tasks = case.net.tasks
    return [i for i in case.work_items()
            if KIND_NAME[tasks[i.task].kind] == "human" and i.state != "failed"]


async def generate(path: str, target: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    store = CaptureStore(path)
    store.save_specs(T0)
    clock = VirtualClock(T0)
    stuck: set[str] = set()
    entered: list[str] = []
    never = anyio.Event()
    actions = placeholder_actions()

    async def record_approvals(ctx: Any) -> dict[str, Any]:
        if ctx.case_id in stuck:
            entered.append(ctx.case_id)
            await never.wait()  # the process dies during this call
        return {}

    actions.register("record_approvals", record_approvals)
    counts = dict.fromkeys([*PROFILES, "stuck"], 0)
    open_human: list[str] = []  # open cases with a human item: recovery probes these
    t0 = time.perf_counter()
    with anyio.CancelScope() as kill:  # cancelled at the end: the process "dies"
        await _drive(store, clock, actions, stuck, entered, target, rng, counts, open_human, kill)
    store.close()
    n = sum(counts.values())
    meta = {"events": store.events, "appends": store.appends, "snapshots": store.snapshots,
            "cases": n, "profiles": counts, "open_human": open_human, "stuck": sorted(stuck),
            "last_time": clock.now(), "generate_s": round(time.perf_counter() - t0, 1),
            "bytes": os.path.getsize(path)}
    return meta


async def _drive(store: CaptureStore, clock: VirtualClock, actions: Any, stuck: set[str],
                 entered: list[str], target: int, rng: random.Random, counts: dict[str, int],
                 open_human: list[str], kill: anyio.CancelScope) -> None:
    names, shares = list(PROFILES), [PROFILES[p][0] for p in PROFILES]
    async with Runtime(store, clock, actions, resident_cap=4 * WAVE) as rt:
        for wf in PIPELINE:
            rt.add_net(compile_document(spec_text(wf)))
        n = 0
        per_case = 48.0  # events per case, running estimate (sizes the last wave)
        while store.events < target:
            size = max(1, min(WAVE, int((target - store.events) / per_case) + 1))
            plans: list[tuple[str, str, int, dict[str, str]]] = []
            for _ in range(size):
                profile = rng.choices(names, shares)[0]
                data = dict(DEAL)
                data["deal_acv"] = 600000 + n
                data["deal_name"] = f"Deal {n}"
                budget = {"closed": 10_000, "approving": rng.randint(0, 3), "signing": 4,
                          "negotiating": 4 + rng.randint(2, 80)}[profile]
                if profile == "negotiating":
                    data["contract_type"] = "custom"
                cid = f"deal_{n:07d}"
                n += 1
                counts[profile] += 1
                await rt.create("deal-approval-gate", cid, data)
                plans.append((cid, profile, budget, PROFILES[profile][1]))
            await rt.wait_idle()
            before = store.events
            active = plans
            while active:
                nxt = []
                for cid, profile, budget, answers in active:
                    case = await rt.get(cid)
                    human = _human_items(case) if case.status == "active" else []
                    if not human or budget <= 0:
                        if human:
                            open_human.append(cid)
                        continue
                    it = human[0]
                    task = case.net.tasks[it.task].id
                    await rt.complete(cid, it.id, answers.get(task, "approved"), None, "gen")
                    nxt.append((cid, profile, budget - 1, answers))
                await rt.wait_idle()
                active = nxt
            per_case = 0.5 * per_case + 0.5 * (store.events - before) / size
            clock.advance_to(clock.now() + 60.0)
        # A few cases whose automatic step was claimed but never answered.
        n_stuck = max(1, round(n * STUCK_SHARE))
        for _ in range(n_stuck):
            cid = f"deal_{n:07d}"
            n += 1
            stuck.add(cid)
            counts["stuck"] += 1
            data = dict(DEAL)
            data["deal_acv"] = 600000 + n
            await rt.create("deal-approval-gate", cid, data)
            for task in ("SendToSalesManager", "SendToLegal", "SendToFinance",
                         "ExecutiveCheck"):
                await rt.complete(cid, task, "approved", None, "gen")
        for _ in range(10_000):
            if len(entered) == n_stuck:
                break
            await anyio.sleep(0)
        assert len(entered) == n_stuck, (len(entered), n_stuck)
        kill.cancel()  # the stuck actions never answer: the process dies with them
        await anyio.sleep_forever()


def cached_db(events: int, seed: int, regen: bool) -> tuple[pathlib.Path, dict[str, Any], bool]:
    CACHE.mkdir(parents=True, exist_ok=True)
    key = cache_key(events, seed)
    db, meta_path = CACHE / f"{key}.db", CACHE / f"{key}.json"
    if db.exists() and meta_path.exists() and not regen:
        return db, json.loads(meta_path.read_text()), True
    tmp = CACHE / f"{key}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    meta = anyio.run(generate, str(tmp), events, seed)
    for suffix in ("-wal", "-shm"):
        pathlib.Path(str(tmp) + suffix).unlink(missing_ok=True)
    tmp.replace(db)
    meta_path.write_text(json.dumps(meta))
    return db, meta, False


# ------------------------------------------------------------------- the restart
async def restart(db: str, case_id: str, now: float, longest: str) -> dict[str, Any]:
    """In the fresh child: open, load specs, recover, serve one get + one completion."""
    pc = time.perf_counter
    marks: dict[str, float] = {"imported": time.time()}
    t = pc()
    out: dict[str, Any] = {}
    async with SQLiteStore(db) as store:
        out["open_s"] = pc() - t
        t = pc()
        rt = Runtime(store, VirtualClock(now), placeholder_actions())
        for row in await store.specs():
            rt.add_net(compile_document(row.document))
        out["specs_s"] = pc() - t
        t = pc()
        async with rt:
            out["recover_s"] = pc() - t
            t = pc()
            case = await rt.get(case_id)
            out["first_get_s"] = pc() - t
            human = _human_items(case)
            assert case.status == "active" and human, (case_id, case.status)
            before = case.version
            t = pc()
            # Approved as a person would: a quality gate's checklist confirmed (the probe
            # may be a custom contract in LegalReview).
            gate = case.net.tasks[human[0].task].checklist
            case = await rt.complete(case_id, human[0].id, "approved",
                                     {"checklist": list(gate)} if gate else None, "bench")
            out["first_completion_s"] = pc() - t
            marks["served"] = time.time()
            assert case.version > before
            t = pc()
            await rt.wait_idle()  # the resumed automatic items, done
            out["resumed_idle_s"] = pc() - t
            out["timers_armed"] = len(rt._timers)
            out["resumed_actions_incidents"] = len(rt.incidents)
            stored = await store.load(case_id)
            assert stored is not None
            out["probe_case_events_replayed"] = len(stored.events)
            out["probe_case_had_snapshot"] = stored.snapshot is not None
            # The worst activation: the open case with the longest log.
            t = pc()
            case = await rt.get(longest)
            out["longest_case_get_s"] = pc() - t
            stored = await store.load(longest)
            assert stored is not None
            out["longest_case_events"] = case.version
            out["longest_case_events_after_snapshot"] = len(stored.events)
    out = {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}
    out["t_start"], out["t_imported"], out["t_served"] = T_START, marks["imported"], marks["served"]
    return out


def measure(db: pathlib.Path, meta: dict[str, Any], rng: random.Random, tmp: str,
            ) -> dict[str, Any]:
    work = pathlib.Path(tmp) / "recovery.db"
    for suffix in ("", "-wal", "-shm"):
        pathlib.Path(str(work) + suffix).unlink(missing_ok=True)
    shutil.copyfile(db, work)
    case_id = rng.choice(meta["open_human"])
    with sqlite3.connect(work) as conn:
        (longest,) = conn.execute("SELECT case_id FROM cases WHERE state = 'active'"
                                  " ORDER BY seq DESC LIMIT 1").fetchone()
    conn.close()
    cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--child", str(work),
           "--case", case_id, "--now", repr(meta["last_time"]), "--longest", longest]
    t_spawn = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"recovery child failed:\n{p.stderr}")
    child = json.loads(p.stdout.strip().splitlines()[-1])
    total = child.pop("t_served") - t_spawn
    interp = child.pop("t_start") - t_spawn
    imports = child.pop("t_imported") - t_spawn - interp
    return {
        "bench": "recovery",
        "events": meta["events"],
        "appends": meta["appends"],
        "cases": meta["cases"],
        "snapshots": meta["snapshots"],
        "db_mb": round(meta["bytes"] / 2**20, 1),
        "case": case_id,
        "time_to_serve_s": round(total, 3),
        "target_s": 5.0,
        "interpreter_s": round(interp, 3),
        "imports_s": round(imports, 3),
        **child,
        "python": sys.version.split()[0],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3, help="restarts measured (fresh copies)")
    ap.add_argument("--seed", type=int, default=7, help="generation seed (part of the cache key)")
    ap.add_argument("--regen", action="store_true", help="rebuild the cached log")
    ap.add_argument("--smoke", action="store_true", help="tiny run for CI: checks it works")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--now", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--longest", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(anyio.run(restart, a.child, a.case, a.now, a.longest)))
        return
    if a.smoke:
        a.events, a.repeat = 20_000, 1
    db, meta, hit = cached_db(a.events, a.seed, a.regen)
    gen = {"bench": "recovery-log", "events": meta["events"], "appends": meta["appends"],
           "cases": meta["cases"], "snapshots": meta["snapshots"], "profiles": meta["profiles"],
           "db_mb": round(meta["bytes"] / 2**20, 1), "generate_s": meta["generate_s"],
           "cached": hit, "file": str(db)}
    print(json.dumps(gen), flush=True)
    print(f"log: {gen['events']} events in {gen['appends']} appends, {gen['cases']} cases, "
          f"{gen['snapshots']} snapshots, {gen['db_mb']} MB "
          f"({'cached' if hit else 'generated'}; generation took {gen['generate_s']} s)",
          file=sys.stderr, flush=True)
    rng = random.Random()
    with tempfile.TemporaryDirectory(prefix="caseloop-recovery-") as tmp:
        for _ in range(a.repeat):
            row = measure(db, meta, rng, tmp)
            print(json.dumps(row), flush=True)
            print(f"recovery: serving after {row['time_to_serve_s']} s (target < 5 s): "
                  f"interpreter {row['interpreter_s']} + imports {row['imports_s']} + open "
                  f"{row['open_s']} + specs {row['specs_s']} + recover {row['recover_s']} "
                  f"({row['timers_armed']} timers) + get {row['first_get_s']} + complete "
                  f"{row['first_completion_s']} s; longest open case "
                  f"({row['longest_case_events']} events, "
                  f"{row['longest_case_events_after_snapshot']} after its snapshot) activates in "
                  f"{row['longest_case_get_s']} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
