"""A small typed client for caseloop's HTTP API, sync (`Client`) and async (`AsyncClient`).

Both classes have the same methods; each returns the msgspec Struct of the response body
(`adapters.http.bodies`) and raises `ApiError` on any non-2xx answer.

    from adapters.client import ApiError, Client

    with Client("http://127.0.0.1:8080", user="alice") as api:
        api.register_workflow(open("specs/deal-approval-gate.json").read())
        case = api.create_case("deal-approval-gate", {"amount": 120_000})
        try:
            api.complete_task(case.case_id, "SendToLegal", result="approved",
                              idempotency_key="legal-1")
        except ApiError as err:
            print(err.status, err.code, err.message, err.details)

    async with AsyncClient("http://127.0.0.1:8080", token="s3cret") as api:
        ready = await api.ready()

Each route is described once (a `_Call`: method, path, query, body, response type) by a
private function below; the two classes only send the description and decode the answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from adapters.http.bodies import (
    CancelCase,
    CaseList,
    CaseSignal,
    CaseView,
    CompleteTask,
    CreateCase,
    ErrorBody,
    ErrorDetail,
    Health,
    History,
    Incidents,
    Recommendations,
    Registered,
    RetryIncident,
    StartTask,
    Today,
    WorkflowDetail,
    WorkflowList,
    WorkflowMetrics,
    Worklist,
)

__all__ = ["ApiError", "AsyncClient", "Client", "ErrorDetail"]

API = "/api/v1"
JSON = "application/json"
T = TypeVar("T")
Spec = dict[str, Any] | str | bytes


class ApiError(Exception):
    """A non-2xx answer. `code`/`details` come from the error body; code 0 if it had none."""

    def __init__(self, status: int, code: int, message: str,
                 details: list[ErrorDetail] | None = None) -> None:
        super().__init__(status, code, message)
        self.status = status
        self.code = code
        self.message = message
        self.details: list[ErrorDetail] = details or []

    def __str__(self) -> str:
        extra = "".join(f"; {d.field}: {d.problem}" for d in self.details)
        return f"HTTP {self.status} (code {self.code}): {self.message}{extra}"


@dataclass(frozen=True, slots=True)
class _Call(Generic[T]):
    """One request to make and the type its answer decodes into."""

    method: str
    path: str
    out: Any  # type[T], or a generic alias such as dict[str, Any]
    params: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _seg(value: str | int) -> str:
    return quote(str(value), safe="")


def _post(path: str, out: type[T], body: msgspec.Struct | bytes, idempotency_key: str | None,
          content_type: str = JSON) -> _Call[T]:
    headers = {"Content-Type": content_type}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    content = body if isinstance(body, bytes) else msgspec.json.encode(body)
    return _Call("POST", API + path, out, content=content, headers=headers)


def _get(path: str, out: Any, params: dict[str, Any] | None = None) -> _Call[Any]:
    query = {k: _param(v) for k, v in (params or {}).items() if v is not None}
    return _Call("GET", path, out, params=query)


def _param(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _register_workflow(spec: Spec, idempotency_key: str | None) -> _Call[Registered]:
    """A dict is sent as JSON; text is sent as is, labelled JSON or YAML by its first char."""
    if isinstance(spec, dict):
        return _post("/workflows", Registered, msgspec.json.encode(spec), idempotency_key)
    raw = spec.encode() if isinstance(spec, str) else spec
    kind = JSON if raw.lstrip()[:1] in (b"{", b"[") else "application/yaml"
    return _post("/workflows", Registered, raw, idempotency_key, kind)


def _workflows() -> _Call[WorkflowList]:
    return _get(f"{API}/workflows", WorkflowList)


def _workflow(workflow_id: str) -> _Call[WorkflowDetail]:
    return _get(f"{API}/workflows/{_seg(workflow_id)}", WorkflowDetail)


def _create_case(workflow_id: str, data: dict[str, Any] | None, case_id: str | None,
                 idempotency_key: str | None) -> _Call[CaseView]:
    body = CreateCase(data=data or {}, case_id=case_id)
    return _post(f"/workflows/{_seg(workflow_id)}/cases", CaseView, body, idempotency_key)


def _cases(filters: dict[str, Any]) -> _Call[CaseList]:
    return _get(f"{API}/cases", CaseList, filters)


def _case(case_id: str) -> _Call[CaseView]:
    return _get(f"{API}/cases/{_seg(case_id)}", CaseView)


def _history(case_id: str) -> _Call[History]:
    return _get(f"{API}/cases/{_seg(case_id)}/history", History)


def _start_task(case_id: str, task: str, started_by: str | None,
                idempotency_key: str | None) -> _Call[CaseView]:
    path = f"/cases/{_seg(case_id)}/tasks/{_seg(task)}/start"
    return _post(path, CaseView, StartTask(started_by=started_by), idempotency_key)


def _complete_task(case_id: str, task: str, result: str | None,
                   output_data: dict[str, Any] | None, completed_by: str | None,
                   checklist: dict[str, bool] | None,
                   idempotency_key: str | None) -> _Call[CaseView]:
    body = CompleteTask(result=result, output_data=output_data or {},
                        completed_by=completed_by, checklist=checklist or {})
    path = f"/cases/{_seg(case_id)}/tasks/{_seg(task)}/complete"
    return _post(path, CaseView, body, idempotency_key)


def _cancel_case(case_id: str, reason: str, idempotency_key: str | None) -> _Call[CaseView]:
    path = f"/cases/{_seg(case_id)}/cancel"
    return _post(path, CaseView, CancelCase(reason=reason), idempotency_key)


def _signal(case_id: str, name: str, result: str | None,
            output_data: dict[str, Any] | None, idempotency_key: str | None,
            ) -> _Call[CaseView]:
    path = f"/cases/{_seg(case_id)}/signals/{_seg(name)}"
    body = CaseSignal(result=result, output_data=output_data or {})
    return _post(path, CaseView, body, idempotency_key)


def _worklist(user: str | None, role: str | None) -> _Call[Worklist]:
    return _get(f"{API}/worklist", Worklist, {"user": user, "role": role})


def _today(user: str | None) -> _Call[Today]:
    return _get(f"{API}/today", Today, {"user": user})


def _incidents() -> _Call[Incidents]:
    return _get(f"{API}/incidents", Incidents)


def _retry_incident(case_id: str, item: int, idempotency_key: str | None) -> _Call[CaseView]:
    path = f"/incidents/{_seg(case_id)}/{_seg(item)}/retry"
    return _post(path, CaseView, RetryIncident(), idempotency_key)


def _metrics(workflow_id: str, time_range: str) -> _Call[WorkflowMetrics]:
    path = f"{API}/workflows/{_seg(workflow_id)}/metrics"
    return _get(path, WorkflowMetrics, {"time_range": time_range})


def _recommendations(workflow_id: str) -> _Call[Recommendations]:
    return _get(f"{API}/workflows/{_seg(workflow_id)}/mape-k/recommendations", Recommendations)


def _health() -> _Call[Health]:
    return _get("/health", Health)


def _ready() -> _Call[Health]:
    return _get("/health/ready", Health)


def _openapi() -> _Call[dict[str, Any]]:
    return _get("/openapi.json", dict[str, Any])


def _decode(response: httpx.Response, out: Any) -> Any:
    """The body decoded into `out`; `ApiError` for any non-2xx status."""
    if not response.is_success:
        try:
            err = msgspec.json.decode(response.content, type=ErrorBody).error
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise ApiError(response.status_code, 0, response.text) from None
        raise ApiError(response.status_code, err.code, err.message, err.details)
    return msgspec.json.decode(response.content, type=out)


def _default_headers(token: str | None, user: str | None) -> dict[str, str]:
    headers = {"Accept": JSON}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if user is not None:
        headers["X-Caseloop-User"] = user
    return headers


class Client:
    """Synchronous client; wraps `httpx.Client`."""

    def __init__(self, base_url: str = "http://127.0.0.1:8080", *, token: str | None = None,
                 user: str | None = None, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._http = httpx.Client(base_url=base_url, headers=_default_headers(token, user),
                                  timeout=timeout, transport=transport)

    def _send(self, call: _Call[T]) -> T:
        response = self._http.request(call.method, call.path, params=call.params,
                                      content=call.content, headers=call.headers)
        result: T = _decode(response, call.out)
        return result

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def register_workflow(self, spec: Spec, *, idempotency_key: str | None = None) -> Registered:
        """Register a spec (a dict, or JSON/YAML text); `created` is False if already known."""
        return self._send(_register_workflow(spec, idempotency_key))

    def workflows(self) -> WorkflowList:
        return self._send(_workflows())

    def workflow(self, workflow_id: str) -> WorkflowDetail:
        return self._send(_workflow(workflow_id))

    def create_case(self, workflow_id: str, data: dict[str, Any] | None = None,
                    case_id: str | None = None, *,
                    idempotency_key: str | None = None) -> CaseView:
        return self._send(_create_case(workflow_id, data, case_id, idempotency_key))

    def cases(self, *, workflow: str | None = None, state: str | None = None,
              created_after: str | datetime | None = None,
              created_before: str | datetime | None = None, limit: int | None = None,
              cursor: str | None = None) -> CaseList:
        return self._send(_cases({"workflow": workflow, "state": state, "limit": limit,
                                  "created_after": created_after, "cursor": cursor,
                                  "created_before": created_before}))

    def case(self, case_id: str) -> CaseView:
        return self._send(_case(case_id))

    def history(self, case_id: str) -> History:
        return self._send(_history(case_id))

    def start_task(self, case_id: str, task: str, started_by: str | None = None, *,
                   idempotency_key: str | None = None) -> CaseView:
        return self._send(_start_task(case_id, task, started_by, idempotency_key))

    def complete_task(self, case_id: str, task: str, result: str | None = None,
                      output_data: dict[str, Any] | None = None,
                      completed_by: str | None = None,
                      checklist: dict[str, bool] | None = None, *,
                      idempotency_key: str | None = None) -> CaseView:
        return self._send(_complete_task(case_id, task, result, output_data, completed_by,
                                         checklist, idempotency_key))

    def cancel_case(self, case_id: str, reason: str = "cancelled", *,
                    idempotency_key: str | None = None) -> CaseView:
        return self._send(_cancel_case(case_id, reason, idempotency_key))

    def signal(self, case_id: str, name: str, result: str | None = None,
               output_data: dict[str, Any] | None = None, *,
               idempotency_key: str | None = None) -> CaseView:
        """What another system reports (a signature, a payment): completes the work
        waiting for it (needs the send_signals permission)."""
        return self._send(_signal(case_id, name, result, output_data, idempotency_key))

    def worklist(self, user: str | None = None, role: str | None = None) -> Worklist:
        return self._send(_worklist(user, role))

    def today(self, user: str | None = None) -> Today:
        """A person's open work by deadline, at risk and breached (default: whoever asks)."""
        return self._send(_today(user))

    def incidents(self) -> Incidents:
        return self._send(_incidents())

    def retry_incident(self, case_id: str, item: int, *,
                       idempotency_key: str | None = None) -> CaseView:
        return self._send(_retry_incident(case_id, item, idempotency_key))

    def metrics(self, workflow_id: str, time_range: str = "24h") -> WorkflowMetrics:
        return self._send(_metrics(workflow_id, time_range))

    def recommendations(self, workflow_id: str) -> Recommendations:
        return self._send(_recommendations(workflow_id))

    def health(self) -> Health:
        return self._send(_health())

    def ready(self) -> Health:
        return self._send(_ready())

    def openapi(self) -> dict[str, Any]:
        return self._send(_openapi())


