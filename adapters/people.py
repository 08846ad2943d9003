"""Who acts: the people of `specs/roles.yaml`, their bearer tokens, and the authority
check every task completion passes.

The check runs inside the case actor's command (see `authorize`), against the case
data as it is at that moment, so there is no window between checking and completing
in which the data could change. A refusal is an engine refusal (`InsufficientAuthority`,
403, code 3002): the case is left exactly as it was.

Tokens are never stored: the tokens file maps the SHA-256 of each token to a person,
so the file may be shared without handing out the secrets (`caseloop token create`).
"""

from __future__ import annotations

import hashlib
import pathlib
import secrets
from collections.abc import Callable
from typing import Any

import msgspec
import yaml

from adapters.config import load_yaml
from engine import Case, EngineError, Guard, GuardError, InsufficientAuthority, WorkItem
from engine.net import AUTOMATIC, Task

OPERATOR = "operator"  # the local operator of open mode: every role, no limits
# The permission to see anyone's work (roles.yaml): worklists, days, queues, all at once.
VIEW_ALL = "view_all_work"


class Role(msgspec.Struct, forbid_unknown_fields=True):
    display_name: str | None = None
    limits: dict[str, float] = {}
    permissions: list[str] = []  # e.g. cancel_cases
    acts_as: list[str] = []
    unlimited: bool = False
    sla_hours: float | None = None


class Person(msgspec.Struct, forbid_unknown_fields=True):
    role: str
    name: str | None = None
    team: str | None = None
    time_zone: str = "UTC"
    manages: list[str] = []


class Directory(msgspec.Struct, forbid_unknown_fields=True):
    roles: dict[str, Role] = {}
    people: dict[str, Person] = {}

    def person(self, user: str) -> Person | None:
        return self.people.get(user)

    def roles_of(self, user: str) -> set[str]:
        """The role a person holds and every role it acts as, transitively."""
        if user == OPERATOR:
            return set(self.roles)
        p = self.people.get(user)
        return set() if p is None else self.acts_as(p.role)

    def acts_as(self, role: str) -> set[str]:
        """`role` and every role it acts as, transitively."""
        return _reach([role], lambda r: self.roles[r].acts_as if r in self.roles else [])

    def limit(self, user: str, kind: str) -> float | None:
        """The highest limit of `kind` among the person's roles; inf if unlimited."""
        best: float | None = None
        for r in self.roles_of(user):
            role = self.roles.get(r)
            if role is None:
                continue
            lim = float("inf") if role.unlimited else role.limits.get(kind)
            if lim is not None and (best is None or lim > best):
                best = lim
        return float("inf") if user == OPERATOR else best

    def unlimited(self, user: str) -> bool:
        """Whether no limit binds the person: one of their roles is unlimited."""
        return user == OPERATOR or any(self.roles[r].unlimited for r in self.roles_of(user)
                                       if r in self.roles)

    def may(self, user: str, permission: str) -> bool:
        return user == OPERATOR or any(
            permission in self.roles[r].permissions for r in self.roles_of(user)
            if r in self.roles)

    def require(self, user: str, permission: str, field: str = "X-Caseloop-User") -> None:
        """Refuse (3002) unless one of the person's roles has `permission`; `field`:
        where the request said who it is."""
        if not self.may(user, permission):
            raise InsufficientAuthority(f"{user!r} lacks the {permission} permission "
                                        "(roles.yaml: no role of theirs has it)",
                                        field=field)

    def managed_by(self, user: str) -> set[str]:
        """The people `user` manages (roles.yaml's `manages`), and theirs, transitively."""
        def manages(p: str) -> list[str]:
            return self.people[p].manages if p in self.people else []

        return _reach(manages(user), manages)

    def require_sees_work(self, asker: str, user: str) -> None:
        """Refuse (3002, field `user`) unless `asker` may see `user`'s work (worklist,
        day): their own; the local operator and those with VIEW_ALL anyone's; a manager
        their people's (roles.yaml's `manages`, down the line); and anyone the work of a
        role they hold or act as -- their queue's peers, and those whose work they could
        take on."""
        if asker == user or self.may(asker, VIEW_ALL) or user in self.managed_by(asker):
            return
        person = self.people.get(user)
        if person is None or person.role not in self.roles_of(asker):
            raise InsufficientAuthority(
                f"{asker!r} may not see {user!r}'s work: it is neither theirs, nor of "
                "someone they manage, nor of a role they hold or act as (roles.yaml)",
                field="user")

    def require_sees_queue(self, asker: str, role: str) -> None:
        """Refuse (3002, field `role`) unless `asker` may see `role`'s queue: a role they
        hold or act as, or one that people they manage hold or act as (whose worklists
        they see, the queue in them); any, with VIEW_ALL."""
        if not (role in self.roles_of(asker) or self.may(asker, VIEW_ALL) or any(
                role in self.roles_of(p) for p in self.managed_by(asker))):
            raise InsufficientAuthority(
                f"{asker!r} neither holds nor acts as the role {role!r}, nor manages "
                "someone who does: its queue is not theirs to see", field="role")

    def people_with_role(self, role: str) -> list[str]:
        return sorted(u for u, p in self.people.items() if p.role == role)


