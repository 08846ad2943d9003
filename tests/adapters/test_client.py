"""The typed client (`adapters.client`) against a real `caseloop serve` subprocess.

Both `Client` and `AsyncClient` are driven end to end: registration and versions,
cases with cursor pagination, claim and complete as a person of specs/roles.yaml
(`user=` -> X-Caseloop-User), worklists, cancel, history, idempotency keys, and the
`ApiError` fields of refusals. A recording transport (the real httpx transport plus a
log) checks what the client puts on the wire: quoted path segments, headers, bodies.
Most tests share one server (module scope) and use their own workflow and case ids;
the token-mode test restarts its own server on the same db.
"""

from __future__ import annotations

import copy
import json
import pathlib
from typing import Any

import anyio
import httpx
import pytest
import yaml
from http_kit import Server, make_tokens

from adapters.client import ApiError, AsyncClient, Client

SARAH = "sarah.chen@acme.com"  # sdr
DAVID = "david.park@acme.com"  # sdr
MARCUS = "marcus.thompson@acme.com"  # sales_manager: may cancel cases
ODD_ID = "odd:case@x.y-1_Z"  # every character class the server's case ids allow
ODD_PATH = "odd%3Acase%40x.y-1_Z"


def review_spec(workflow_id: str) -> dict[str, Any]:
    """A small two-step workflow: an SDR drafts, a sales manager approves."""
    return {
        "id": workflow_id, "name": "Client test review", "version": 1,
        "data": {"required": ["title"], "properties": {"title": {"type": "string"}}},
        "tasks": [{"id": "Draft", "role": "sdr"}, {"id": "Approve", "role": "sales_manager"}],
        "flows": [{"from": "start", "to": "Draft"}, {"from": "Draft", "to": "Approve"},
                  {"from": "Approve", "to": "end"}],
    }


def with_finance_check(spec: dict[str, Any]) -> dict[str, Any]:
    """The same workflow, changed: finance checks between draft and approval."""
    out = copy.deepcopy(spec)
    out["tasks"].insert(1, {"id": "Check", "role": "finance_manager"})
    out["flows"] = [{"from": "start", "to": "Draft"}, {"from": "Draft", "to": "Check"},
                    {"from": "Check", "to": "Approve"}, {"from": "Approve", "to": "end"}]
    return out


