"""`caseloop simulate`: the pipeline simulation (mapek.simulate) into a SQLite database,
wired exactly as `caseloop serve` wires the runtime, with a progress bar and a summary.

Theory of operation
-------------------
The simulation must leave a database that `caseloop serve --db` serves as if the
history had happened: so the workflow specs are registered in it the way `serve`
registers them (adapters.http.app.load_registry: stored versions first, then the files
of --specs), and the actions are the ones `serve` runs (ICP scoring from icp.yaml,
least-loaded assignment over roles.yaml and the store's open work). The differences
are on purpose: the customers' e-signature and the invoice's timing are the
simulation's (mapek.simulate registers them); every other integration runs in local
mode even if the environment names a webhook (a simulation never calls a real
system); and SLA breaches are recorded but notify nobody -- a simulated month must not
page the CFO, nor leave the outbox full of notices for the next `serve` to deliver.

The policies are the database's: the MAPE-K loop's knowledge log is folded into a
`PolicyBook` as `serve` loads it, and the simulated runtime consults it as `serve`'s
does -- dispatch windows for new work, routing at the lead assignment, escalations
for SLA deadlines. A simulation after an apply runs under the applied policy, one
after a rollback under the policy restored.

People are the people of roles.yaml with their roles (and the roles they act as) and
time zones; who may complete what is `adapters.people.authorize`, the check every
HTTP completion passes. Callbacks from the e-signature and billing systems come from
the first person whose role may send signals (integrations@acme.com as shipped).

Speed: the simulation reads and checks conflicts against a MemoryStore and writes each
append to SQLite *behind* it (`WriteBehind`): the append is queued to the SQLite
writer without waiting for its COMMIT, so the writer commits hundreds of appends per
transaction instead of one, in the same order; the run ends only when every append is
committed. (Acknowledging before COMMIT is fine here: nobody else sees a simulation
before it is over, and a crash leaves a database the simulation can simply be re-run
into under another seed or file.) The queue is bounded: when more than `BACKLOG`
appends wait for the disk, the simulation pauses -- only between two steps, when the
runtime is idle, so the history is the same event for event -- until half of them are
committed. Unbounded, a writer that fell behind held the appends it had not written
yet: 20,000 deals over 180 days peaked at 719 MB, bounded at 603 MB (bench/README.md,
"A year of history"; most of the rest is the MemoryStore's copy of the whole log).

Case ids carry the start date and the seed (`sim-20251101-s42-deal-00017`): one
simulation per (start, seed) per database; running it again is refused rather than
half-merged.
"""

from __future__ import annotations

import datetime as dt
import functools
import pathlib
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import anyio
import msgspec

from actors import ActionRegistry, Runtime, VirtualClock
from actors.ports import Append
from adapters.config import load_yaml
from adapters.http.app import Settings, load_registry, pipeline_actions, sla_book
from adapters.integrations import load_integrations, register_integrations
from adapters.people import Directory, authorize, load_directory
from adapters.sqlite_store import KnowledgeStore, SQLiteStore
from mapek.knowledge import fold
from mapek.memory_store import MemoryStore
from mapek.pipeline_mix import SimulationConfig
from mapek.policy import PolicyBook
from mapek.simulate import Progress, SimPerson, SimulationSummary, simulate_pipeline

DAY = 86400.0


BACKLOG = 2_000  # appends queued for the disk before the simulation waits for it


class WriteBehind:
    """Reads from memory; every append also queued to the disk store in order, its
    COMMIT awaited by the task group `tg` rather than by the appender. `pause` (called
    by the simulation when it is idle) waits while more than `backlog` are queued."""

    def __init__(self, memory: MemoryStore, disk: SQLiteStore, tg: Any, *,
                 backlog: int | None = None) -> None:
        self.memory = memory
        self.disk = disk
        self.tg = tg
        self.backlog = BACKLOG if backlog is None else backlog
        self.queued = 0  # appends given to the disk and not yet committed
        self.most_queued = 0
        self.pauses = 0  # times the simulation waited for the disk
        self._drained: anyio.Event | None = None

    async def append(self, batch: Append) -> None:
        await self.memory.append(batch)  # conflicts are decided here, before the disk
        # A task starts in FIFO order and queues its append before it first suspends:
        # the disk commits the appends in the order the runtime made them.
        self.queued += 1
        self.most_queued = max(self.most_queued, self.queued)
        self.tg.start_soon(self._write, batch)

    async def _write(self, batch: Append) -> None:
        await self.disk.append(batch)
        self.queued -= 1
        if self._drained is not None and self.queued <= self.backlog // 2:
            self._drained.set()
            self._drained = None

    async def pause(self) -> None:
        if self.queued > self.backlog:
            self.pauses += 1
            self._drained = anyio.Event()
            await self._drained.wait()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.memory, name)


