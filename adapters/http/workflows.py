"""Workflow endpoints: register (versioned, idempotent), list, show, metrics.

Registering changes what every new case runs -- a one-task copy of a spec would skip
its approvals -- so it needs the `manage_workflows` permission (roles.yaml; the local
operator of open mode has every permission). Reading needs none.
"""

from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import Response

from engine import SpecError, WorkflowSpec, parse_duration
from engine.spec import SpecDecodeError

from .api import Query, api
from .bodies import (
    Metrics,
    Registered,
    TaskCompliance,
    WorkflowDetail,
    WorkflowList,
    WorkflowMetrics,
    WorkflowSummary,
    WorkflowVersion,
)
from .codec import raw_body, respond, stamp
from .context import Context, ctx
from .errors import WORKFLOW_NOT_FOUND, ApiError, malformed
from .idempotency import idempotent

REGISTER_PERMISSION = "manage_workflows"

def resolve(c: Context, workflow_id: str, field: str = "workflow_id") -> str:
    """The spec id; the tutorial's `wf_lead_qualification` form is an alias. `field`
    is the name the request gave it (the `workflow` query parameter of the lists)."""
    known = {n.workflow_id for n in c.runtime.workflows()}
    if workflow_id in known:
        return workflow_id
    if workflow_id.startswith("wf_"):
        alias = workflow_id[3:].replace("_", "-")
        if alias in known:
            return alias
    raise ApiError(404, WORKFLOW_NOT_FOUND, f"workflow {workflow_id!r} is not registered",
                   [(field, f"unknown; registered: {', '.join(sorted(known))}")])


@api.route("POST", "/workflows", "Register a workflow spec (JSON or YAML body)", Registered,
           body=WorkflowSpec, status=201, also=(200,), errors=(400, 403, 422))
@idempotent
async def register_workflow(request: Request) -> Response:
    c = ctx(request)
    # Before the spec is decoded (with an Idempotency-Key, the wrapper has read the
    # body already, and a refusal is the key's stored answer like any other).
    c.require(c.who(request), REGISTER_PERMISSION)
    body = await raw_body(request)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise malformed("body", "not UTF-8 text") from None
    if not text.strip():
        raise malformed("body", "empty: send a workflow spec (JSON or YAML)")
    try:
        reg = await c.registry.register(text, c.runtime.clock.now())
    except SpecDecodeError as exc:
        raise ApiError(422, 2000, f"not a workflow spec: {exc}",
                       [(exc.path or "body", exc.problem)]) from None
    except SpecError as exc:
        raise ApiError(422, exc.code, exc.message,
                       [(p.path, p.problem) for p in exc.problems]) from None
    except RecursionError:
        raise malformed("body", "nested too deeply") from None
    net = reg.net
    return respond(Registered(net.workflow_id, net.version, reg.created, reg.digest,
                              reg.warnings), 201 if reg.created else 200)


@api.route("GET", "/workflows", "List the registered workflows (latest versions)",
           WorkflowList, errors=())
async def list_workflows(request: Request) -> Response:
    c = ctx(request)
    c.who(request)
    nets = sorted(c.runtime.workflows(), key=lambda n: n.workflow_id)
    return respond(WorkflowList([
        WorkflowSummary(n.workflow_id, n.spec.name, n.version, n.spec.description,
                        [t.id for t in n.tasks]) for n in nets]))


@api.route("GET", "/workflows/{workflow_id}", "A workflow: its spec and versions",
           WorkflowDetail)
async def show_workflow(request: Request) -> Response:
    c = ctx(request)
    c.who(request)
    wid = resolve(c, request.path_params["workflow_id"])
    net = c.runtime.net(wid)
    versions = [WorkflowVersion(r.version, r.digest, stamp(r.registered_at))
                for r in c.registry.versions(wid)]
    return respond(WorkflowDetail(wid, net.spec.name, net.version, versions,
                                  c.registry.document(wid, net.version)))


@api.route("GET", "/workflows/{workflow_id}/metrics",
           "Cases, cycle times and SLO compliance of a workflow over a time range",
           WorkflowMetrics, query=[Query("time_range", "how far back: 30m, 24h, 7d, ...")])
async def workflow_metrics(request: Request) -> Response:
    c = ctx(request)
    c.who(request)
    wid = resolve(c, request.path_params["workflow_id"])
    rng = request.query_params.get("time_range", "24h")
    try:
        span = parse_duration(rng)
    except ValueError as exc:
        raise malformed("time_range", str(exc)) from None
    now = c.runtime.clock.now()
    rows = await c.store.phases(wid, now - span)
    count = {"completed": 0, "failed": 0, "cancelled": 0}
    hours = []
    for entered, left, outcome in rows:
        if outcome in count:
            count[outcome] += 1
        if outcome == "completed" and left is not None:
            hours.append((left - entered) / 3600.0)
    hours.sort()
    slo = c.slas.slo(wid, None) if c.slas is not None else None
    target = slo.target_hours if slo is not None else None
    m = Metrics(
        cases_created=len(rows), cases_completed=count["completed"],
        cases_failed=count["failed"], cases_cancelled=count["cancelled"],
        cases_active=sum(1 for r in rows if r[2] is None),
        avg_duration_hours=round(sum(hours) / len(hours), 3) if hours else None,
        p95_duration_hours=round(_p95(hours), 3) if hours else None,
        slo_target_hours=target,
        slo_compliance_percent=round(100.0 * sum(h <= target for h in hours) / len(hours), 1)
        if hours and target is not None else None)
    return respond(WorkflowMetrics(wid, rng, m, await _task_compliance(c, wid, now - span,
                                                                      now)))


async def _task_compliance(c: Context, wid: str, since: float, now: float,
                           ) -> list[TaskCompliance]:
    """Each task of the workflow with an SLO: its items offered in the range, measured
    from offered to completed against the target; open items are counted apart."""
    if c.slas is None or c.monitor is None:
        return []
    await c.monitor.catch_up()
    out = []
    for t in c.runtime.net(wid).tasks:
        slo = c.slas.slo(wid, t.id)
        if slo is None:
            continue
        done, still_open = [], []
        for o in c.monitor.observations(wid, t.id, since):
            if o.closed_at is None:
                still_open.append(o.hours(now))
            elif o.outcome == "completed":
                done.append(o.hours(now))
        done.sort()
        within = sum(h <= slo.target_hours for h in done)
        breaches = sum(1 for b in c.monitor.breaches
                       if b.workflow_id == wid and b.task == t.id and b.at >= since)
        out.append(TaskCompliance(
            t.id, slo.target_hours, slo.alert, round(100.0 * slo.compliance_target, 1),
            len(done), within, round(100.0 * within / len(done), 1) if done else None,
            round(_p95(done), 3) if done else None, len(still_open),
            sum(h > slo.target_hours for h in still_open), breaches))
    return out


def _p95(sorted_hours: list[float]) -> float:
    return sorted_hours[max(0, math.ceil(0.95 * len(sorted_hours)) - 1)]
