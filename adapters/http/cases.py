"""Case endpoints: create, list, show, history, claim, complete, cancel.

A completion is one actor command: the authority check and the engine's `complete`
run together against the case as it is, and the reply is sent after COMMIT.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from actors.actions import AWAITING
from actors.runtime import CaseNotFound, WorkflowNotFound
from adapters.people import OPERATOR, authorize
from engine import AlreadyDone, Case, EngineError, InsufficientAuthority, UnknownTask
from engine.net import AUTOMATIC

from .api import Query, api
from .bodies import (
    CancelCase,
    CaseList,
    CaseSignal,
    CaseSummary,
    CaseView,
    CompleteTask,
    CreateCase,
    History,
    StartTask,
)
from .codec import iso, parse_int, parse_time, read_body, respond, stamp
from .context import Context, ctx
from .errors import malformed
from .idempotency import idempotent
from .views import case_view, history_events
from .workflows import resolve

CASE_ERRORS = (400, 403, 404, 409, 422)
# Who may start a case of a workflow entered by hand-over (a deal moved in from another
# system): those who may change the workflows themselves.
DIRECT_ENTRY = "manage_workflows"


class NoWaitingWork(EngineError):
    """A signal for which the case has no open work item and no trigger (2003)."""

    code = 2003
    kind = "conflict"


async def tell_task(request: Request, command: Any) -> Case:
    """Run a claim or completion naming a task by its id. A task the case's current
    workflow does not have, but one it was handed on from does, is work the case has
    left behind (done, or withdrawn by a rejection): 409, like any second completion
    -- a client retrying a completion that raced the hand-on must not read "no such
    task" (404) and think its URL wrong."""
    c = ctx(request)
    case_id, task = request.path_params["case_id"], request.path_params["task"]
    try:
        return await c.runtime.tell(case_id, command)  # type: ignore[no-any-return]
    except UnknownTask as exc:
        if exc.field != "task":
            raise
        await _left_behind(c, case_id, task, "task", by_action=False)
        raise


async def _left_behind(c: Context, case_id: str, name: str, field: str, *,
                       by_action: bool) -> None:
    """Refuse with 3004 when a workflow the case has left had task `name` (or, with
    `by_action`, a task running action `name`): its work is behind the case."""
    left = await c.store.query(
        "SELECT workflow_id, version FROM phases WHERE case_id = ? AND left_at IS NOT"
        " NULL ORDER BY entered_at DESC", (case_id,))
    for workflow_id, version in left:
        try:
            net = c.runtime.net(workflow_id, version)
        except WorkflowNotFound:
            continue
        if name in net.task_index or (by_action and any(t.action == name
                                                        for t in net.tasks)):
            raise AlreadyDone(f"case {case_id!r} has left {workflow_id!r}, whose task "
                              f"{name!r} this is", field=field) from None


@api.route("POST", "/workflows/{workflow_id}/cases", "Start a case of a workflow", CaseView,
           body=CreateCase, status=201, errors=CASE_ERRORS)
@idempotent
async def create_case(request: Request) -> Response:
    c = ctx(request)
    user = c.who(request)
    wid = resolve(c, request.path_params["workflow_id"])
    if c.runtime.net(wid).spec.entry == "hand_on" and not c.directory.may(user, DIRECT_ENTRY):
        raise InsufficientAuthority(
            f"cases of {wid!r} begin by hand-over from another workflow (its spec's "
            f"entry); starting one directly needs the {DIRECT_ENTRY} permission",
            field="workflow_id")
    body = await read_body(request, CreateCase)
    if body.case_id is not None and not body.case_id.strip("."):
        # "." and ".." fit the pattern, but every client resolves them out of a URL
        # (/cases/../tasks/X/complete is /tasks/X/complete): a case no client, the
        # dashboard or curl can reach, whose work sits in worklists for good.
        raise malformed("case_id", "not only dots: . and .. are path steps in a URL")
    key = getattr(request.state, "idempotency_key", None)
    # With an Idempotency-Key the generated id follows from it: a retry after a crash
    # between the commit and the stored answer meets the case (409), never a twin.
    case_id = body.case_id or ("case_" + (hashlib.sha256(key.encode()).hexdigest()[:16]
                                          if key else secrets.token_hex(8)))
    case = await c.runtime.create(wid, case_id, body.data)
    return respond(case_view(case), 201)


