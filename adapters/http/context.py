"""What every handler needs: the runtime, the store, the registry and who is asking.

Two modes, said at start:
- token mode: a tokens file names people; every /api/v1 request carries
  `Authorization: Bearer <token>` and acts as that person (401 otherwise);
- open mode (loopback only, no tokens): a request may name its person with the
  `X-Caseloop-User` header (or `completed_by` in a completion) and is then held to
  that person's role and authority; a request naming nobody acts as the local
  operator, so the tutorial's plain curl lines work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio
from starlette.requests import Request

from actors import Runtime
from adapters.people import OPERATOR, Directory, token_digest
from adapters.registry import Registry
from adapters.slas import SlaBook
from mapek.monitor import Monitor

from .errors import NOT_AUTHENTICATED, ApiError

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass
class Context:
    store: Any
    runtime: Runtime
    registry: Registry
    directory: Directory
    tokens: dict[str, str] = field(default_factory=dict)  # sha256(token) -> person
    slas: SlaBook | None = None  # slos.yaml: targets, compliance, who is told
    outbox: Any = None  # the outbox worker (adapters/outbox.py), when running
    intake: Any = None  # lead intake (adapters/intake.py)
    monitor: Monitor | None = None  # observations of work, following the event log
    mapek: Any = None  # the MAPE-K loop (mapek.loop.MapeK): recommendations, policies
    # One history import at a time writes and is absorbed into the Monitor: two at once
    # could absorb one's items twice (an update re-absorbs the whole workflow).
    imports: anyio.Lock = field(default_factory=anyio.Lock)

    @property
    def mode(self) -> str:
        return "token" if self.tokens else "open"

    def require(self, user: str, permission: str) -> None:
        """Refuse (403, 3002) unless `user` has `permission`, naming where the request
        said who it is: the token, or the X-Caseloop-User header of open mode."""
        self.directory.require(user, permission,
                               "Authorization" if self.tokens else "X-Caseloop-User")

    def who(self, request: Request, named: str | None = None) -> str:
        """The person a request acts as (see the module docstring). The request is
        authenticated once; later calls (with the person a body names) reuse it."""
        principal = request.scope.get("caseloop.principal")
        if principal is None:
            principal = request.scope["caseloop.principal"] = self._authenticate(request)
        if self.tokens:
            if named is not None and named != principal:
                raise ApiError(403, 3002, f"the token belongs to {principal!r}; it cannot "
                               f"act as {named!r}", [("completed_by", "not the token's "
                                                      "person")])
            return principal  # type: ignore[no-any-return]
        return named or principal  # type: ignore[no-any-return]

    def _authenticate(self, request: Request) -> str:
        if self.tokens:
            auth = request.headers.get("authorization", "")
            scheme, _, token = auth.partition(" ")
            user = self.tokens.get(token_digest(token.strip())) if scheme.lower() == \
                "bearer" else None
            if user is None:
                raise ApiError(401, NOT_AUTHENTICATED, "a valid bearer token is required "
                               "(caseloop token create USER)", [("Authorization", "missing or "
                                                                 "unknown token")])
            return user
        self._same_origin(request)
        return request.headers.get("x-caseloop-user") or OPERATOR

    @staticmethod
    def _same_origin(request: Request) -> None:
        """Open mode trusts whoever can reach the loopback port -- not every web page
        the local user opens. A browser marks cross-site requests (Origin,
        Sec-Fetch-Site), and a DNS-rebound page arrives under a foreign Host: both are
        refused. curl and the client send neither, so the tutorial is unaffected."""
        host = request.url.hostname or ""
        if host not in LOOPBACK_NAMES:
            raise ApiError(403, 3002, f"open mode answers only to loopback names, not "
                           f"{host!r}", [("Host", "not a loopback name")])
        site = request.headers.get("sec-fetch-site")
        origin = request.headers.get("origin")
        if site in ("cross-site", "same-site") or (
                origin is not None and _hostname(origin) not in LOOPBACK_NAMES):
            raise ApiError(403, 3002, "cross-site request refused in open mode",
                           [("Origin", origin or site or "")])


def _hostname(url: str) -> str | None:
    """The host an Origin names; None when it cannot be read ("http://[x": urlsplit
    raises), which is no loopback name: refused as foreign, not answered with a 500."""
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def ctx(request: Request) -> Context:
    return request.app.state.ctx  # type: ignore[no-any-return]
