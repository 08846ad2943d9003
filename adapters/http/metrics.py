"""`GET /metrics`: the engine in Prometheus' text format (prometheus-client).

Theory of operation
-------------------
Each app has its own `CollectorRegistry` (tests build many apps in one process; the
global registry would mix them). It holds three things:

- `Latency`, the command latency histogram, fed by `CommandTimer`, a pure ASGI
  middleware around every POST/PUT/PATCH/DELETE under /api/v1: from the request
  reaching the app to the response starting -- which for a command is after its events
  are committed, since a handler answers only once the runtime acknowledged. Timing at
  the HTTP edge rather than inside the runtime keeps actors/ untouched (no port, not
  even an `is None` check per command), measures what a client waits for (decode,
  authorization, idempotency, actor, group commit, encode) and labels by the route
  template, which the runtime does not know. Per command it costs two clock reads, a
  dict probe, a bisect and two additions; requests that are not commands pay one
  comparison or two. prometheus-client's own Histogram takes a lock per bucket and
  loops over the bounds in Python on every observe -- several times the cost, for
  threads this server does not have (one event loop writes and scrapes) -- so the
  counts are plain numbers, made cumulative at scrape time.
- `State`, a custom collector for everything that is state rather than a stream of
  observations. It is gathered at scrape time, never on the command path:
  * cases by workflow and state -- the phases projection, as `/api/v1/stats` counts
    them (a deal counts in every workflow it passed through);
  * the outbox backlog and dead letters -- pending/claimed/dead rows, a range of the
    (state, next_at) index; delivered rows, which only grow, are not counted;
  * recommendations by workflow, type and status -- the MAPE-K loop's memory, as of its
    last cycle (a scrape does not start an analysis);
  * task completions and SLA breaches raised (counters) and breaches still open -- from
    the Monitor, which tails the event log off the hot path (DESIGN: nothing on the hot
    path that can be done later from the event stream). A scrape folds only the appends
    committed since the last one and the observations closed since then. Because the
    Monitor rebuilds itself from the log at start, these counters are *rebuilt from the
    store*: after a restart they continue from the same totals rather than from zero.
    Imported history (source "import") is not this engine's work and is not counted.

- `GcPauses`, the garbage collector's pauses by generation (a `gc.callbacks` entry the
  app's lifespan installs while it serves): the whole process stands still through
  each, so on a large history a full collection is latency every command may meet
  and no other series shows apart. Beside it the collector's thresholds by generation
  (`caseloop serve` paces young collections: adapters/collector.py), which say how
  often each kind of pause comes.

The histograms alone are process-lifetime (a restart starts them at zero; Prometheus'
`rate()` and `histogram_quantile()` handle the reset).

Like `/health`, `/metrics` asks for no principal in either auth mode: a scraper carries
no user token, and the metrics hold no people, case ids or case data -- only workflow,
task and route names and counts.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import itertools
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any, get_args

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mapek.knowledge import Status

from .api import api
from .context import Context, ctx
from .stats import case_counts

CASE_STATES = ("active", "completed", "cancelled", "failed")
REC_STATUSES: tuple[str, ...] = get_args(Status)
BACKLOG_STATES = ("pending", "claimed", "dead")  # not delivered: an index range each
COMMANDS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_API = api.prefix + "/"
# Commands are a group commit away from their answer: milliseconds, seconds when the
# disk or a lock stalls. Finer than prometheus-client's defaults at the low end.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)

_BACKLOG = (f"SELECT state, count(*) FROM outbox WHERE state IN"
            f" ({', '.join('?' * len(BACKLOG_STATES))}) GROUP BY state")


class Latency(Collector):
    """Command latency by (method, route template, status class): per series the count
    of each bucket (the last one past every bound: +Inf) and the sum of seconds."""

    NAME = "caseloop_command_duration_seconds"
    LABELS = ("method", "route", "code")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self._le = [floatToGoString(b) for b in bounds] + ["+Inf"]
        self.series: dict[tuple[str, str, str], list[float]] = {}  # counts..., sum

    def observe(self, key: tuple[str, str, str], seconds: float) -> None:
        counts = self.series.get(key)
        if counts is None:
            counts = self.series[key] = [0] * (len(self.bounds) + 2)
        counts[bisect.bisect_left(self.bounds, seconds)] += 1  # le: bound inclusive
        counts[-1] += seconds

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        fam = self._family()
        for key, counts in sorted(self.series.items()):
            cumulative = itertools.accumulate(counts[:-1])
            fam.add_metric(list(key), list(zip(self._le, cumulative, strict=True)), counts[-1])
        return [fam]

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(
            self.NAME, "Commands to /api/v1 (POST, PUT, PATCH, DELETE): seconds from the "
            "request reaching the app to its answer, which comes after the commit; by "
            "method, route template and status class", labels=self.LABELS)


# A young collection takes tenths of a millisecond at the interpreter's pace, 10-20 ms
# at `caseloop serve`'s (every 10,000 allocations: adapters/collector.py), a full one
# tens to hundreds (a served half year of history: 70-240 ms each, bench/README "The
# collector"), and the event loop stands still through each.
GC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
              0.25, 0.5, 1.0)


class GcPauses(Latency):
    """The garbage collector's pauses by generation: a `gc.callbacks` entry while
    installed. The process stands still through each (the event loop, and every thread
    that wants the GIL), so they are latency no command histogram shows apart. Beside
    them, the collector's thresholds (`caseloop_gc_threshold`): how often each comes."""

    NAME = "caseloop_gc_pause_seconds"
    LABELS = ("generation",)

    def __init__(self) -> None:
        super().__init__(GC_BUCKETS)
        self._began = 0.0
        self._keys = {g: (str(g),) for g in range(3)}

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:  # collections never overlap: the collector runs one at a time
            self.observe(self._keys[info["generation"]], time.perf_counter() - self._began)

    THRESHOLD = "caseloop_gc_threshold"

    def describe(self) -> Iterable[Metric]:
        return [self._family(), self._thresholds()]

    def collect(self) -> Iterable[Metric]:
        return [*super().collect(), self._thresholds()]

    def _thresholds(self) -> GaugeMetricFamily:
        fam = GaugeMetricFamily(
            self.THRESHOLD, "The collector's thresholds: generation 0 is collected after "
            "this many tracked allocations (net of frees), an older one after this many "
            "collections of the one below", labels=self.LABELS)
        for generation, threshold in enumerate(gc.get_threshold()):
            fam.add_metric([str(generation)], threshold)
        return fam

    def install(self) -> None:
        gc.callbacks.append(self)

    def uninstall(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self)

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(
            self.NAME, "Garbage collections: seconds the process stood still for each, "
            "event loop included; by generation (2: a full collection)", labels=self.LABELS)


