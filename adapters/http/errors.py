"""Every error the API answers with: one body shape, a machine-readable code.

    {"error": {"code": 2003, "message": "...", "details": [{"field": ..., "problem": ...}]}}

Engine refusals carry their code (PIPELINE.md) and a `kind`, which picks the status;
the adapter's own refusals are `ApiError`s. Anything else is a bug: 500, logged, with
no internals in the body.
"""

from __future__ import annotations

import logging

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from actors import AppendConflict
from adapters.sqlite_store import StoreBusy, StoreUnavailable
from engine import EngineError

from .bodies import Error, ErrorBody, ErrorDetail

log = logging.getLogger("caseloop.http")

STATUS = {"invalid": 422, "not_found": 404, "conflict": 409, "forbidden": 403}

# The adapter's codes, beside the engine's (PIPELINE.md numbers the business ones).
MALFORMED = 1000  # the request itself: not JSON, wrong shape, bad parameter
IDEMPOTENCY_REUSED = 1004  # an Idempotency-Key sent again with another body
WORKFLOW_NOT_FOUND = 2001
INVALID_TRANSITION = 2003
NOT_AUTHENTICATED = 3001
UNAVAILABLE = 9001
INTERNAL = 9000


class ApiError(Exception):
    def __init__(self, status: int, code: int, message: str,
                 details: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []


def malformed(field: str, problem: str) -> ApiError:
    return ApiError(400, MALFORMED, f"{field}: {problem}", [(field, problem)])


def error_response(status: int, code: int, message: str,
                   details: list[tuple[str, str]] | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    body = ErrorBody(Error(code, message, [ErrorDetail(f, p) for f, p in details or []]))
    return Response(msgspec.json.encode(body), status, headers,
                    media_type="application/json")


def from_engine(exc: EngineError) -> Response:
    details = [(p.path, p.problem) for p in exc.problems]
    return error_response(STATUS.get(exc.kind, 409), exc.code, exc.message, details)


async def on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return error_response(exc.status, exc.code, exc.message, exc.details, headers)


async def on_engine_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, EngineError)
    return from_engine(exc)


async def on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    # No route for this path or method: the request does not fit the API.
    return error_response(exc.status_code, MALFORMED, str(exc.detail),
                          [("path", request.url.path)])


async def on_store_unavailable(request: Request, exc: Exception) -> Response:
    return error_response(503, UNAVAILABLE, str(exc), headers={"Retry-After": "30"})


async def on_append_conflict(request: Request, exc: Exception) -> Response:
    # Another writer (`caseloop import` or `simulate` into a served file) appended to
    # the case after it was loaded here: nothing of the command was written, and the
    # runtime rebuilds the case from its log on the next message, so sending the
    # command again decides it on the case as it now is.
    case_id = request.path_params.get("case_id", "")
    return error_response(409, INVALID_TRANSITION,
                          f"case {case_id!r} changed meanwhile (another writer): nothing "
                          "was applied; send the command again", [("case_id", str(exc))])


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, INTERNAL, "internal error; see the server log")


HANDLERS = {
    ApiError: on_api_error,
    StoreUnavailable: on_store_unavailable,
    StoreBusy: on_store_unavailable,  # another process holds the lock: try again
    EngineError: on_engine_error,
    AppendConflict: on_append_conflict,
    HTTPException: on_http_exception,
    Exception: on_unexpected,
}