def _reach(first: list[str], next_of: Callable[[str], list[str]]) -> set[str]:
    """`first` and all that `next_of` leads to from them, transitively (cycles end)."""
    out: set[str] = set()
    todo = list(first)
    while todo:
        x = todo.pop()
        if x not in out:
            out.add(x)
            todo += next_of(x)
    return out


def load_directory(path: str | pathlib.Path) -> Directory:
    """Read roles.yaml; every person's role must be declared."""
    d = load_yaml(path, Directory, "roles")
    for user, p in d.people.items():
        if p.role not in d.roles:
            raise ValueError(f"{path}: /people/{user}/role: unknown role {p.role!r}")
    for name, r in d.roles.items():
        for other in r.acts_as:
            if other not in d.roles:
                raise ValueError(f"{path}: /roles/{name}/acts_as: unknown role {other!r}")
    return d


def authorize(directory: Directory, user: str, case: Case, ref: int | str,
              output: dict[str, Any] | None, who_field: str = "completed_by",
              result: str | None = None) -> None:
    """Refuse (3002) unless `user` may complete work item `ref` of `case` with `output`.

    The person must hold the task's role (or act as it), must not be taking over an
    item someone else claimed, and must have the authority the task declares, measured
    on the case data as this completion would leave it, where the task's
    `authority_when` holds for this completion's `result` (always for a claim). Nobody,
    the local operator included, may change the figures others signed off
    (`Case.check_output`: 422).
    """
    it = case.work_item(ref)  # the engine's own 404/409 refusal for a bad ref
    t = case.net.tasks[it.task]
    if t.kind == AUTOMATIC:  # nobody races the action; a failed one is retried instead
        raise InsufficientAuthority(f"task {t.id!r} is automatic: its action completes it "
                                    "(a failed action is retried via /incidents)",
                                    field="task")
    if user != OPERATOR:
        _authority(directory, user, it, t, case, output, who_field, result)
    case.check_output(it.id, output)  # the signed-off figures: nobody's to rewrite


def offered_to(directory: Directory, user: str, case: Case, ref: int | str) -> bool:
    """Whether `user` could complete open work item `ref` of `case` one way or another:
    what their worklist and their day offer them (adapters.http.work).

    The same rules as `authorize`, asked before the person has chosen a result: an item
    beyond their limits is left out only when the limits bind whatever they answer. A
    task whose `authority_when` depends on the choice (Legal may ask for amendments on
    a contract above 5M, not approve it) stays offered: hiding it would take away work
    that is theirs to do."""
    try:
        it = case.work_item(ref)
    except EngineError:  # done or withdrawn since the worklist was read
        return False
    t = case.net.tasks[it.task]
    if t.kind == AUTOMATIC:
        return False
    if user == OPERATOR:
        return True
    try:
        _holder(directory, user, it, t, "user")
        if _binds_every_choice(t, case.data):
            _within_limits(directory, user, t, case, None)
    except InsufficientAuthority:
        return False
    return True


def _authority(directory: Directory, user: str, it: WorkItem, t: Task, case: Case,
               output: dict[str, Any] | None, who_field: str, result: str | None) -> None:
    _holder(directory, user, it, t, who_field)
    if t.authority_when is not None and not _binds(t.authority_when, case.data, result,
                                                   output):
        return  # e.g. asking for amendments: no figure is signed off
    _within_limits(directory, user, t, case, output)


def _holder(directory: Directory, user: str, it: WorkItem, t: Task, who_field: str) -> None:
    """Refuse (3002) unless `user` holds the task's role and nobody else claimed the item."""
    if t.role is not None and t.role not in directory.roles_of(user):
        who = "an unknown person" if directory.person(user) is None else f"{user!r}"
        raise InsufficientAuthority(f"task {t.id!r} needs role {t.role!r}; {who} does not "
                                    "hold it", field=who_field)
    if it.by is not None and it.by != user:
        raise InsufficientAuthority(f"task {t.id!r} is claimed by {it.by!r}",
                                    field=who_field)


