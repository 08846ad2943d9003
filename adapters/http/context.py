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

from starlette.requests import Request

from actors import Runtime
from adapters.people import OPERATOR, Directory, token_digest
from adapters.registry import Registry

from .errors import NOT_AUTHENTICATED, ApiError


@dataclass
class Context:
    store: Any
    runtime: Runtime
    registry: Registry
    directory: Directory
    tokens: dict[str, str] = field(default_factory=dict)  # sha256(token) -> person
    slos: dict[str, float] = field(default_factory=dict)  # workflow -> target hours

    @property
    def mode(self) -> str:
        return "token" if self.tokens else "open"

    def who(self, request: Request, named: str | None = None) -> str:
        """The person a request acts as (see the module docstring)."""
        if self.tokens:
            auth = request.headers.get("authorization", "")
            scheme, _, token = auth.partition(" ")
            user = self.tokens.get(token_digest(token.strip())) if scheme.lower() == \
                "bearer" else None
            if user is None:
                raise ApiError(401, NOT_AUTHENTICATED, "a valid bearer token is required "
                               "(caseloop token create USER)", [("Authorization", "missing or "
                                                                 "unknown token")])
            if named is not None and named != user:
                raise ApiError(403, 3002, f"the token belongs to {user!r}; it cannot act "
                               f"as {named!r}", [("completed_by", "not the token's person")])
            return user
        return named or request.headers.get("x-caseloop-user") or OPERATOR


def ctx(request: Request) -> Context:
    return request.app.state.ctx  # type: ignore[no-any-return]