@api.route("GET", "/cases", "List cases, newest first (cursor pagination)", CaseList,
           errors=(400,), query=[
               Query("workflow", "cases that passed through this workflow"),
               Query("state", "active | completed | cancelled | failed"),
               Query("created_after", "ISO 8601 time", format="date-time"),
               Query("created_before", "ISO 8601 time", format="date-time"),
               Query("limit", "page size, 1..1000 (default 100)", type="integer"),
               Query("cursor", "next_cursor of the previous page")])
async def list_cases(request: Request) -> Response:
    c = ctx(request)
    c.who(request)
    q = request.query_params
    wid = q.get("workflow")
    if wid is not None:
        wid = resolve(c, wid, "workflow")
    state = q.get("state")
    if state is not None and state not in ("active", "completed", "cancelled", "failed"):
        raise malformed("state", "one of active, completed, cancelled, failed")
    limit = parse_int("limit", q.get("limit"), 100, 1, 1000)
    after = _cursor(q.get("cursor"))
    rows = await c.store.list_cases(
        workflow=wid, state=state, created_after=parse_time("created_after",
                                                            q.get("created_after")),
        created_before=parse_time("created_before", q.get("created_before")), after=after,
        limit=limit + 1)
    nxt = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        nxt = base64.urlsafe_b64encode(msgspec.json.encode([last.created_at, last.case_id]
                                                          )).decode()
    return respond(CaseList([CaseSummary(r.case_id, r.workflow_id, r.workflow_version,
                                         r.state, stamp(r.created_at),
                                         stamp(r.updated_at), iso(r.closed_at))
                             for r in rows], nxt))


def _cursor(raw: str | None) -> tuple[float, str] | None:
    if raw is None:
        return None
    try:
        t, cid = msgspec.json.decode(base64.urlsafe_b64decode(raw.encode()),
                                     type=tuple[float, str])
    except (ValueError, msgspec.DecodeError):
        raise malformed("cursor", "not a cursor this server gave out") from None
    return t, cid


@api.route("GET", "/cases/{case_id}", "A case: state, enabled tasks, open work items, data",
           CaseView)
async def show_case(request: Request) -> Response:
    c = ctx(request)
    c.who(request)
    return respond(case_view(await c.runtime.get(request.path_params["case_id"])))


@api.route("GET", "/cases/{case_id}/history", "Every event of a case, in order", History)
async def case_history(request: Request) -> Response:
    c = ctx(request)
    c.who(request)
    case_id = request.path_params["case_id"]
    events = await c.store.events(case_id)
    if not events:
        raise CaseNotFound(f"case {case_id!r} not found", field="case_id")
    out, workflow = history_events(events)
    return respond(History(case_id, workflow, out))


@api.route("POST", "/cases/{case_id}/tasks/{task}/start",
           "Claim a task's work item (it is then yours to complete)", CaseView, body=StartTask,
           errors=CASE_ERRORS)
@idempotent
async def start_task(request: Request) -> Response:
    c = ctx(request)
    c.who(request)  # authenticated before anything is read
    body = await read_body(request, StartTask)
    user = c.who(request, body.started_by)
    task = request.path_params["task"]
    clock, directory = c.runtime.clock, c.directory

    def claim(case: Case) -> list[Any]:
        authorize(directory, user, case, task, None, "started_by")
        return case.start(task, clock.now(), None if user == OPERATOR else user)

    case = await tell_task(request, claim)
    return respond(case_view(case))