def load_simulation_config(path: str | pathlib.Path) -> SimulationConfig:
    """specs/simulation.yaml; a bad entry stops with the file and the field named."""
    cfg = load_yaml(path, SimulationConfig, "simulation")
    try:
        ZoneInfo(cfg.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{path}: /time_zone: unknown time zone {cfg.time_zone!r}") from None
    for task, table in cfg.outcomes.items():
        if not table or sum(table.values()) <= 0:
            raise ValueError(f"{path}: /outcomes/{task}: needs a result with weight > 0")
    return cfg


def people_of(directory: Directory, source: str = "roles.yaml") -> list[SimPerson]:
    out = []
    for user in sorted(directory.people):
        p = directory.people[user]
        try:
            ZoneInfo(p.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{source}: /people/{user}/time_zone: unknown time zone "
                             f"{p.time_zone!r}") from None
        out.append(SimPerson(user, p.role, tuple(sorted(directory.roles_of(user))),
                             p.time_zone))
    return out


def default_start(days: float, today: dt.date | None = None) -> float:
    """Today's 00:00 UTC minus `days`: the simulated history ends today."""
    day = today or dt.datetime.now(dt.UTC).date()
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() - days * DAY


def parse_start(text: str) -> float:
    """An ISO 8601 date or time; without a zone, UTC."""
    at = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    return at.timestamp()


async def simulate_into(db: str, *, deals: int, days: float, pattern: str, seed: int,
                        start: float, specs: str = "specs", config: str | None = None,
                        progress: Callable[[Progress], None] | None = None,
                        messages: list[str] | None = None) -> SimulationSummary:
    """Run the pipeline simulation into the SQLite database `db` (created if need be)."""
    spec_dir = pathlib.Path(specs)
    conf_path = pathlib.Path(config) if config else spec_dir / "simulation.yaml"
    cfg = (load_simulation_config(conf_path) if config or conf_path.exists()
           else SimulationConfig())
    roles = spec_dir / "roles.yaml"
    directory = load_directory(roles) if roles.exists() else Directory()
    people = people_of(directory, str(roles))
    senders = [u for u in sorted(directory.people) if directory.may(u, "send_signals")]
    settings = Settings(db=db, specs=specs)
    prefix = f"sim-{dt.datetime.fromtimestamp(start, dt.UTC):%Y%m%d}-s{seed}"
    async with SQLiteStore(db) as store:  # type: ignore[arg-type]
        if await store.query("SELECT 1 FROM cases WHERE case_id LIKE ? LIMIT 1",
                             (prefix + "-%",)):
            raise ValueError(f"{db} already holds the simulation starting "
                             f"{prefix[4:12]} with seed {seed}: use another --db, --seed "
                             "or --start")
        # The registry compiles into a runtime; this one only holds the nets (the
        # simulation runs its own, on its virtual clock).
        holder = Runtime(store, VirtualClock(start))
        await load_registry(settings, store, holder)
        policies = PolicyBook(fold(await KnowledgeStore(store).read_knowledge()).policies)
        if messages is not None and policies.current.version:
            messages.append(f"policy version {policies.current.version} in force: "
                            f"{len(policies.current.tasks)} task policies")
        slas = sla_book(settings, directory, set(), policies)  # recorded, never notified
        async with anyio.create_task_group() as tg:
            front = WriteBehind(MemoryStore(), store, tg)
            actions = pipeline_actions(settings, front, directory,  # type: ignore[arg-type]
                                       policies)
            _local_integrations(actions, spec_dir / "integrations.yaml")
            if messages is not None:
                messages += settings.messages
            summary = await simulate_pipeline(
                front, holder.workflows(), actions, cfg, people, deals=deals, days=days,
                pattern=pattern, seed=seed, start=start, slas=slas,
                authorize=functools.partial(authorize, directory),
                signals_by=senders[0] if senders else "signal:billing", case_prefix=prefix,
                dispatch=policies, progress=progress, pause=front.pause)
        return summary


def _local_integrations(actions: ActionRegistry, path: pathlib.Path) -> None:
    """Every integration in local mode, whatever the environment names as webhooks: a
    simulation never calls the real e-signature or billing systems."""
    if not path.exists():
        return
    conf = load_integrations(path)
    register_integrations(actions, msgspec.structs.replace(conf, actions={
        name: msgspec.structs.replace(i, webhook=None, webhook_env=None)
        for name, i in conf.actions.items()}))


# ------------------------------------------------------------------- the CLI
def run_cli(args: Any) -> int:
    """`caseloop simulate` (args from adapters.cli): progress bar, then a summary table."""
    import anyio
    from rich.console import Console
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    console = Console(stderr=True)
    try:
        start = parse_start(args.start) if args.start else default_start(args.days)
    except ValueError:
        console.print(f"--start: not an ISO 8601 date or time: {args.start!r}")
        return 2
    if args.deals < 0 or args.days <= 0:
        console.print("need --deals >= 0 and --days > 0")
        return 2
    if not pathlib.Path(args.specs).is_dir():
        console.print(f"no spec directory {args.specs!r} (--specs DIR)")
        return 2
    messages: list[str] = []
    with Bar(TextColumn("{task.description}"), BarColumn(), TextColumn("day {task.fields[day]}"),
             TimeElapsedColumn(), console=console, transient=False) as bar:
        task = bar.add_task("simulating", total=args.days, day=f"0/{args.days:g}")

        def report(p: Progress) -> None:
            elapsed = (p.now - p.start) / DAY
            bar.update(task, completed=elapsed, day=f"{elapsed:.1f}/{args.days:g}",
                       description=f"{p.deals}/{p.deals_planned} deals, {p.leads} leads, "
                                   f"{p.events:,} events")

        run = functools.partial(
            simulate_into, args.db, deals=args.deals, days=args.days, pattern=args.pattern,
            seed=args.seed, start=start, specs=args.specs, config=args.config,
            progress=report, messages=messages)
        try:
            summary = anyio.run(run)
        except ValueError as exc:
            bar.stop()
            # one line however long (a config error names its file and field)
            console.print(f"caseloop simulate: error: {exc}", markup=False, highlight=False,
                          soft_wrap=True)
            return 1
    Console().print(summary_table(summary, args.db))
    console.print(f"serve it: caseloop serve --db {args.db}")
    return 0


def summary_table(s: SimulationSummary, db: str) -> Any:
    from rich import box
    from rich.table import Table

    def stamp(t: float) -> str:
        return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")

    def hours(h: float | None) -> str:
        return "-" if h is None else f"{h:.1f}"

    table = Table(title=f"caseloop simulate: {s.pattern}, seed {s.seed}, {s.span_days:g} days "
                        f"({stamp(s.start)} .. {stamp(s.end)}) into {db}",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("workflow", no_wrap=True, min_width=19)
    for col in ("entered", "done", "cancel", "failed", "open", "mean h", "p95 h"):
        table.add_column(col, justify="right", min_width=len(col))
    for p in s.phases:
        table.add_row(p.workflow_id, str(p.entered), str(p.completed), str(p.cancelled),
                      str(p.failed), str(p.open), hours(p.mean_hours), hours(p.p95_hours))
    done = ", ".join(f"{k} {v:,}" for k, v in sorted(s.completions.items()))
    table.caption = (f"{s.deals}/{s.deals_planned} deals opened, {s.leads} leads; "
                     f"completions: {done}; SLA breaches {s.sla_breaches:,}; "
                     f"{s.events:,} events; incidents open {s.incidents}")
    return table