def _within_limits(directory: Directory, user: str, t: Task, case: Case,
                   output: dict[str, Any] | None) -> None:
    """Refuse (3002) unless every figure the task signs off is within `user`'s limits."""
    for kind, measure in t.authority:
        limit = directory.limit(user, kind)
        value = _measure(measure, case.data, output)
        if value is None:
            # The case does not carry the figure (an optional field left out): a
            # limited approver cannot be shown to be within it, so only an unlimited
            # one signs off (fail closed: Legal approved a contract of unknown value).
            if limit != float("inf"):
                raise InsufficientAuthority(
                    f"{user!r} has a {kind} limit and {measure.text} is not set on the "
                    "case to check it against; only an unlimited role may sign this off",
                    field=f"authority.{kind}")
            continue
        if limit is None or value > limit:
            have = "no" if limit is None else f"a {limit:g}"
            raise InsufficientAuthority(
                f"{user!r} has {have} {kind} limit; {measure.text} is {value:g}",
                field=f"authority.{kind}")


def _binds(when: Guard, data: dict[str, Any], result: str | None,
           output: dict[str, Any] | None) -> bool:
    """Whether a task's limits bind this completion. They bind a claim (no result):
    whoever takes an item must be able to sign it off, or it would be locked away from
    those who can. A condition that cannot be decided binds them (fail closed)."""
    if result is None:
        return True
    try:
        return bool(when(data, {**(output or {}), "result": result}))
    except GuardError:
        return True


def _binds_every_choice(t: Task, data: dict[str, Any]) -> bool:
    """Whether a task's limits bind every completion a person might choose. Without
    `authority_when` they do. With it, only when the task lists its results and the
    condition holds for each of them: a task that takes any word (Legal's review: all
    but 'approved' asks for amendments), or a condition that reads output the person
    has yet to write, leaves them a completion the limits may not bind."""
    when = t.authority_when
    if when is None:
        return True
    if not t.results:
        return False
    try:
        return all(when(data, {"result": r}) for r in t.results)
    except GuardError:
        return False


def _measure(measure: Guard, data: dict[str, Any], output: dict[str, Any] | None,
             ) -> float | None:
    """The larger of the measure on the case data and on the data as this completion
    would leave it: an approver cannot lower the figure they approve, nor approve the
    old figure while writing a larger one. A figure that is there but not a number
    cannot be signed off (3002). None when the case data does not carry it: the
    approver's own output cannot supply the figure their authority is measured on."""
    values = []
    for local in (None, output) if output else (None,):
        try:
            v = measure(data, local)
        except GuardError:
            if local is None:
                return None
            continue
        if not isinstance(v, int | float) or isinstance(v, bool):
            raise InsufficientAuthority(f"{measure.text} is {v!r}, not a figure that can be "
                                        "signed off", field=measure.text)
        values.append(float(v))
    return max(values) if values else None


# ----------------------------------------------------------------------------- tokens
def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenFile(msgspec.Struct):
    tokens: dict[str, str] = {}  # sha256(token) -> person


def load_tokens(path: str | pathlib.Path, directory: Directory | None = None,
                ) -> dict[str, str]:
    """digest -> person. With a directory, every token must name one of its people: a
    token for the local operator, or for nobody known, is refused (ValueError). A
    missing file is an error (FileNotFoundError), not an empty one: a server told to
    require tokens must not fall back to open mode over a typo in the path."""
    p = pathlib.Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no tokens file {path}")
    raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    tokens = msgspec.convert(raw, TokenFile).tokens
    if directory is not None:
        for user in tokens.values():
            if user == OPERATOR or directory.person(user) is None:
                raise ValueError(f"{path}: a token names {user!r}, who is not a person of "
                                 "roles.yaml")
    return tokens


def create_token(path: str | pathlib.Path, user: str) -> str:
    """Mint a token for `user`, record its digest in the tokens file (created if need
    be), return the token."""
    tokens = load_tokens(path) if pathlib.Path(path).exists() else {}
    token = "cl_" + secrets.token_urlsafe(32)
    tokens[token_digest(token)] = user
    p = pathlib.Path(path)
    p.write_text(yaml.safe_dump({"tokens": tokens}, sort_keys=True), encoding="utf-8")
    p.chmod(0o600)
    return token
