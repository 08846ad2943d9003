"""Errors the engine raises, each with a machine-readable code from PIPELINE.md.

`kind` says what sort of refusal it is (invalid input, unknown thing, conflict with
the case's state) so an adapter can choose a status without knowing every class.
A command that raises leaves the case exactly as it was.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Kind = Literal["invalid", "not_found", "conflict", "forbidden"]


class Problem(msgspec.Struct, frozen=True):
    """One located problem: `path` is JSON-pointer-like (`/tasks/3/join`) or a field."""

    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


class EngineError(Exception):
    code: int = 2003
    kind: Kind = "conflict"

    def __init__(self, message: str, *, field: str | None = None,
                 problems: list[Problem] | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.problems = problems or ([Problem(field, message)] if field else [])
        if code is not None:
            self.code = code


class SpecError(EngineError):
    """A spec that cannot be registered; `problems` lists every one, located."""

    code = 2000
    kind = "invalid"

    def __init__(self, workflow_id: str, problems: list[Problem]) -> None:
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"workflow {workflow_id!r} has {len(problems)} problem(s):\n{lines}",
                         problems=problems)
        self.workflow_id = workflow_id


class DataInvalid(EngineError):
    code = 1002
    kind = "invalid"


class GuardFailed(EngineError):
    """A guard could not be decided (a field it reads is missing, or a type error)."""

    code = 2004
    kind = "invalid"


class ChecklistIncomplete(EngineError):
    code = 2004
    kind = "invalid"


class UnknownTask(EngineError):
    code = 2003
    kind = "not_found"


class ProtectedField(EngineError):
    """A completion's output would change declared case data its task does not map."""

    code = 2003
    kind = "invalid"


class UnknownResult(EngineError):
    """A completion reports a result its task does not list (`results` in the spec)."""

    code = 2003
    kind = "invalid"


class NotEnabled(EngineError):
    code = 2003
    kind = "conflict"


class AlreadyDone(EngineError):
    code = 3004
    kind = "conflict"


class CaseClosed(EngineError):
    code = 2003
    kind = "conflict"


class InsufficientAuthority(EngineError):
    """The person completing a task lacks its role or the authority its data needs."""

    code = 3002
    kind = "forbidden"
