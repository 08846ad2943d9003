"""The Starlette application: routes, error handlers, and the lifespan that opens the
store, loads every registered workflow version, registers the shipped pipeline and
runs the case runtime for as long as the server runs."""

from __future__ import annotations

import contextlib
import pathlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio
import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from actors import ActionRegistry, Runtime, VirtualClock, placeholder_actions
from actors.assignment import least_loaded
from actors.icp import icp_action, load_profile
from adapters.channels import Channels, load_channels
from adapters.clock import SystemClock
from adapters.intake import start_intake
from adapters.integrations import load_integrations, register_integrations
from adapters.outbox import Outbox
from adapters.people import Directory, load_directory, load_tokens
from adapters.registry import Registry, workflow_files
from adapters.slas import SlaBook, load_slos
from adapters.sqlite_store import SQLiteStore
from mapek.monitor import Monitor

# Imported for their @api.route declarations (hence F401).
from . import (  # noqa: F401
    cases,
    clock,
    health,
    outbox,
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


@dataclass
class Settings:
    db: str = "caseloop.db"
    specs: str | None = "specs"  # the pipeline registered at start (None: nothing)
    roles: str | None = None  # default: roles.yaml in `specs`
    slos: str | None = None  # default: slos.yaml in `specs`
    icp: str | None = None  # ICP profile; default: icp.yaml in `specs` (none: placeholder)
    integrations: str | None = None  # default: integrations.yaml in `specs`
    channels: str | None = None  # notification channels; default: channels.yaml in `specs`
    tokens: str | None = None  # tokens file; none (or empty): open mode
    durability: str = "normal"
    bench_route: bool = False  # mount POST /bench/bare (bench/http.py only)
    virtual_clock: float | None = None  # start time of a virtual clock (else the system's)
    actions: ActionRegistry | None = None
    messages: list[str] = field(default_factory=list)  # what the start said


def _config(settings: Settings, attr: str, name: str) -> pathlib.Path | None:
    explicit = getattr(settings, attr)
    if explicit:
        return pathlib.Path(explicit)
    if settings.specs and (pathlib.Path(settings.specs) / name).exists():
        return pathlib.Path(settings.specs) / name
    return None


def _actions(s: Settings, store: SQLiteStore, directory: Directory) -> ActionRegistry:
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
    reg.register("assign_least_loaded", least_loaded(directory.people_with_role, store))
    integrations = _config(s, "integrations", "integrations.yaml")
    if integrations is not None:
        s.messages += register_integrations(reg, load_integrations(integrations))
    return reg


def _sla_book(s: Settings, directory: Directory, channels: set[str]) -> SlaBook | None:
    path = _config(s, "slos", "slos.yaml")
    if path is None:
        return None
    book = SlaBook(load_slos(path), directory, channels)
    s.messages.append(f"SLOs: {path}; breaches notified through "
                      f"{', '.join(book.channels) or 'no configured channel'}")
    return book


def _channels(s: Settings) -> Channels:
    path = _config(s, "channels", "channels.yaml")
    if path is None:
        s.messages.append("outbox: no channels file (--channels): notifications are not sent")
        return Channels()
    channels = load_channels(path)
    s.messages.append(f"outbox: channels {path}: "
                      f"{', '.join(sorted(channels.configured())) or 'none usable'}")
    return channels


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
        channels = _channels(s)
        async with SQLiteStore(s.db, durability=s.durability) as store:  # type: ignore[arg-type]
            clock = (SystemClock() if s.virtual_clock is None
                     else VirtualClock(s.virtual_clock))
            slas = _sla_book(s, directory, channels.configured())
            rt = Runtime(store, clock, _actions(s, store, directory), slas=slas)
            registry = Registry(store, rt)
            await registry.load()
            if s.specs:
                for f in workflow_files(s.specs):
                    reg = await registry.register(f.read_text(encoding="utf-8"),
                                                  rt.clock.now())
                    if reg.created:
                        s.messages.append(f"registered {reg.net.workflow_id} "
                                          f"v{reg.net.version} from {f}")
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
                app.state.ctx = Context(store, rt, registry, directory, tokens, slas,
                                        outbox=worker, intake=intake, monitor=Monitor(store))
                s.messages.append(
                    f"caseloop: {len(rt.workflows())} workflows, store {s.db}, "
                    + ("token mode: requests need a bearer token" if tokens else
                       "open mode: requests act as the local operator unless they name "
                       "a person (X-Caseloop-User)"))
                for m in s.messages:
                    print(m, file=sys.stderr, flush=True)
                try:
                    yield
                finally:
                    store.on_notices = None
                    tg.cancel_scope.cancel()

    routes = [
        Route("/health", health.health),
        Route("/healthz", health.health),
        Route("/health/ready", health.ready),
        Route("/openapi.json", health.openapi),
        Route("/docs", health.docs),
        Route("/docs/{name}", health.docs_asset),
        *api.routes(),
    ]
    if s.bench_route:
        routes.append(Route("/bench/bare", bare, methods=["POST"]))
    return Starlette(routes=routes, exception_handlers=HANDLERS,  # type: ignore[arg-type]
                     lifespan=lifespan)