class Recorder(httpx.BaseTransport):
    """The real transport, plus a log of (request, response) pairs."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.sent: list[tuple[httpx.Request, httpx.Response]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        response = self.inner.handle_request(request)
        self.sent.append((request, response))
        return response

    def close(self) -> None:
        self.inner.close()

    @property
    def last(self) -> tuple[httpx.Request, httpx.Response]:
        return self.sent[-1]


class AsyncRecorder(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: list[tuple[httpx.Request, httpx.Response]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        response = await self.inner.handle_async_request(request)
        self.sent.append((request, response))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def last(self) -> tuple[httpx.Request, httpx.Response]:
        return self.sent[-1]


@pytest.fixture(scope="module")
def url(module_server: Server) -> str:
    return module_server.url


def refusal(call: Any) -> ApiError:
    with pytest.raises(ApiError) as err:
        call()
    return err.value


# ------------------------------------------------------------------ registration
def test_register_is_idempotent_and_a_change_is_a_new_version(url: str) -> None:
    wid = "client-versions"
    spec = review_spec(wid)
    rec = Recorder()
    with Client(url, transport=rec) as api:
        first = api.register_workflow(spec)
        assert (first.workflow_id, first.version, first.created) == (wid, 1, True)
        request, response = rec.last
        assert response.status_code == 201
        assert request.headers["content-type"] == "application/json"
        assert json.loads(request.content) == spec

        # The same spec again, as YAML text this time: nothing new, 200, version 1.
        again = api.register_workflow(yaml.safe_dump(spec))
        request, response = rec.last
        assert request.headers["content-type"] == "application/yaml"
        assert response.status_code == 200
        assert (again.version, again.created, again.digest) == (1, False, first.digest)

        old = api.create_case(wid, {"title": "on v1"})
        assert old.workflow_version == 1

        changed = api.register_workflow(with_finance_check(spec))
        assert (changed.version, changed.created) == (2, True)
        assert rec.last[1].status_code == 201
        assert changed.digest != first.digest

        detail = api.workflow(wid)
        assert detail.version == 2
        assert [v.version for v in detail.versions] == [1, 2]
        listed = {w.workflow_id: w for w in api.workflows().workflows}
        assert listed[wid].version == 2
        assert listed[wid].tasks == ["Draft", "Check", "Approve"]

        new = api.create_case(wid, {"title": "on v2"})
        assert new.workflow_version == 2
        # Each case runs on the version it started with.
        assert api.case(old.case_id).workflow_version == 1
        assert api.complete_task(old.case_id, "Draft").enabled_tasks == ["Approve"]
        assert api.complete_task(new.case_id, "Draft").enabled_tasks == ["Check"]


# ------------------------------------------------------------------ listing
def test_cursor_pagination_sees_every_case_once_newest_first(url: str) -> None:
    wid = "client-pages"
    rec = Recorder()
    with Client(url, transport=rec) as api:
        api.register_workflow(review_spec(wid))
        made = [api.create_case(wid, {"title": f"n{i}"}, f"page-{i}").case_id
                for i in range(5)]
        seen, sizes, cursor = [], [], None
        while True:
            page = api.cases(workflow=wid, limit=2, cursor=cursor)
            assert rec.last[0].url.params["limit"] == "2"
            assert rec.last[0].url.params["workflow"] == wid
            sizes.append(len(page.cases))
            seen += page.cases
            cursor = page.next_cursor
            if cursor is None:
                break
        assert sizes == [2, 2, 1]
        ids = [c.case_id for c in seen]
        assert sorted(ids) == sorted(made)  # all five, each exactly once
        assert ids == made[::-1]  # newest first
        stamps = [c.created_at for c in seen]
        assert stamps == sorted(stamps, reverse=True)
        assert all(c.workflow_id == wid and c.state == "active" for c in seen)
        assert api.cases(workflow=wid, state="cancelled").cases == []


# ------------------------------------------------------------------ people's work
@pytest.mark.anyio
async def test_claim_then_complete_as_the_same_person(url: str) -> None:
    wid = "client-claims"
    rec = AsyncRecorder()
    async with AsyncClient(url) as operator, \
            AsyncClient(url, user=SARAH, transport=rec) as sarah, \
            AsyncClient(url, user=DAVID) as david, AsyncClient(url, user=MARCUS) as marcus:
        await operator.register_workflow(review_spec(wid))
        async with anyio.create_task_group() as tg:  # two cases at once
            tg.start_soon(operator.create_case, wid, {"title": "odd"}, ODD_ID)
            tg.start_soon(operator.create_case, wid, {"title": "plain"}, "claims-plain")

        claimed = await sarah.start_task(ODD_ID, "Draft")
        request, _ = rec.last
        assert request.url.raw_path == f"/api/v1/cases/{ODD_PATH}/tasks/Draft/start".encode()
        assert request.headers["x-caseloop-user"] == SARAH
        assert json.loads(request.content) == {}
        assert [(w.task, w.state, w.assignee) for w in claimed.work_items] == [
            ("Draft", "started", SARAH)]

        # Her worklist: the item she claimed and the unclaimed items of her role.
        mine = {(i.case_id, i.task): i for i in (await sarah.worklist(user=SARAH)).items}
        assert (mine[(ODD_ID, "Draft")].state, mine[(ODD_ID, "Draft")].assignee) == (
            "started", SARAH)
        assert (mine[("claims-plain", "Draft")].state,
                mine[("claims-plain", "Draft")].assignee) == ("enabled", None)
        assert all(i.role == "sdr" for i in mine.values())
        offered = {(i.case_id, i.task) for i in (await sarah.worklist(role="sdr")).items}
        assert ("claims-plain", "Draft") in offered
        assert (ODD_ID, "Draft") not in offered  # claimed: no longer offered to the role

        # Another SDR may not complete what Sarah claimed.
        err = await _refused(david.complete_task(ODD_ID, "Draft", result="done"))
        assert (err.status, err.code) == (403, 3002)
        assert err.details[0].field == "completed_by"
        done = await sarah.complete_task(ODD_ID, "Draft", result="drafted",
                                         output_data={"pages": 3}, idempotency_key="draft-1")
        request, _ = rec.last
        assert request.url.raw_path == \
            f"/api/v1/cases/{ODD_PATH}/tasks/Draft/complete".encode()
        assert request.headers["idempotency-key"] == "draft-1"
        assert request.headers["content-type"] == "application/json"
        assert json.loads(request.content) == {"result": "drafted", "output_data": {"pages": 3}}
        assert done.enabled_tasks == ["Approve"]
        # Sarah may not approve: that is the sales manager's task.
        err = await _refused(sarah.complete_task(ODD_ID, "Approve", result="approved"))
        assert (err.status, err.code) == (403, 3002)

        assert (ODD_ID, "Draft") not in {
            (i.case_id, i.task) for i in (await sarah.worklist(user=SARAH)).items}
        assert (ODD_ID, "Approve") in {
            (i.case_id, i.task) for i in (await marcus.worklist(user=MARCUS)).items}

        history = await operator.history(ODD_ID)
        assert history.workflow_id == wid
        steps = [(e.type, e.task, e.by) for e in history.events
                 if e.type in ("TaskStarted", "TaskCompleted")]
        assert steps == [("TaskStarted", "Draft", SARAH), ("TaskCompleted", "Draft", SARAH)]
        completed = next(e for e in history.events if e.type == "TaskCompleted")
        assert (completed.result, completed.data) == ("drafted", {"pages": 3})
        assert [e.seq for e in history.events] == list(range(1, len(history.events) + 1))


async def _refused(call: Any) -> ApiError:
    with pytest.raises(ApiError) as err:
        await call
    return err.value


def test_a_day_and_a_signal_through_the_client(url: str) -> None:
    # A RevOps script reads someone's day and reports a payment from the billing system.
    wid = "client-payments"
    with Client(url) as operator, Client(url, user=SARAH) as sarah:
        operator.register_workflow({
            "id": wid, "name": "Client test payments", "version": 1,
            "tasks": [{"id": "Invoice", "role": "sdr"},
                      {"id": "PaymentReceived", "role": "sdr", "accepts_signal": True}],
            "flows": [{"from": "start", "to": "Invoice"},
                      {"from": "Invoice", "to": "PaymentReceived"},
                      {"from": "PaymentReceived", "to": "end"}]})
        case = operator.create_case(wid, {}, "pay-1")
        sarah.complete_task(case.case_id, "Invoice")
        day = sarah.today()  # whoever asks
        assert day.user == SARAH
        assert ("pay-1", "PaymentReceived") in {(i.case_id, i.task) for i in day.items}
        done = operator.signal("pay-1", "PaymentReceived", "paid", {"amount": 120000})
        assert done.state == "completed" and done.data["amount"] == 120000
        err = refusal(lambda: sarah.signal("pay-1", "PaymentReceived", "paid"))
        assert (err.status, err.code) == (403, 3002)  # an SDR sends no signals


def test_cancel_needs_the_permission_and_closes_the_case(url: str) -> None:
    wid = "client-cancel"
    with Client(url) as api, Client(url, user=SARAH) as sarah, \
            Client(url, user=MARCUS) as marcus:
        api.register_workflow(review_spec(wid))
        case = api.create_case(wid, {"title": "to cancel"}, "cancel-me")

        err = refusal(lambda: sarah.cancel_case(case.case_id, "no"))
        assert (err.status, err.code, err.details[0].field) == (403, 3002, "X-Caseloop-User")
        assert api.case(case.case_id).state == "active"

        gone = marcus.cancel_case(case.case_id, "duplicate of another case")
        assert (gone.state, gone.enabled_tasks, gone.work_items) == ("cancelled", [], [])
        assert gone.closed_at is not None
        last = api.history(case.case_id).events[-1]
        assert (last.type, last.reason) == ("CaseCancelled", "duplicate of another case")
        assert api.cases(workflow=wid, state="cancelled").cases[0].case_id == "cancel-me"

        err = refusal(lambda: marcus.cancel_case(case.case_id))
        assert err.status == 409


# ------------------------------------------------------------------ errors and keys
def test_api_error_carries_status_code_message_and_details(url: str) -> None:
    with Client(url) as api:
        api.register_workflow(review_spec("client-errors"))

        err = refusal(lambda: api.case("no-such-case"))
        assert err.status == 404
        assert err.code != 0
        assert "no-such-case" in err.message
        assert [d.field for d in err.details] == ["case_id"]
        assert str(err).startswith(f"HTTP 404 (code {err.code}): ")
        assert refusal(lambda: api.history("no-such-case")).status == 404

        err = refusal(lambda: api.create_case("no-such-workflow", {}))
        assert (err.status, err.code, err.details[0].field) == (404, 2001, "workflow_id")

        err = refusal(lambda: api.create_case("client-errors", {"title": "x"}, "bad id"))
        assert (err.status, err.code, err.details[0].field) == (400, 1000, "case_id")

        err = refusal(lambda: api.create_case("client-errors", {}))
        assert (err.status, err.code, err.details[0].field) == (422, 1002, "title")

        api.create_case("client-errors", {"title": "x"}, "dup-1")
        err = refusal(lambda: api.create_case("client-errors", {"title": "x"}, "dup-1"))
        assert (err.status, err.code) == (409, 2002)

        err = refusal(lambda: api.cases(cursor="not-a-cursor"))
        assert (err.status, err.code, err.details[0].field) == (400, 1000, "cursor")
        err = refusal(lambda: api.worklist(user="nobody@acme.com"))
        assert (err.status, err.details[0].field) == (400, "user")


def test_idempotency_key_replays_the_answer(url: str) -> None:
    wid = "client-idem"
    rec = Recorder()
    with Client(url, transport=rec) as api:
        api.register_workflow(review_spec(wid))
        first = api.create_case(wid, {"title": "once"}, idempotency_key="create-once")
        assert rec.last[0].headers["idempotency-key"] == "create-once"
        assert "idempotent-replayed" not in rec.last[1].headers
        again = api.create_case(wid, {"title": "once"}, idempotency_key="create-once")
        assert rec.last[1].headers["idempotent-replayed"] == "true"
        assert again.case_id == first.case_id
        assert len(api.cases(workflow=wid).cases) == 1

        err = refusal(lambda: api.create_case(wid, {"title": "other"},
                                              idempotency_key="create-once"))
        assert (err.status, err.code) == (422, 1004)


@pytest.mark.anyio
async def test_async_health_readiness_and_openapi(url: str) -> None:
    rec = AsyncRecorder()
    async with AsyncClient(url, transport=rec) as api:
        assert (await api.health()).status == "ok"
        ready = await api.ready()
        assert ready.status == "ok"
        assert ready.checks["mode"] == "open"
        assert rec.last[0].url.raw_path == b"/health/ready"
        doc = await api.openapi()
        assert "/api/v1/cases/{case_id}/tasks/{task}/complete" in doc["paths"]


# ------------------------------------------------------------------ token mode
def test_token_mode_after_a_restart_on_the_same_db(caseloop_server: Server,
                                                   tmp_path: pathlib.Path) -> None:
    lead = {"company_name": "Acme Prospect", "contact_email": "ann@prospect.example"}
    with Client(caseloop_server.url) as api:
        api.create_case("lead-qualification", lead, "lead-token-1")
    tokens_file, tokens = make_tokens(tmp_path, SARAH)

    caseloop_server.restart("--tokens", str(tokens_file))
    assert "token mode" in caseloop_server.stderr
    url = caseloop_server.url

    with Client(url) as anonymous:
        err = refusal(lambda: anonymous.case("lead-token-1"))
        assert (err.status, err.code, err.details[0].field) == (401, 3001, "Authorization")
    with Client(url, token="cl_not-a-token") as wrong:
        assert refusal(lambda: wrong.case("lead-token-1")).status == 401
    with Client(url, token=tokens[SARAH]) as sarah:
        assert sarah.case("lead-token-1").enabled_tasks == ["ReceiveMarketingLead"]
        err = refusal(lambda: sarah.complete_task("lead-token-1", "ReceiveMarketingLead",
                                                  completed_by=DAVID))
        assert (err.status, err.code) == (403, 3002)
        done = sarah.complete_task("lead-token-1", "ReceiveMarketingLead", result="received")
        assert done.enabled_tasks == ["ValidateContactInfo"]
        by = [e.by for e in sarah.history("lead-token-1").events if e.type == "TaskCompleted"]
        assert by == [SARAH]
