"""What the reports are computed from: the event log's position (the data stamp) and,
when a page must be computed, the history itself.

The stamp is cheap -- a count and the last row of the events table, and of the
imported history -- so `caseloop report` can tell that nothing moved without reading
the log. The history is read as the dashboard reads it: a Monitor tailing the log
(observations of every work item, case attributes), the imported history absorbed,
and the phases projection. Everything is cut at the stamp: events after its position
are not read, phases entered after its last event are left out and stays left after
it are still open, so a page is a function of its stamp even while a server appends.
"Now" for ages and open items is the time of that last event, not the wall clock:
regenerating a page from the same stamp gives the same numbers.

The reports read only; the store is opened as the server opens it (a database that
does not exist is an error here, not a new empty store).
"""

from __future__ import annotations

import hashlib
import pathlib
from dataclasses import dataclass
from typing import Any

import msgspec

from adapters.history import absorb_imported
from adapters.people import Directory
from adapters.sqlite_store import SQLiteStore
from engine import Net, compile, decode_spec
from engine.events import CaseCreated, CaseHandedOn
from mapek.insights import Phase
from mapek.monitor import Monitor, Observation

# Case data the reports need beyond the Monitor's attributes (deal profitability).
EXTRA_DATA = ("margin_percent",)


class LogStamp(msgspec.Struct, frozen=True):
    """Where the history stood: events counted, the last one's position, time and body
    digest (two databases at the same position are still told apart), imported rows."""

    events: int
    last_pos: int
    last_at: float | None
    last_digest: str
    imported: int
    last_import: int | None


@dataclass(slots=True)
class History:
    stamp: LogStamp
    now: float
    phases: list[Phase]
    observations: list[Observation]
    attributes: dict[str, dict[str, Any]]


async def log_stamp(store: SQLiteStore) -> LogStamp:
    (count, last), = await store.query("SELECT count(*), coalesce(max(pos), 0) FROM events")
    at, digest = None, ""
    if last:
        (at, body), = await store.query("SELECT at, body FROM events WHERE pos = ?", (last,))
        digest = hashlib.sha256(body).hexdigest()[:16]
    (imported, last_import), = await store.query(
        "SELECT count(*), max(import_id) FROM imported_items")
    return LogStamp(int(count), int(last), at, digest, int(imported), last_import)


class _CappedLog:
    """The store's event log up to a position, keeping the case data the Monitor does
    not (EXTRA_DATA) on the way past."""

    def __init__(self, store: SQLiteStore, last_pos: int, extra: dict[str, dict[str, Any]]):
        self.store, self.last_pos, self.extra = store, last_pos, extra

    async def read_events(self, after_pos: int = 0, limit: int = 10_000,
                          ) -> list[tuple[int, str, int, list[Any]]]:
        if after_pos >= self.last_pos:
            return []
        rows = await self.store.read_events(after_pos, min(limit, self.last_pos - after_pos))
        rows = [r for r in rows if r[0] <= self.last_pos]
        for _pos, case_id, _first, events in rows:
            for e in events:
                t = type(e)
                if t is CaseCreated or t is CaseHandedOn:
                    data = e.data if t is CaseCreated else (e.defaults or {})
                    kept = {k: data[k] for k in EXTRA_DATA if k in data}
                    if kept:
                        self.extra.setdefault(case_id, {}).update(kept)
        return rows


def _nets(rows: list[Any]) -> dict[str, Net]:
    latest: dict[str, Any] = {}
    for row in rows:  # ordered by workflow, version: the last one wins
        latest[row.workflow_id] = row
    return {wf: compile(decode_spec(r.document, "json"), check_soundness=False)
            for wf, r in latest.items()}


async def read_history(store: SQLiteStore, stamp: LogStamp,
                       directory: Directory | None = None) -> History:
    """The history up to `stamp` (see the module's docstring)."""
    nets = _nets(await store.specs())

    def role_of(workflow_id: str, task: str) -> str | None:
        net = nets.get(workflow_id)
        i = net.task_index.get(task) if net is not None else None
        return None if net is None or i is None else net.tasks[i].role

    def zone_of(person: str | None) -> str:
        p = directory.people.get(person) if directory is not None and person else None
        return p.time_zone if p is not None else "UTC"

    extra: dict[str, dict[str, Any]] = {}
    monitor = Monitor(_CappedLog(store, stamp.last_pos, extra), role_of=role_of,
                      time_zone_of=zone_of)
    await monitor.catch_up()
    await absorb_imported(monitor, store)
    now = stamp.last_at if stamp.last_at is not None else 0.0
    phases = []
    for case_id, wf, entered, left, outcome in await store.query(
            "SELECT case_id, workflow_id, entered_at, left_at, outcome FROM phases"
            " WHERE entered_at <= ? ORDER BY entered_at, case_id", (now,)):
        if left is not None and left > now:  # left after the stamp: still in it then
            left, outcome = None, None
        phases.append(Phase(case_id, wf, entered, left, outcome))
    attributes = {c: dict(a) for c, a in monitor.attributes.items()}
    for case_id, kept in extra.items():
        attributes.setdefault(case_id, {}).update(kept)
    return History(stamp, now, phases, list(monitor.observations()), attributes)


def open_store(db: str | pathlib.Path) -> SQLiteStore:
    if not pathlib.Path(db).is_file():
        raise FileNotFoundError(f"no database {str(db)!r} (--db FILE)")
    return SQLiteStore(str(db))