class CommandTimer:
    """Pure ASGI middleware (no BaseHTTPMiddleware: that costs a task and a stream per
    request) timing commands to the API into `Latency`."""

    def __init__(self, app: ASGIApp, latency: Latency) -> None:
        self.app = app
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] not in COMMANDS
                or not scope["path"].startswith(_API)):
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        answered = False

        async def timed(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = True
                self._observe(scope, message["status"], time.perf_counter() - began)
            await send(message)

        try:
            await self.app(scope, receive, timed)
        except Exception:
            # Answered 500 by the outer error middleware, which we do not see: count it
            # here so failing commands do not vanish from the histogram.
            if not answered:
                self._observe(scope, 500, time.perf_counter() - began)
            raise

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        if route is None:
            return  # no route matched: an arbitrary path must not become a label
        self.latency.observe((scope["method"], getattr(route, "path", "?"),
                              f"{status // 100}xx"), seconds)


class State(Collector):
    """The families of the scrape in progress (see the module docstring); `gather`
    reads the store and the Monitor, `collect` hands over what it found."""

    def __init__(self) -> None:
        self.families: list[Metric] = []
        # Running totals over the Monitor's append-only lists, with how far they were read.
        self._completed: Counter[tuple[str, str]] = Counter()
        self._closed_read = 0
        self._forgotten = 0  # the Monitor's `forgotten` that _closed_read is valid for
        self._breaches: Counter[tuple[str, str]] = Counter()
        self._breaches_read = 0
        self._unresolved: list[Any] = []  # Monitor Breach records not resolved yet

    def describe(self) -> Iterable[Metric]:
        return _families({}, None, Counter(), Counter(), Counter(), Counter())

    def collect(self) -> Iterable[Metric]:
        return self.families

    async def gather(self, c: Context) -> list[Metric]:
        cases = await case_counts(c)  # as /api/v1/stats counts them: never disagreeing
        backlog = dict(await c.store.query(_BACKLOG, BACKLOG_STATES))
        recs: Counter[tuple[str, str, str]] = Counter(
            (r.workflow_id, r.type, r.status)
            for r in (c.mapek.recommendations.values() if c.mapek is not None else ()))
        m = c.monitor
        if m is None:
            return _families(cases, backlog, recs, Counter(), Counter(), Counter())
        await m.catch_up()
        # No await from here to the exposition: the cursors move once per scrape.
        if m.forgotten != self._forgotten:  # imports re-absorbed, or the log folded
            # again (a lost tail): positions moved, breaches are new records
            self._forgotten, self._closed_read = m.forgotten, 0
            self._completed.clear()  # counted again below: the same totals, or more
            self._breaches_read, self._unresolved = 0, []
            self._breaches.clear()
        new = m.closed[self._closed_read:]
        self._closed_read += len(new)
        self._completed.update((o.workflow_id, o.task) for o in new
                               if o.outcome == "completed" and o.source == "log")
        raised = m.breaches[self._breaches_read:]
        self._breaches_read += len(raised)
        self._breaches.update((b.workflow_id, _task(b)) for b in raised)
        self._unresolved = [b for b in (*self._unresolved, *raised) if b.resolved_at is None]
        # Empty (routing) tasks complete by firing: counted by the Monitor apart.
        completions = self._completed + m.fired
        still_open = Counter((b.workflow_id, _task(b)) for b in self._unresolved)
        return _families(cases, backlog, recs, completions, self._breaches, still_open)


def _task(breach: Any) -> str:
    """The breached task; "" for a case's stay in the workflow (item 0), whose breach
    the engine records under the workflow's id."""
    return "" if breach.item == 0 else breach.task  # type: ignore[no-any-return]


def _families(cases: dict[str, dict[str, int]], backlog: dict[str, int] | None,
              recs: Counter[tuple[str, str, str]], completions: Counter[tuple[str, str]],
              breaches: Counter[tuple[str, str]], still_open: Counter[tuple[str, str]],
              ) -> list[Metric]:
    case_g = GaugeMetricFamily(
        "caseloop_cases", "Cases by workflow and state (a deal counts in every workflow it "
        "passed through, as /api/v1/stats)", labels=["workflow", "state"])
    for wid, states in sorted(cases.items()):
        for state in CASE_STATES:
            case_g.add_metric([wid, state], states.get(state, 0))
    done = CounterMetricFamily(
        "caseloop_task_completions", "Tasks completed, by workflow and task, since the "
        "store began (rebuilt from the event log at start)", labels=["workflow", "task"])
    for (wid, task), n in sorted(completions.items()):
        done.add_metric([wid, task], n)
    raised = CounterMetricFamily(
        "caseloop_sla_breaches", "SLA breaches raised, by workflow and task (task \"\": the "
        "case's stay in the workflow), since the store began", labels=["workflow", "task"])
    for (wid, task), n in sorted(breaches.items()):
        raised.add_metric([wid, task], n)
    open_g = GaugeMetricFamily(
        "caseloop_sla_breaches_open", "SLA breaches not resolved yet (their item or stay "
        "still open)", labels=["workflow", "task"])
    for wid, task in sorted(breaches):  # every breached task: 0 once all are resolved
        open_g.add_metric([wid, task], still_open.get((wid, task), 0))
    outbox = GaugeMetricFamily(
        "caseloop_outbox_notifications", "Notifications not delivered, by state (pending "
        "and claimed: the backlog; dead: dead letters, waiting for a retry by hand)",
        labels=["state"])
    if backlog is not None:  # None: describe(), names and types only
        for state in BACKLOG_STATES:
            outbox.add_metric([state], backlog.get(state, 0))
    rec_g = GaugeMetricFamily(
        "caseloop_recommendations", "MAPE-K recommendations by workflow, type and status, "
        "as of the loop's last cycle", labels=["workflow", "type", "status"])
    for wid, kind in sorted({(w, k) for w, k, _ in recs}):
        for status in REC_STATUSES:
            rec_g.add_metric([wid, kind, status], recs.get((wid, kind, status), 0))
    return [case_g, done, raised, open_g, outbox, rec_g]


class Metrics:
    """One app's registry, its command timer and its `/metrics` endpoint."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Latency()
        self.state = State()
        self.gc_pauses = GcPauses()  # installed by the app's lifespan while it serves
        self.registry.register(self.latency)
        self.registry.register(self.state)
        self.registry.register(self.gc_pauses)

    def timer(self, app: ASGIApp) -> CommandTimer:
        """The middleware factory: `Starlette(middleware=[Middleware(m.timer)])`."""
        return CommandTimer(app, self.latency)

    async def scrape(self, request: Request) -> Response:
        families = await self.state.gather(ctx(request))
        # Synchronous from here: no other scrape can swap the families in between.
        self.state.families = families
        try:
            body = generate_latest(self.registry)
        finally:
            self.state.families = []
        return Response(body, media_type=CONTENT_TYPE_LATEST)
