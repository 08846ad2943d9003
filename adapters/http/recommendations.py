"""The MAPE-K loop over HTTP: recommendations (list, apply, roll back, reject) and the
policy history they write.

Reading recommendations first brings the loop's knowledge up to date (a cycle runs
when the event log grew since the last one; its analysis runs in a worker thread). A
request waits for that at most REFRESH_WITHIN seconds; past that it is answered with
the last cycle's recommendations, `current: false`, and the cycle goes on.
Changing a policy needs the `manage_policies` permission (roles.yaml).
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from mapek.analyze import Analysis
from mapek.knowledge import Recommendation as Rec
from mapek.loop import Refused
from mapek.policy import PolicyError, PolicyVersion

from .api import api
from .bodies import Recommendation, Recommendations, _Body, _Out
from .codec import read_body, respond, stamp
from .context import Context, ctx
from .errors import ApiError
from .idempotency import idempotent
from .workflows import resolve

RECOMMENDATION_NOT_FOUND = 2003  # as any unknown case or item the request names
# How long a request for the recommendations waits for a cycle over a grown history
# (a cycle over a year of deals takes seconds: bench/README, "a cycle at scale").
REFRESH_WITHIN = 10.0


class PolicyAction(_Body):
    """Optional: why (kept in the audit log)."""

    note: str = ""


class TaskPolicyOut(_Out):
    workflow_id: str
    task: str
    dispatch: dict[str, Any] | None
    prefer: list[str]
    avoid: list[str]
    escalation: dict[str, Any] | None
    assigned_at: str | None = None  # routing: the assignment that prefer/avoid act at


class PolicyVersionOut(_Out):
    version: int
    at: str
    reason: str
    based_on: int
    recommendation: str | None
    tasks: list[TaskPolicyOut]


class Policies(_Out):
    current_version: int
    current: PolicyVersionOut
    history: list[PolicyVersionOut]  # oldest first; version 0 is the default (no policy)


def recommendation(r: Rec) -> Recommendation:
    return Recommendation(
        r.id, r.type, r.description, r.confidence, r.estimated_improvement, r.status,
        r.task, r.estimated_improvement_hours, r.evidence,
        msgspec.to_builtins(r.change) if r.change is not None else {},
        r.verification, r.applied_version, stamp(r.created_at), stamp(r.updated_at))


def version(v: PolicyVersion) -> PolicyVersionOut:
    return PolicyVersionOut(
        v.version, stamp(v.at), v.reason, v.based_on, v.recommendation,
        [TaskPolicyOut(t.workflow_id, t.task, msgspec.to_builtins(t.dispatch),
                       list(t.prefer), list(t.avoid), msgspec.to_builtins(t.escalation),
                       t.assigned_at)
         for t in v.tasks])


def _loop(c: Context) -> Any:
    if c.mapek is None:
        raise ApiError(503, 9001, "the MAPE-K loop is not running", [("mapek", "absent")])
    return c.mapek


@api.route("GET", "/workflows/{workflow_id}/mape-k/recommendations",
           "Recommendations of the MAPE-K loop for a workflow (analysed afresh when the "
           "history changed; `current` false when that outlasted the request)",
           Recommendations)
async def list_recommendations(request: Request) -> Response:
    c = ctx(request)
    c.who(request)
    wid = resolve(c, request.path_params["workflow_id"])
    loop = _loop(c)
    current = await loop.refresh(REFRESH_WITHIN)
    return respond(Recommendations(wid, [recommendation(r) for r in loop.for_workflow(wid)],
                                   current,
                                   None if loop.cycled_at is None else stamp(loop.cycled_at)))


def _find(c: Context, request: Request) -> tuple[Any, str]:
    wid = resolve(c, request.path_params["workflow_id"])
    rid = request.path_params["rid"]
    loop = _loop(c)
    rec = loop.recommendations.get(rid)
    if rec is None or rec.workflow_id != wid:
        raise ApiError(404, RECOMMENDATION_NOT_FOUND,
                       f"no recommendation {rid!r} for workflow {wid!r}", [("rid", "unknown")])
    return loop, rid


@api.route("GET", "/workflows/{workflow_id}/mape-k/recommendations/{rid}",
           "One recommendation with its evidence", Recommendation)
async def show_recommendation(request: Request) -> Response:
    c = ctx(request)
    c.who(request)
    loop, rid = _find(c, request)
    return respond(recommendation(loop.get(rid)))


async def _act(request: Request, action: str) -> Response:
    c = ctx(request)
    user = c.who(request)
    c.require(user, "manage_policies")
    body = await read_body(request, PolicyAction)
    loop, rid = _find(c, request)
    try:
        if action == "apply":
            rec = await loop.apply(rid, user)
        elif action == "rollback":
            rec = await loop.rollback(rid, user, body.note)
        else:
            rec = await loop.reject(rid, user, body.note)
    except Refused as exc:
        reason = exc.problem or ("none: advice" if exc.field == "change"
                                 else loop.get(rid).status)
        raise ApiError(409, 2003, str(exc), [(exc.field, reason)]) from None
    except PolicyError as exc:
        raise ApiError(422, 2004, str(exc), [(exc.field, str(exc))]) from None
    return respond(recommendation(rec))


@api.route("POST", "/workflows/{workflow_id}/mape-k/recommendations/{rid}/apply",
           "Apply a recommendation: a new policy version the runtime uses for new work",
           Recommendation, body=PolicyAction, errors=(400, 403, 404, 409, 422))
@idempotent
async def apply_recommendation(request: Request) -> Response:
    return await _act(request, "apply")


@api.route("POST", "/workflows/{workflow_id}/mape-k/recommendations/{rid}/rollback",
           "Roll an applied recommendation back: the policy version before it returns",
           Recommendation, body=PolicyAction, errors=(400, 403, 404, 409))
@idempotent
async def rollback_recommendation(request: Request) -> Response:
    return await _act(request, "rollback")


@api.route("POST", "/workflows/{workflow_id}/mape-k/recommendations/{rid}/reject",
           "Reject a recommendation (it is not proposed again)", Recommendation,
           body=PolicyAction, errors=(400, 403, 404, 409))
@idempotent
async def reject_recommendation(request: Request) -> Response:
    return await _act(request, "reject")


@api.route("GET", "/policies",
           "The current dispatch, routing and escalation policy and its history",
           Policies, errors=(400,))
async def list_policies(request: Request) -> Response:
    c = ctx(request)
    c.who(request)
    book = _loop(c).book
    return respond(Policies(book.current.version, version(book.current),
                            [version(v) for v in book.history]))


@api.route("GET", "/workflows/{workflow_id}/mape-k/analysis",
           "The Analyze stage for a workflow: SLO compliance and percentiles, bottlenecks, "
           "dispatch-hour and assignee effects (with sample sizes, intervals, confidences), "
           "risk of SLO breach for open work", Analysis)
async def show_analysis(request: Request) -> Response:
    c = ctx(request)
    c.who(request)
    wid = resolve(c, request.path_params["workflow_id"])
    return respond(await _loop(c).analysis(wid))
