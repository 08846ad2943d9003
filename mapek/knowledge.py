"""Knowledge: what the MAPE-K loop has learned and decided, kept as an append-only log.

Theory of operation
-------------------
Every decision is a `Record` appended to the store's knowledge log: a recommendation
as proposed or updated (the whole recommendation, so the last record of an id is its
state), a policy version as made, a fitted timing model, an audit entry for each
apply, rollback, rejection and verification. Nothing is updated in place; loading is a
fold over the log, so the loop's knowledge survives restarts and the log is its own
audit trail. Notices (a rollback's notification) go into the same transaction.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import msgspec

from actors.ports import Notice

from .policy import Change, PolicyVersion

RecommendationType = Literal["timing_optimization", "routing_optimization", "escalation",
                             "capacity"]
Status = Literal["ready_to_apply", "applied", "verified", "rolled_back", "rejected"]


class Record(msgspec.Struct, frozen=True):
    at: float
    kind: str  # recommendation | policy | model | audit
    subject: str  # recommendation id, policy version, workflow/task
    body: str  # JSON


class KnowledgeLog(Protocol):
    async def append_knowledge(self, records: list[Record],
                               notices: list[Notice] | None = None) -> None: ...

    async def read_knowledge(self, after: int = 0,
                             ) -> list[tuple[int, float, str, str, str]]: ...


class Recommendation(msgspec.Struct):
    id: str
    workflow_id: str
    type: RecommendationType
    task: str | None
    description: str
    confidence: float
    estimated_improvement: str
    estimated_improvement_hours: float | None
    status: Status
    evidence: dict[str, Any]
    change: Change | None
    created_at: float
    updated_at: float
    reversible: bool = True
    applied_version: int | None = None  # the policy version applying it made
    applied_at: float | None = None
    verification: dict[str, Any] | None = None


class Audit(msgspec.Struct, frozen=True):
    action: str  # proposed | updated | applied | rolled_back | rejected | verified
    by: str
    note: str = ""
    policy_version: int | None = None


_enc = msgspec.json.Encoder()


def record(at: float, kind: str, subject: str, body: Any) -> Record:
    return Record(at, kind, subject, _enc.encode(body).decode())


class Knowledge(msgspec.Struct):
    """The fold of the log: current recommendations and the policy history (audit and
    model records are for reading the log, not for the loop's state)."""

    recommendations: dict[str, Recommendation]
    policies: list[PolicyVersion]


def fold(rows: list[tuple[int, float, str, str, str]]) -> Knowledge:
    k = Knowledge({}, [])
    for _seq, _at, kind, subject, body in rows:
        if kind == "recommendation":
            k.recommendations[subject] = msgspec.json.decode(body, type=Recommendation)
        elif kind == "policy":
            k.policies.append(msgspec.json.decode(body, type=PolicyVersion))
    return k
