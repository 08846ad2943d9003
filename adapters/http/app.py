"""The Starlette application: routes, error handlers, and the lifespan that opens the
store, loads every registered workflow version, registers the shipped pipeline and
runs the case runtime for as long as the server runs."""

from __future__ import annotations

import contextlib
import pathlib
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import anyio
import msgspec
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from actors import ActionRegistry, Runtime, VirtualClock, WorkflowNotFound, placeholder_actions
from actors.assignment import least_loaded
from actors.icp import icp_action, load_profile
from adapters.channels import Channels, load_channels
from adapters.clock import SystemClock
from adapters.history import absorb_imported
from adapters.intake import start_intake
from adapters.integrations import load_integrations, register_integrations
from adapters.monitor_tail import monitor_tail, tails
from adapters.outbox import Outbox
from adapters.people import Directory, load_directory, load_tokens
from adapters.registry import Registry, workflow_files
from adapters.slas import SlaBook, load_slos
from adapters.sqlite_store import KnowledgeStore, SQLiteStore
from mapek.loop import LoopSettings, MapeK
from mapek.monitor import Monitor
from mapek.policy import PolicyBook
from mapek.routing import AssignmentMap
from mapek.twin import run_task_twin

# Imported for their @api.route declarations (hence F401).
from . import (  # noqa: F401
    cases,
    clock,
    dashboard,
    health,
    history,
    insights,
    live,
    outbox,
    recommendations,
    signals,
    stats,
    today,
    work,
    workflows,
)
from .api import api
from .codec import respond
from .context import Context
from .errors import HANDLERS
from .metrics import Metrics


@dataclass
class Settings:
    db: str = "caseloop.db"
    specs: str | None = "specs"  # the pipeline registered at start (None: nothing)
    roles: str | None = None  # default: roles.yaml in `specs`
    slos: str | None = None  # default: slos.yaml in `specs`
    icp: str | None = None  # ICP profile; default: icp.yaml in `specs` (none: placeholder)
    integrations: str | None = None  # default: integrations.yaml in `specs`
    channels: str | None = None  # notification channels; default: channels.yaml in `specs`
    tokens: str | None = None  # tokens file; none: open mode (missing or empty: refused)
    durability: str = "normal"
    writer: str | None = None  # the store's writer: thread | process (None: its default)
    # Where the Monitor folds the log: "process", a tail process of its own beside the
    # server (adapters.monitor_tail; a database in memory cannot be tailed: "loop"), or
    # "loop", in the server's event loop.
    monitor: str = "process"
    bench_route: bool = False  # mount POST /bench/bare (bench/http.py only)
    virtual_clock: float | None = None  # start time of a virtual clock (else the system's)
    mapek: LoopSettings = field(default_factory=LoopSettings)
    mapek_every: float = 30.0  # seconds between background MAPE-K cycles (at least)
    actions: ActionRegistry | None = None
    messages: list[str] = field(default_factory=list)  # what the start said


def _config(settings: Settings, attr: str, name: str) -> pathlib.Path | None:
    explicit = getattr(settings, attr)
    if explicit:
        return pathlib.Path(explicit)
    if settings.specs and (pathlib.Path(settings.specs) / name).exists():
        return pathlib.Path(settings.specs) / name
    return None


def check_config(s: Settings) -> None:
    """Read the config files the lifespan will read, raising what it would (a located
    ValueError, or OSError): `caseloop serve` calls this before uvicorn starts, which
    would report a failed start as a traceback. The tokens file is load_tokens' own."""
    roles = _config(s, "roles", "roles.yaml")
    if roles is not None:
        load_directory(roles)
    for attr, name, load in (("channels", "channels.yaml", load_channels),
                             ("slos", "slos.yaml", load_slos),
                             ("integrations", "integrations.yaml", load_integrations)):
        path = _config(s, attr, name)
        if path is not None:
            load(path)
    icp = _config(s, "icp", "icp.yaml")
    if icp is not None:
        load_profile(icp.read_text(encoding="utf-8"), str(icp))


