"""The API's route table: each endpoint declared once, with its body and response
Structs, so Starlette's routes and the OpenAPI document come from the same place."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .bodies import ErrorBody, schema_components

Handler = Callable[[Request], Awaitable[Response]]

_STATUS_TEXT = {200: "OK", 201: "Created", 400: "Malformed request", 401: "Not authenticated",
                403: "Insufficient authority (3002)", 404: "Unknown workflow, case or task",
                409: "Conflict with the case's state (2002, 2003, 3004)",
                413: "Body too large", 415: "Unsupported Content-Type",
                422: "Invalid spec or data, located (1002, 1003, 2004)",
                503: "Store unavailable"}


@dataclass
class Query:
    name: str
    description: str
    type: str = "string"
    format: str | None = None


@dataclass
class Endpoint:
    method: str
    path: str  # relative to the API's prefix, Starlette/OpenAPI "{name}" syntax
    handler: Handler
    summary: str
    returns: Any
    body: Any = None
    status: int = 200
    query: list[Query] = field(default_factory=list)
    errors: tuple[int, ...] = (400, 404)
    also: tuple[int, ...] = ()  # other success statuses (200 for an idempotent re-register)
    media: tuple[str, ...] = ("application/json",)  # of the success response


class Api:
    def __init__(self, prefix: str, title: str, version: str) -> None:
        self.prefix = prefix
        self.title = title
        self.version = version
        self.endpoints: list[Endpoint] = []

    def route(self, method: str, path: str, summary: str, returns: Any, **kw: Any,
              ) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.endpoints.append(Endpoint(method, path, fn, summary, returns, **kw))
            return fn
        return deco

    def routes(self) -> list[Route]:
        return [Route(self.prefix + e.path, e.handler, methods=[e.method])
                for e in self.endpoints]

    def openapi(self, extra: list[Endpoint] = ()) -> dict[str, Any]:  # type: ignore[assignment]
        eps = [(self.prefix, e) for e in self.endpoints] + [("", e) for e in extra]
        types = {ErrorBody}
        for _, e in eps:
            types.add(e.returns)
            if e.body is not None:
                types.add(e.body)
        ordered = sorted(types, key=lambda t: t.__name__)
        refs, components = schema_components(ordered)
        ref = dict(zip(ordered, refs, strict=True))
        paths: dict[str, Any] = {}
        for prefix, e in eps:
            op: dict[str, Any] = {
                "summary": e.summary,
                "operationId": e.handler.__name__,
                "responses": {
                    str(s): {"description": _STATUS_TEXT.get(s, "OK"),
                             "content": {m: {"schema": ref[e.returns]} for m in e.media}}
                    for s in (e.status, *e.also)},
            }
            # Any POST may carry a body (an Idempotency-Key makes even a bodiless one
            # read it): one past the limit is 413 (adapters.http.codec.raw_body).
            for s in (*e.errors, 413) if e.method == "POST" else e.errors:
                op["responses"][str(s)] = {
                    "description": _STATUS_TEXT.get(s, "error"),
                    "content": {"application/json": {"schema": ref[ErrorBody]}}}
            params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                      for n in _path_params(e.path)]
            params += [{"name": q.name, "in": "query", "required": False,
                        "description": q.description,
                        "schema": {"type": q.type, **({"format": q.format} if q.format else {})}}
                       for q in e.query]
            if e.method == "POST":
                params.append({"name": "Idempotency-Key", "in": "header", "required": False,
                               "description": "same key and body: the stored response; "
                               "same key, another body: 422",
                               "schema": {"type": "string", "maxLength": 200}})
            if params:
                op["parameters"] = params
            if e.body is not None:
                op["requestBody"] = {"required": False, "content": {
                    "application/json": {"schema": ref[e.body]}}}
            paths.setdefault(prefix + e.path, {})[e.method.lower()] = op
        return {
            "openapi": "3.1.0",
            "info": {"title": self.title, "version": self.version},
            "paths": paths,
            "components": {
                "schemas": components,
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            },
            "security": [{}, {"bearer": []}],
        }


def _path_params(path: str) -> list[str]:
    out, i = [], path.find("{")
    while i >= 0:
        j = path.index("}", i)
        out.append(path[i + 1:j].split(":")[0])
        i = path.find("{", j)
    return out


api = Api("/api/v1", "caseloop", "1")