@api.route("POST", "/cases/{case_id}/tasks/{task}/complete",
           "Complete a task with a result and output data", CaseView, body=CompleteTask,
           errors=CASE_ERRORS)
@idempotent
async def complete_task(request: Request) -> Response:
    c = ctx(request)
    c.who(request)  # authenticated before anything is read
    body = await read_body(request, CompleteTask)
    user = c.who(request, body.completed_by)
    task = request.path_params["task"]
    output = body.output_data
    if body.checklist:
        output = {**output, "checklist": body.checklist}
    clock, directory, result = c.runtime.clock, c.directory, body.result

    def complete(case: Case) -> list[Any]:
        authorize(directory, user, case, task, output, result=result)
        return case.complete(task, clock.now(), result, output, user)

    case = await tell_task(request, complete)
    return respond(case_view(case))


@api.route("POST", "/cases/{case_id}/signals/{name}",
           "A signal from another system: completes the case's open work item of task "
           "(or action) `name` -- an e-signature or payment callback: a task that accepts "
           "signals, or an action waiting for its callback -- or puts a token on trigger "
           "condition `name`", CaseView, body=CaseSignal, errors=CASE_ERRORS)
@idempotent
async def signal_case(request: Request) -> Response:
    c = ctx(request)
    user = c.who(request)
    # Integrations are trusted with a permission, not with a role's approval limits:
    # the callback reports what happened elsewhere (the customer signed, money arrived).
    c.require(user, "send_signals")
    body = await read_body(request, CaseSignal)
    name, now = request.path_params["name"], c.runtime.clock.now
    by = f"signal:{name}" if user == OPERATOR else user

    def deliver(case: Case) -> list[Any]:
        tasks = case.net.tasks
        for it in case.work_items():
            t = tasks[it.task]
            if (t.id == name or t.action == name) and it.parent < 0 and it.state != "failed":
                # A signal is another system's word: for a task the spec says takes one,
                # or for an action that hands the work to another system (the
                # e-signature's webhook) -- handed over already, or still in its POST
                # when a quick system answers. An action that runs here (ICP scoring,
                # assignment) decides its own result.
                automatic = t.kind == AUTOMATIC
                if not (t.accepts_signal or (automatic and (
                        (it.by or "").startswith(AWAITING)
                        or c.runtime.actions.awaits_callback(t.action)))):
                    raise InsufficientAuthority(
                        f"task {t.id!r} is done here by its action {t.action!r}, which is "
                        "waiting for no callback" if automatic else
                        f"task {t.id!r} is completed by a person of role {t.role!r}, not "
                        "by a signal (the spec's accepts_signal)", field="name")
                case.check_output(it.id, body.output_data)
                return case.complete(it.id, now(), body.result, body.output_data, by)
        if name in case.net.cond_index:
            return case.signal(name, now())  # refused unless it is a trigger condition
        for t in tasks:
            # A callback sent again (the billing system retrying after a timeout) for
            # work already done: 3004, as for a second completion, not "no such work".
            if (t.id == name or t.action == name) and case.completed_for_good(t.idx):
                raise AlreadyDone(f"task {t.id!r} of case {case.case_id!r} is already "
                                  "completed", field="name")
        raise NoWaitingWork(f"case {case.case_id!r} has no open work item or trigger "
                            f"named {name!r}", field="name")

    case_id = request.path_params["case_id"]
    try:
        case = await c.runtime.tell(case_id, deliver)
    except NoWaitingWork:
        await _left_behind(c, case_id, name, "name", by_action=True)
        raise
    return respond(case_view(case))


@api.route("POST", "/cases/{case_id}/cancel", "Cancel a case and its open work", CaseView,
           body=CancelCase, errors=CASE_ERRORS)
@idempotent
async def cancel_case(request: Request) -> Response:
    c = ctx(request)
    user = c.who(request)
    body = await read_body(request, CancelCase)
    c.require(user, "cancel_cases")
    case = await c.runtime.cancel(request.path_params["case_id"], body.reason)
    return respond(case_view(case))
