"""Least-loaded assignment: the automatic action that gives work to the person of a
role with the fewest open work items.

Ties go round-robin (the person after the one chosen last for that role), so a quiet
team still shares new work. The routing policy -- which the MAPE-K loop may change --
is consulted first: `prefer` narrows the choice to the preferred people when any is
available, `avoid` removes people unless nobody else is left. Who holds a role and how
loaded each person is come through ports, so this module knows no directory file and
no database.

The rule is asked for with this action's own task (`AssignToSDR`), yet the choice it
makes decides who works later tasks: the SDR a lead goes to owns the deal and
justifies its discount. So a policy measured on such a later task reaches the runtime
here -- the policy side files it under the assignment that decides it
(actors.ports.RoutingPolicy) -- and one lookup per assignment serves them all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .actions import ActionContext, Handler
from .ports import RoutingPolicy


class Workload(Protocol):
    async def open_counts(self, people: Sequence[str]) -> dict[str, int]:
        """Open work items assigned to each of `people` (absent: none)."""
        ...


class NoRouting:
    """No routing rules (until a policy is applied)."""

    def rule(self, workflow_id: str, task: str) -> None:
        return None


def least_loaded(people_of: Callable[[str], Sequence[str]], workload: Workload,
                 routing: RoutingPolicy | None = None) -> Handler:
    """The `assign_least_loaded` action. Its task names the role in `params.role`;
    the output is `{"assigned_to": person}` (`params.field` renames it)."""
    last: dict[str, str] = {}  # role -> who got the last tie (in memory: a tie-breaker)

    async def assign(ctx: ActionContext) -> dict[str, Any]:
        role = ctx.params.get("role")
        if not role:
            raise ValueError(f"task {ctx.task!r}: params.role names the role to assign")
        people = sorted(people_of(role))  # the rotation's order, whatever the source's
        if not people:
            raise ValueError(f"nobody holds role {role!r} (roles.yaml)")
        rule = routing.rule(ctx.workflow_id, ctx.task) if routing else None
        if rule is not None:
            kept = [p for p in people if p not in rule.avoid]
            people = kept or people
            preferred = [p for p in people if p in rule.prefer]
            people = preferred or people
        counts = await workload.open_counts(people)
        fewest = min(counts.get(p, 0) for p in people)
        tied = [p for p in people if counts.get(p, 0) == fewest]
        prev = last.get(role)
        # Round-robin: the first tied person after the one chosen last (people sorted).
        chosen = next((p for p in tied if prev is None or p > prev), tied[0])
        last[role] = chosen
        return {str(ctx.params.get("field", "assigned_to")): chosen}

    return assign
