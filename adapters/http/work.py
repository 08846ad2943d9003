"""People's work: worklists, and the incidents of automatic tasks that gave up."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from actors.ports import ItemRow
from actors.runtime import WorkflowNotFound
from adapters.people import VIEW_ALL, offered_to
from engine import EngineError

from .api import Query, api
from .bodies import CaseView, Incidents, IncidentView, RetryIncident, Worklist, WorklistItem
from .codec import iso, parse_int, read_body, respond, stamp
from .context import Context, ctx
from .errors import ApiError, malformed
from .idempotency import idempotent
from .views import case_view

WORKLIST_LIMIT = 500  # items of a worklist, oldest first (`truncated` says there are more)


async def open_work(c: Context, user: str | None, roles: list[str] | None, now: float,
                    limit: int) -> tuple[list[tuple[ItemRow, str]], bool]:
    """The oldest `limit` open items of a worklist, and whether there are more.

    A person (`user`) is offered only the unclaimed items they could complete
    (adapters.people.offered_to): a worklist is where work is claimed, and a claim of
    an approval beyond one's limit is refused, so offering it would only show a sales
    manager the 600K deals his director and the CFO are there for (they see them, as
    does the role's own queue, `user` None). Their own claims stay, whatever the case
    data has become since: nobody else is offered them. The store is read page by page
    so that what is left out neither takes the place of work that is theirs nor marks
    the list as cut short."""
    kept: list[tuple[ItemRow, str]] = []
    after = None
    # Loading a case costs ~0.5 ms the first time (a /today of thousands of items after
    # a restart: seconds), so it is loaded only where a limit could leave the item out:
    # not for someone no limit binds (the CFO), nor for a task with no authority terms
    # (most of them), when the person holds the item's role.
    held = c.directory.roles_of(user) if user is not None else set()
    unlimited = user is not None and c.directory.unlimited(user)
    while True:
        rows = await c.store.worklist(user=user, roles=roles, now=now, limit=limit + 1,
                                      after=after)
        for row in rows:
            r, wid = row
            if (user is None or r.assignee == user
                    or (r.role in held and (unlimited or not _limited(c, wid, r.task)))
                    or await _offered(c, user, r)):
                kept.append(row)
                if len(kept) > limit:
                    return kept[:limit], True
        if len(rows) <= limit:
            return kept, False
        last = rows[-1][0]
        after = (last.enabled_at, last.case_id, last.item)


def _limited(c: Context, workflow_id: str, task: str) -> bool:
    """Whether the task signs off a figure (authority terms) in the workflow's current
    version; unknown (a version without the task): assumed so, the case decides."""
    try:
        net = c.runtime.net(workflow_id)
        return bool(net.tasks[net.task_index[task]].authority)
    except (WorkflowNotFound, KeyError):
        return True


async def _offered(c: Context, user: str, r: ItemRow) -> bool:
    try:
        case = await c.runtime.get(r.case_id)
    except EngineError:
        # A case that cannot be loaded stays listed, as it was before worklists read
        # cases: its completion is still checked, and one bad case must not take
        # everyone's worklist down with it.
        return True
    return offered_to(c.directory, user, case, r.item)


@api.route("GET", "/worklist",
           "Open human work items: claimed by a person, or offered to a role", Worklist,
           errors=(400, 403), query=[Query("user", "a person: their claimed items and the "
                                            "unclaimed items of their roles that they "
                                            "could complete (within their authority); "
                                            "default: whoever asks, unless a role is "
                                            "named (everyone's for the local operator "
                                            "and the view_all_work permission)"),
                                      Query("role", "a role: its unclaimed items")])
async def worklist(request: Request) -> Response:
    c = ctx(request)
    asker = c.who(request)
    user, role = request.query_params.get("user"), request.query_params.get("role")
    field = "user"
    if user is None and role is None and not c.directory.may(asker, VIEW_ALL):
        # A person's worklist is their own unless they name another's (or a role);
        # everyone's for the local operator and those who may see all work.
        user, field = asker, "Authorization" if c.tokens else "X-Caseloop-User"
    roles = None
    if role is not None:
        if role not in c.directory.roles:
            raise malformed("role", f"unknown role {role!r}")
        c.directory.require_sees_queue(asker, role)
        roles = [role]
    if user is not None:
        if c.directory.person(user) is None:
            raise malformed(field, f"unknown person {user!r} (specs/roles.yaml)")
        c.directory.require_sees_work(asker, user)
        roles = sorted(c.directory.roles_of(user)) if roles is None else roles
    rows, truncated = await open_work(c, user, roles, c.runtime.clock.now(), WORKLIST_LIMIT)
    return respond(Worklist([
        WorklistItem(r.case_id, wid, r.item, r.task, r.role, r.state, r.assignee,
                     stamp(r.enabled_at), iso(r.due)) for r, wid in rows], truncated))


@api.route("GET", "/incidents",
           "Work that failed: automatic tasks after their last retry, timed-out approvals",
           Incidents, errors=())
async def incidents(request: Request) -> Response:
    c = ctx(request)
    c.who(request)
    return respond(Incidents([
        IncidentView(i.case_id, i.item, i.task, i.action, i.attempts, i.error, stamp(i.at))
        for i in c.runtime.incidents]))


@api.route("POST", "/incidents/{case_id}/{item}/retry",
           "Run a failed automatic task again", CaseView, body=RetryIncident,
           errors=(400, 403, 404, 409))
@idempotent
async def retry_incident(request: Request) -> Response:
    c = ctx(request)
    user = c.who(request)
    c.require(user, "retry_incidents")
    await read_body(request, RetryIncident)
    case_id = request.path_params["case_id"]
    item = parse_int("item", request.path_params["item"], 0, 1, 2**31)
    if not any(i.case_id == case_id and i.item == item for i in c.runtime.incidents):
        raise ApiError(404, 2003, f"no open incident for work item {item} of case "
                       f"{case_id!r}", [("item", "no incident")])
    return respond(case_view(await c.runtime.retry(case_id, item, user)))