def pipeline_actions(s: Settings, store: SQLiteStore, directory: Directory,
                     routing: PolicyBook | None = None) -> ActionRegistry:
    """The given registry, else the pipeline's actions: ICP scoring when a profile is
    found, least-loaded assignment over roles.yaml and the store's open work, and the
    integrations of integrations.yaml; the placeholders complete the rest at once.
    A bad config file stops the start with a located ValueError."""
    if s.actions is not None:
        return s.actions
    reg = placeholder_actions()
    icp = _config(s, "icp", "icp.yaml")
    if icp is not None:
        profile = load_profile(icp.read_text(encoding="utf-8"), str(icp))
        reg.register("icp_score", icp_action(profile))
        s.messages.append(f"icp_score: profile {icp}")
    reg.register("assign_least_loaded", least_loaded(directory.people_with_role, store,
                                                     routing))
    integrations = _config(s, "integrations", "integrations.yaml")
    if integrations is not None:
        s.messages += register_integrations(reg, load_integrations(integrations))
    return reg


def sla_book(s: Settings, directory: Directory, channels: set[str],
             escalations: PolicyBook | None = None) -> SlaBook | None:
    path = _config(s, "slos", "slos.yaml")
    if path is None:
        return None
    book = SlaBook(load_slos(path), directory, channels, escalations)
    s.messages.append(f"SLOs: {path}; breaches notified through "
                      f"{', '.join(book.channels) or 'no configured channel'}")
    return book


async def load_registry(s: Settings, store: SQLiteStore, rt: Runtime) -> Registry:
    """Every stored workflow version compiled into `rt`, then the specs in `s.specs`
    registered (a new or changed spec becomes a version; one some version already has
    is a no-op, so a version registered over HTTP since outlives the restart)."""
    registry = Registry(store, rt)
    await registry.load()
    if s.specs:
        for f in workflow_files(s.specs):
            reg = await registry.register(f.read_text(encoding="utf-8"), rt.clock.now(),
                                          at_start=True)
            if reg.created:
                s.messages.append(f"registered {reg.net.workflow_id} "
                                  f"v{reg.net.version} from {f}")
    return registry


def _channels(s: Settings) -> Channels:
    path = _config(s, "channels", "channels.yaml")
    if path is None:
        s.messages.append("outbox: no channels file (--channels): notifications are not sent")
        return Channels()
    channels = load_channels(path)
    s.messages.append(f"outbox: channels {path}: "
                      f"{', '.join(sorted(channels.configured())) or 'none usable'}")
    return channels


def _time_zone_of(directory: Directory) -> Callable[[str | None], str | None]:
    def zone(person: str | None) -> str | None:
        p = directory.people.get(person) if person else None
        return p.time_zone if p is not None else None
    return zone


def _role_of(rt: Runtime) -> Callable[[str, str], str | None]:
    def role(workflow_id: str, task: str) -> str | None:
        try:
            net = rt.net(workflow_id)
        except WorkflowNotFound:  # imported history: a workflow the runtime lacks
            return None
        i = net.task_index.get(task)
        return None if i is None else net.tasks[i].role
    return role


def _has_task(rt: Runtime, workflow_id: str, task: str) -> bool:
    """Is `task` a task of the current version of `workflow_id`?"""
    try:
        return task in rt.net(workflow_id).task_index
    except WorkflowNotFound:
        return False


def _target_of(slas: SlaBook | None) -> Callable[[str, str], float | None]:
    def target(workflow_id: str, task: str) -> float | None:
        t = slas.target(workflow_id, task) if slas is not None else None
        return None if t is None else t.target / 3600.0
    return target


# How often the Monitor takes what its tail process folded (or, folding in the loop,
# folds what the store handed on since: often enough that the store's queue of
# committed appends for it, 20 000, never overflows into reading them back), so that
# the metrics it counts stay current and the tail does not hoard what it folded.
FOLLOW_EVERY = 1.0


async def _follow(monitor: Monitor) -> None:
    while True:
        await anyio.sleep(FOLLOW_EVERY)
        try:
            await monitor.catch_up()
        except Exception as exc:  # the next one reads the log from where this stopped
            print(f"monitor: catch-up failed: {exc!r}", file=sys.stderr, flush=True)


async def bare(request: Request) -> Response:
    """The benchmark's peer: read the body, answer a small JSON, nothing else."""
    await request.body()
    return respond({"ok": True})