class AsyncClient:
    """Asynchronous client; wraps `httpx.AsyncClient`. Same methods as `Client`, awaited."""

    def __init__(self, base_url: str = "http://127.0.0.1:8080", *, token: str | None = None,
                 user: str | None = None, timeout: float = 10.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._http = httpx.AsyncClient(base_url=base_url,
                                       headers=_default_headers(token, user),
                                       timeout=timeout, transport=transport)

    async def _send(self, call: _Call[T]) -> T:
        response = await self._http.request(call.method, call.path, params=call.params,
                                            content=call.content, headers=call.headers)
        result: T = _decode(response, call.out)
        return result

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def register_workflow(self, spec: Spec, *,
                                idempotency_key: str | None = None) -> Registered:
        """Register a spec (a dict, or JSON/YAML text); `created` is False if already known."""
        return await self._send(_register_workflow(spec, idempotency_key))

    async def workflows(self) -> WorkflowList:
        return await self._send(_workflows())

    async def workflow(self, workflow_id: str) -> WorkflowDetail:
        return await self._send(_workflow(workflow_id))

    async def create_case(self, workflow_id: str, data: dict[str, Any] | None = None,
                          case_id: str | None = None, *,
                          idempotency_key: str | None = None) -> CaseView:
        return await self._send(_create_case(workflow_id, data, case_id, idempotency_key))

    async def cases(self, *, workflow: str | None = None, state: str | None = None,
                    created_after: str | datetime | None = None,
                    created_before: str | datetime | None = None, limit: int | None = None,
                    cursor: str | None = None) -> CaseList:
        return await self._send(_cases({"workflow": workflow, "state": state, "limit": limit,
                                        "created_after": created_after, "cursor": cursor,
                                        "created_before": created_before}))

    async def case(self, case_id: str) -> CaseView:
        return await self._send(_case(case_id))

    async def history(self, case_id: str) -> History:
        return await self._send(_history(case_id))

    async def start_task(self, case_id: str, task: str, started_by: str | None = None, *,
                         idempotency_key: str | None = None) -> CaseView:
        return await self._send(_start_task(case_id, task, started_by, idempotency_key))

    async def complete_task(self, case_id: str, task: str, result: str | None = None,
                            output_data: dict[str, Any] | None = None,
                            completed_by: str | None = None,
                            checklist: dict[str, bool] | None = None, *,
                            idempotency_key: str | None = None) -> CaseView:
        return await self._send(_complete_task(case_id, task, result, output_data,
                                               completed_by, checklist, idempotency_key))

    async def cancel_case(self, case_id: str, reason: str = "cancelled", *,
                          idempotency_key: str | None = None) -> CaseView:
        return await self._send(_cancel_case(case_id, reason, idempotency_key))

    async def signal(self, case_id: str, name: str, result: str | None = None,
                     output_data: dict[str, Any] | None = None, *,
                     idempotency_key: str | None = None) -> CaseView:
        return await self._send(_signal(case_id, name, result, output_data,
                                        idempotency_key))

    async def worklist(self, user: str | None = None, role: str | None = None) -> Worklist:
        return await self._send(_worklist(user, role))

    async def today(self, user: str | None = None) -> Today:
        return await self._send(_today(user))

    async def incidents(self) -> Incidents:
        return await self._send(_incidents())

    async def retry_incident(self, case_id: str, item: int, *,
                             idempotency_key: str | None = None) -> CaseView:
        return await self._send(_retry_incident(case_id, item, idempotency_key))

    async def metrics(self, workflow_id: str, time_range: str = "24h") -> WorkflowMetrics:
        return await self._send(_metrics(workflow_id, time_range))

    async def recommendations(self, workflow_id: str) -> Recommendations:
        return await self._send(_recommendations(workflow_id))

    async def health(self) -> Health:
        return await self._send(_health())

    async def ready(self) -> Health:
        return await self._send(_ready())

    async def openapi(self) -> dict[str, Any]:
        return await self._send(_openapi())
