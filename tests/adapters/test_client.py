"""The HTTP client against a real Starlette app that records each request it receives.

Until `adapters.http.create_app` exists this checks what the client sends (quoted paths,
headers, encoded bodies, query strings) and how it reads error bodies. The async client
goes through httpx.ASGITransport; the sync one through uvicorn on a real socket.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from adapters.client import ApiError, AsyncClient, Client

SEEN: list[dict[str, Any]] = []
CASE = {"case_id": "c", "workflow_id": "w", "workflow_version": 1, "state": "active",
        "enabled_tasks": [], "work_items": [], "created_at": "2025-01-01T00:00:00Z",
        "updated_at": "2025-01-01T00:00:00Z", "data": {}}
ERROR = {"error": {"code": 404, "message": "no such case",
                   "details": [{"field": "/case_id", "problem": "unknown"}]}}


async def record(request: Request) -> Response:
    SEEN.append({"method": request.method, "raw_path": request.scope["raw_path"].decode(),
                 "query": dict(request.query_params), "headers": request.headers,
                 "body": await request.body()})
    path = request.url.path
    if path.endswith("/missing"):
        return JSONResponse(ERROR, status_code=404)
    if path.endswith("/plain"):
        return PlainTextResponse("bad gateway", status_code=502)
    if path == "/api/v1/cases":
        return JSONResponse({"cases": [], "next_cursor": None})
    if path == "/api/v1/workflows":
        return JSONResponse({"workflow_id": "w", "version": 1, "created": True, "digest": "d",
                             "warnings": []}, status_code=201)
    if path.startswith("/health"):
        return JSONResponse({"status": "ok"})
    return JSONResponse(CASE, status_code=201 if request.method == "POST" else 200)


app = Starlette(routes=[Route("/{path:path}", record, methods=["GET", "POST"])])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(5)


@pytest.mark.anyio
async def test_async_requests_are_quoted_encoded_and_headed() -> None:
    async with AsyncClient("http://t", token="tok", user="al ice",
                           transport=httpx.ASGITransport(app)) as api:
        view = await api.complete_task("a/b c", "Task?1", result="ok", output_data={"n": 1},
                                       checklist={"x": True}, idempotency_key="k1")
        assert view.case_id == "c"
        sent = SEEN[-1]
        assert (sent["method"], sent["raw_path"]) == (
            "POST", "/api/v1/cases/a%2Fb%20c/tasks/Task%3F1/complete")
        assert json.loads(sent["body"]) == {"result": "ok", "output_data": {"n": 1},
                                            "checklist": {"x": True}}
        headers = sent["headers"]
        assert headers["authorization"] == "Bearer tok"
        assert headers["x-caseloop-user"] == "al ice"
        assert headers["idempotency-key"] == "k1"
        assert headers["content-type"] == "application/json"

        await api.cases(workflow="w", state="active", limit=5,
                        created_after="2025-01-01T00:00:00Z")
        assert SEEN[-1]["query"] == {"workflow": "w", "state": "active", "limit": "5",
                                     "created_after": "2025-01-01T00:00:00Z"}
        assert (await api.ready()).status == "ok"
        assert SEEN[-1]["raw_path"] == "/health/ready"

        assert (await api.register_workflow("id: w\ntasks: []\n")).created
        assert SEEN[-1]["headers"]["content-type"] == "application/yaml"
        assert "idempotency-key" not in SEEN[-1]["headers"]

        with pytest.raises(ApiError) as err:
            await api.case("missing")
        assert (err.value.status, err.value.code, err.value.message) == (404, 404, "no such case")
        assert [(d.field, d.problem) for d in err.value.details] == [("/case_id", "unknown")]


def test_sync_client_over_a_socket(server_url: str) -> None:
    with Client(server_url, user="bob") as api:
        view = api.retry_incident("x:1", 3, idempotency_key="r")
        assert view.state == "active"
        assert SEEN[-1]["raw_path"] == "/api/v1/incidents/x%3A1/3/retry"
        assert SEEN[-1]["body"] == b"{}"
        assert SEEN[-1]["headers"]["x-caseloop-user"] == "bob"
        with pytest.raises(ApiError) as err:
            api.case("plain")
        assert (err.value.status, err.value.code, err.value.message) == (502, 0, "bad gateway")