def create_app(settings: Settings | None = None) -> Starlette:
    s = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        roles = _config(s, "roles", "roles.yaml")
        directory = load_directory(roles) if roles else Directory()
        tokens = load_tokens(s.tokens, directory) if s.tokens else {}
        # Asked for token mode: falling back to open mode would let every request act
        # as the local operator.
        if s.tokens and not tokens:
            raise ValueError(f"{s.tokens}: the tokens file names no one "
                             "(caseloop token create USER --tokens FILE)")
        channels = _channels(s)
        async with SQLiteStore(s.db, durability=s.durability,  # type: ignore[arg-type]
                               writer=s.writer) as store, (  # type: ignore[arg-type]
                contextlib.AsyncExitStack()) as stack:
            clock = (SystemClock() if s.virtual_clock is None
                     else VirtualClock(s.virtual_clock))
            # The MAPE-K loop's policies, as they were: the runtime consults them for
            # every new work item (dispatch windows), assignment (routing) and SLA
            # deadline (escalations, through the SLA book).
            policies = PolicyBook()
            slas = sla_book(s, directory, channels.configured(), policies)
            rt = Runtime(store, clock, pipeline_actions(s, store, directory, policies),
                         slas=slas, dispatch=policies)
            registry = await load_registry(s, store, rt)
            # The outbox worker lives inside the runtime's lifetime: cancelled first at
            # shutdown, it hands back its claims while the store is still open.
            async with rt, anyio.create_task_group() as tg:
                if s.virtual_clock is not None:
                    # Virtual time moves deadline by deadline: a 1 s poll would be 86,400
                    # stops a simulated day. This process's own rows wake the worker.
                    channels = msgspec.structs.replace(channels, outbox=msgspec.structs.replace(
                        channels.outbox, poll=86_400.0))
                worker = Outbox(store, rt.clock, channels)
                store.on_notices = worker.wake
                tg.start_soon(worker.run)
                intake = await start_intake(store, rt, _config(s, "icp", "icp.yaml"))
                zone_of = _time_zone_of(directory)
                tail = (await stack.enter_async_context(monitor_tail(s.db))
                        if s.monitor == "process" and tails(s.db) else None)
                monitor = Monitor(store, role_of=_role_of(rt),
                                  time_zone_of=lambda p: zone_of(p) or "UTC", tail=tail)
                await absorb_imported(monitor, store)  # history imported before this start
                tg.start_soon(_follow, monitor)
                loop = MapeK(monitor, KnowledgeStore(store), policies, twin=run_task_twin,
                             now=rt.clock.now, time_zone_of=zone_of,
                             # a rollback is told to those SLA breaches are told to
                             notify=slas.policy_notices if slas is not None else None,
                             target_of=_target_of(slas),
                             settings=s.mapek,
                             slo_of=slas.terms if slas is not None else None,
                             escalate_to=slas.escalation_role if slas is not None else None,
                             assigned_at=AssignmentMap(rt.workflows),
                             has_task=lambda wf, task: _has_task(rt, wf, task),
                             # its planning and analyses beside the server, not under
                             # its GIL (mapek.offload)
                             offload=True)
                await loop.load()
                # Verification and auto-apply need no request: a cycle now and then
                # (the analysis runs in a worker process, off the event loop).
                tg.start_soon(loop.run, s.mapek_every)
                app.state.ctx = Context(store, rt, registry, directory, tokens, slas,
                                        outbox=worker, intake=intake, monitor=monitor,
                                        mapek=loop)
                s.messages.append(
                    f"caseloop: {len(rt.workflows())} workflows, store {s.db}, "
                    + ("token mode: requests need a bearer token" if tokens else
                       "open mode: requests act as the local operator unless they name "
                       "a person (X-Caseloop-User)"))
                for m in s.messages:
                    print(m, file=sys.stderr, flush=True)
                metrics.gc_pauses.install()
                try:
                    yield
                finally:
                    metrics.gc_pauses.uninstall()
                    store.on_notices = None
                    tg.cancel_scope.cancel()

    # Its own registry per app: tests build many apps in one process.
    metrics = Metrics()
    routes = [
        Route("/health", health.health),
        Route("/healthz", health.health),
        Route("/health/ready", health.ready),
        Route("/openapi.json", health.openapi),
        Route("/docs", health.docs),
        Route("/docs/{name}", health.docs_asset),
        Route("/metrics", metrics.scrape),
        *api.routes(),
        *dashboard.routes(),  # "/" and /static/...: after the API, shadowing nothing
    ]
    if s.bench_route:
        routes.append(Route("/bench/bare", bare, methods=["POST"]))
    return Starlette(routes=routes, exception_handlers=HANDLERS,  # type: ignore[arg-type]
                     middleware=[Middleware(metrics.timer)], lifespan=lifespan)
