"""Lead intake over HTTP: `POST /signals` takes a lead, `GET /signals` lists them.

POST answers 201 for a new lead (outcome `case_started` or `below_threshold`) and
200 for a duplicate (`duplicate`: merged into the earlier signal `duplicate_of`;
`case_id` is that signal's case, if it has one). A lead missing contact_email or
company_name is refused like case data missing a required field: 422, code 1002,
naming the field. The rules live in adapters/intake.py.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct
from starlette.requests import Request
from starlette.responses import Response

from adapters.intake import OUTCOMES, Intake, SignalRow

from .api import Query, api
from .codec import parse_int, raw_body, read_body, respond, stamp
from .context import ctx
from .errors import WORKFLOW_NOT_FOUND, ApiError, malformed
from .idempotency import idempotent

Text = Annotated[str, Meta(max_length=1000)]
Source = Literal["form", "email", "api", "import", "referral", "event", "other"]


class SignalIn(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A lead as a form, a mailbox or another system sends it. The lead-qualification
    names are canonical; `email`, `company`, `name`, `phone` are accepted for them.
    The company's domain is `company_domain`, else `website`'s, else the e-mail's
    (never a free-mail one). email_valid / phone_valid / company_verified: set them
    only when the sender has checked them (they count in the ICP score)."""

    source: Source = "api"
    contact_email: Text | None = None
    company_name: Text | None = None
    contact_name: Text | None = None
    contact_phone: Text | None = None
    company_domain: Text | None = None
    website: Text | None = None
    company_size: Annotated[int, Meta(ge=0, le=10_000_000)] | None = None
    industry: Text | None = None
    location: Text | None = None
    use_case: Text | None = None
    budget_known: bool | None = None
    lead_source: Text | None = None
    email_valid: bool | None = None
    phone_valid: bool | None = None
    company_verified: bool | None = None
    email: Text | None = None
    company: Text | None = None
    name: Text | None = None
    phone: Text | None = None


class IcpItem(Struct):
    rule: str
    field: str
    points: int
    reason: str


class SignalResult(Struct):
    signal_id: str
    outcome: str  # case_started | duplicate | below_threshold
    score: int
    icp_breakdown: list[IcpItem]
    case_id: str | None
    duplicate_of: str | None
    received_at: str


class SignalView(Struct):
    signal_id: str
    received_at: str
    source: str
    email: str
    domain: str | None
    company: str
    outcome: str
    score: int
    icp_breakdown: list[IcpItem]
    case_id: str | None
    duplicate_of: str | None
    merged_count: int
    lead: dict[str, Any]  # the normalized lead (lead-qualification data names)


class SignalList(Struct):
    signals: list[SignalView]
    next_cursor: str | None  # pass as `after` for the next page; null on the last


def _intake(request: Request) -> Intake:
    intake = ctx(request).intake
    if intake is None:
        raise ApiError(404, WORKFLOW_NOT_FOUND, "lead intake is off: no ICP profile "
                       "(icp.yaml) was found at start", [("path", request.url.path)])
    return intake  # type: ignore[no-any-return]


@api.route("POST", "/signals",
           "Take in a lead: normalized, deduplicated, ICP-scored; starts a "
           "lead-qualification case at or above the intake threshold (201; 200 for a "
           "duplicate)", SignalResult, body=SignalIn, status=201, also=(200,),
           errors=(400, 404, 422))
@idempotent
async def receive_signal(request: Request) -> Response:
    c = ctx(request)
    c.who(request)
    intake = _intake(request)
    body = await read_body(request, SignalIn)
    key = getattr(request.state, "idempotency_key", None)
    # With an Idempotency-Key the signal id follows from key and body: a retry after a
    # crash between the commit and the stored answer gets the recorded outcome.
    sid = None
    if key is not None:
        # Scoped to the caller like the key itself: two callers' keys never collide.
        sid = hashlib.sha256(f"{c.who(request)}\x00{key}\x00".encode()
                             + await raw_body(request)).hexdigest()[:16]
    out = await intake.receive(msgspec.to_builtins(body), sid)
    return respond(SignalResult(out.signal_id, out.outcome, out.score,
                                [IcpItem(**b) for b in out.breakdown], out.case_id,
                                out.duplicate_of, stamp(out.received_at)),
                   200 if out.outcome == "duplicate" else 201)


@api.route("GET", "/signals", "Signals received, newest first (cursor pagination)",
           SignalList, errors=(400, 404), query=[
               Query("outcome", "case_started | duplicate | below_threshold"),
               Query("limit", "page size, 1..1000 (default 100)", type="integer"),
               Query("after", "next_cursor of the previous page")])
async def list_signals(request: Request) -> Response:
    c = ctx(request)
    c.who(request)
    intake = _intake(request)
    q = request.query_params
    outcome = q.get("outcome")
    if outcome is not None and outcome not in OUTCOMES:
        raise malformed("outcome", f"one of {', '.join(OUTCOMES)}")
    limit = parse_int("limit", q.get("limit"), 100, 1, 1000)
    rows = await intake.signals(outcome=outcome, limit=limit + 1,
                                before=_cursor(q.get("after")))
    nxt = None
    if len(rows) > limit:
        rows = rows[:limit]
        nxt = base64.urlsafe_b64encode(msgspec.json.encode(
            [rows[-1].received_at, rows[-1].signal_id])).decode()
    return respond(SignalList([_view(r) for r in rows], nxt))


def _cursor(raw: str | None) -> tuple[float, str] | None:
    if raw is None:
        return None
    try:
        t, sid = msgspec.json.decode(base64.urlsafe_b64decode(raw.encode()),
                                     type=tuple[float, str])
    except (ValueError, msgspec.DecodeError):
        raise malformed("after", "not a cursor this server gave out") from None
    return t, sid


def _view(r: SignalRow) -> SignalView:
    return SignalView(r.signal_id, stamp(r.received_at), r.source, r.email, r.domain,
                      r.company, r.outcome, r.score, [IcpItem(**b) for b in r.breakdown],
                      r.case_id, r.duplicate_of, r.merged_count, r.lead)
