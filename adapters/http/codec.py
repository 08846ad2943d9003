"""Bodies in and out: JSON whatever the Content-Type says, decoded and validated into
msgspec Structs in one step; failures located (`field`) and answered with 400.

curl's `-d '{...}'` without `-H "Content-Type: application/json"` sends the JSON as
application/x-www-form-urlencoded; the tutorial does exactly that, so the content
type is not consulted.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from .errors import MALFORMED, ApiError, malformed

T = TypeVar("T")

MAX_BODY = 1 << 20  # 1 MiB: far above any case's data; a guard against abuse
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_UNKNOWN = re.compile(r"^Object contains unknown field `([^`]*)`$")
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}
_encode = msgspec.json.Encoder().encode


def _field(path: str | None) -> str:
    if not path:
        return "body"
    return re.sub(r"\[(\d+)\]", r".\1", path).lstrip(".") or "body"


async def capped_body(request: Request, limit: int, too_large: ApiError) -> bytes:
    """The body, refused with `too_large` as soon as it is known to pass `limit`.

    A Content-Length above the limit is refused before anything is read; a chunked
    body (no length) is read chunk by chunk and refused the moment the running total
    passes the limit, so a client cannot make the server hold more than the limit and
    one chunk, however much it sends.
    """
    announced = request.headers.get("content-length", "")
    if announced.isdigit() and int(announced) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    body = b"".join(chunks)
    # Starlette's own cache of a read body: the stream can be read only once, and the
    # Idempotency-Key wrapper reads the body before its handler reads it again.
    request._body = body
    return body


async def raw_body(request: Request) -> bytes:
    """The body, refused (413, as the history import refuses its own limit) as soon as
    it is known to pass MAX_BODY."""
    return await capped_body(request, MAX_BODY, ApiError(
        413, MALFORMED, f"body: larger than {MAX_BODY} bytes",
        [("body", f"larger than {MAX_BODY} bytes")]))


async def read_body(request: Request, type_: type[T]) -> T:
    body = await raw_body(request)
    if not body.strip():
        body = b"{}"  # no body: every field takes its default (or is reported missing)
    dec = _decoders.get(type_)
    if dec is None:
        dec = _decoders[type_] = msgspec.json.Decoder(type_)
    try:
        obj = dec.decode(body)
        for name in _FREE_FORM:
            value = getattr(obj, name, None)
            if value:
                _check_integers(value, name)
        return obj  # type: ignore[no-any-return]
    except msgspec.ValidationError as exc:
        m = _AT.match(str(exc))
        assert m is not None
        field = _field(m["path"])
        unknown = _UNKNOWN.match(m["msg"])
        if unknown:  # name the field itself, not the object holding it
            field = unknown[1] if field == "body" else f"{field}.{unknown[1]}"
        raise malformed(field, m["msg"]) from None
    except msgspec.DecodeError as exc:
        # The fields of this request's body, not one route's example: a hint that fits.
        names = [f.encode_name for f in msgspec.structs.fields(type_)]
        shape = f" with some of: {', '.join(names)}" if names else ", or no body"
        raise malformed("body", f"not valid JSON ({exc}); send a JSON object{shape}"
                        ) from None
    except UnicodeDecodeError:
        raise malformed("body", "not UTF-8 text") from None
    except RecursionError:
        raise malformed("body", "nested too deeply") from None


_FREE_FORM = ("data", "output_data")  # bodies' schema-less parts, checked by the engine
_INT64 = 2**63


def _check_integers(value: Any, path: str) -> None:
    """Integers beyond 64 bits decode in Python but cannot be stored: refuse them here."""
    if isinstance(value, int) and not -_INT64 <= value < _INT64:
        raise malformed(path, "integer out of the 64-bit range")
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, int | dict | list):
                _check_integers(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if isinstance(v, int | dict | list):
                _check_integers(v, f"{path}.{i}")


def respond(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_encode(obj), status, headers, media_type="application/json")


def stamp(t: float) -> str:
    """Epoch seconds as the API writes time: ISO 8601, UTC, milliseconds."""
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def iso(t: float | None) -> str | None:
    return None if t is None else stamp(t)


def parse_time(name: str, value: str | None) -> float | None:
    """An ISO 8601 query parameter (naive means UTC) -> epoch seconds."""
    if value is None:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise malformed(name, f"not an ISO 8601 time: {value!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.timestamp()


def parse_int(name: str, value: str | None, default: int, lo: int, hi: int) -> int:
    if value is None:
        return default
    try:
        n = int(value)
    except ValueError:
        raise malformed(name, f"not an integer: {value!r}") from None
    if not lo <= n <= hi:
        raise malformed(name, f"must be between {lo} and {hi}")
    return n
