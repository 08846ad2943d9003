"""Work history from other systems: a CSV event log, checked, paired into work items
and written to `imported_items` for the MAPE-K loop.

Theory of operation
-------------------
A file is one header row and one row per lifecycle event of a work item:

    case_id,task,event,timestamp,resource,deal_acv
    D-1,SendToSalesManager,enabled,2025-03-03T09:00:00+01:00,,40000
    D-1,SendToSalesManager,completed,2025-03-03T11:30:00+01:00,marcus@acme.com,

`event` is enabled, started or completed (XES's schedule, start and complete too);
`timestamp` is ISO 8601 with a UTC offset -- a naive time is refused, since guessing
the zone would shift every duration the loop learns from -- between the years 1900 and
8999 in UTC (what every date the loop and the export write can hold). `resource` is optional;
every other column is a case attribute (the first non-empty value per case counts).
Task names need not be tasks of the registered spec: history may come from another
system, and the loop compares it by name.

Rows are paired into items per (case, task) in time order: an enabled row opens an
item, started and completed fill it, completed closes it; a task repeated in a case
gives several items. A row the item has already (the same event at the same time, by
the same resource or none) is one event listed twice, as overlapping exports imported
one by one are. An item may lack any of its three times (logs that record only
completions are common). An item without an enabled row whose next occurrence has
nothing but that enabled row, listed *before* it in the file, is one item whose
completion precedes its enabling in time: a wrong timestamp, refused.

Import is all or nothing: every problem is located by its 1-based line in the file
(the header is line 1; a quoted field may span lines, a row is located by its first)
and a file with any problem writes nothing. A good file is written in one
transaction under a new import id, then absorbed into the Monitor as observations
with source "import". The whole path is plain loops over the csv module and one
executemany: 100,000 rows take about a second (bench/history_import.py).

Spreadsheets run a cell that begins with =, +, -, @, a tab or a carriage return as a
formula, so a deal named `=HYPERLINK(...)` would act when an export is opened in
Excel. The export writes such text with a leading apostrophe, the spreadsheet's own
mark for "this is text" (`spreadsheet_safe`), and the import takes one apostrophe off
a cell that has one or more before such a character (`spreadsheet_text`): an export
comes back as the very text it was written from, a text that itself began with
apostrophes included. Numbers are left as they are (-5 is a number, not a formula),
and so are the timestamps. This applies to every text column and to the header's
attribute names.

Exports overlap: a monthly "last 90 days" report repeats two months of the one before.
An item the workflow has imported already -- the same case and task, sharing its
enabled, started or completed time -- is not written again: what the new file knows
more of it (a completion since, who did it) updates the row it has, the rest is a
duplicate and skipped. The very same file is recognised whole by its digest.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import math
import re
import sqlite3
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from mapek.monitor import Monitor, Observation

REQUIRED = ("case_id", "task", "event", "timestamp")
RESERVED = (*REQUIRED, "resource")
# Lifecycle rank of each accepted event name: ours and XES's lifecycle transitions.
EVENTS = {"enabled": 0, "schedule": 0, "started": 1, "start": 1, "completed": 2,
          "complete": 2}
LIFECYCLE = ("enabled", "started", "completed")
# Times the loop and the export can turn into dates, in any time zone and rounded to the
# quarter hour: 0001-01-01T00:00+01:00 is year 0 in UTC, which no date can hold, and one
# such item made every recommendation, analysis and export fail, for good.
EARLIEST_YEAR, LATEST_YEAR = 1900, 9000
EARLIEST = dt.datetime(EARLIEST_YEAR, 1, 1, tzinfo=dt.UTC).timestamp()
LATEST = dt.datetime(LATEST_YEAR, 1, 1, tzinfo=dt.UTC).timestamp()
MAX_PROBLEMS = 20  # a file wrong throughout says so in 20 lines, not 100,000

# A cell a spreadsheet would run as a formula: its first character after any number of
# apostrophes (an apostrophe before one of them is the escape, which must escape too).
_FORMULA = re.compile("'*[=+\\-@\t\r]")
_FORMULA_FIRST = frozenset("'=+-@\t\r")
_ESCAPED = re.compile("'+[=+\\-@\t\r]")
# A plain decimal number: a spreadsheet reads it as a number, never as a formula.
_NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")

# Numbers in attribute columns become numbers (ACV, discount segment the loop's
# statistics); a leading zero keeps a value a string (zip codes, account numbers).
_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+(?:[eE][-+]?[0-9]+)?")


class HistoryInvalid(Exception):
    """A file refused whole; `problems` are (\"line N: column\", problem) pairs."""

    def __init__(self, problems: list[tuple[str, str]], more: bool = False) -> None:
        first = f"{problems[0][0]}: {problems[0][1]}"
        shown = f"the first {len(problems)}" if more else str(len(problems))
        super().__init__(f"{shown} problem(s) in the file, nothing imported; {first}")
        self.message = str(self)
        self.problems = problems


# One work item: case_id, task, resource, enabled_at, started_at, completed_at.
Item = tuple[str, str, str | None, float | None, float | None, float | None]


@dataclass
class History:
    """A checked file: its items in file-independent order and its case attributes."""

    rows: int
    items: list[Item]
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def cases(self) -> int:
        return len({i[0] for i in self.items})


def parse_time(text: str) -> float:
    """ISO 8601 with a UTC offset (or Z) -> epoch seconds; ValueError otherwise."""
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {text!r}") from None
    if t.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset; write it as e.g. "
                         "2025-03-03T09:00:00+01:00 or 2025-03-03T08:00:00Z")
    try:
        at = t.timestamp()
    except (OverflowError, ValueError):
        raise ValueError(f"{text!r} is out of range") from None
    if not EARLIEST <= at < LATEST:
        raise ValueError(f"{text!r} is out of range: history from {EARLIEST_YEAR} to "
                         f"{LATEST_YEAR - 1} (UTC)")
    return at


def spreadsheet_safe(text: str) -> str:
    """`text` as a CSV cell no spreadsheet runs as a formula; `spreadsheet_text` undoes it."""
    # The set test alone decides nearly every cell: it runs for each cell exported.
    if text[:1] in _FORMULA_FIRST and _FORMULA.match(text) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def spreadsheet_text(cell: str) -> str:
    """The text an exported cell was written from (see `spreadsheet_safe`). Asked of the
    raw cell, before the import trims it, so that trimming sees what it always saw."""
    # The first test alone decides nearly every cell: it runs for each cell imported.
    return cell[1:] if cell[:1] == "'" and _ESCAPED.match(cell) else cell


def attribute_value(text: str) -> Any:
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        x = float(text)
        # "1.0e999" is inf: stored, it would be JSON's invalid `Infinity`, which
        # SQLite's json_patch refuses when a later import updates the item.
        return x if math.isfinite(x) else text
    return text


def parse_history(data: bytes) -> History:
    """Check a CSV event log and pair its rows into items; HistoryInvalid if not fit."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise HistoryInvalid([(f"line {line}: body", f"not UTF-8 text (byte {exc.start})")],
                             ) from None
    if not text.strip():
        raise HistoryInvalid([("line 1: header", "empty file: expected a header row "
                               "case_id,task,event,timestamp[,resource][,attributes...]")])
    problems: list[tuple[str, str]] = []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1  # the line the next record begins on
    try:
        header: list[str] = []
        while not header:
            header_line = start
            header = next(reader)
            start = reader.line_num + 1
        columns = _columns(header, header_line)
        ic, it, ie, its = (columns[n] for n in REQUIRED)
        ir = columns.get("resource")
        extra = [(j, name) for name, j in columns.items() if name not in RESERVED]
        width = len(header)
        groups: dict[tuple[str, str], list[tuple[float, int, int, str | None]]] = {}
        attributes: dict[str, dict[str, Any]] = {}
        rows = 0
        for row in reader:
            line, start = start, reader.line_num + 1
            if not row or row == [""]:
                continue  # a blank line
            rows += 1
            if len(row) != width:
                problems.append((f"line {line}: row",
                                 f"{len(row)} fields; the header has {width}"))
            else:
                case_id = spreadsheet_text(row[ic]).strip()
                task = spreadsheet_text(row[it]).strip()
                rank = EVENTS.get(row[ie].strip().lower())
                bad = len(problems)
                if not case_id:
                    problems.append((f"line {line}: case_id", "empty"))
                if not task:
                    problems.append((f"line {line}: task", "empty"))
                if rank is None:
                    problems.append((f"line {line}: event", f"{row[ie]!r} is not one of "
                                     "enabled, started, completed (or XES schedule, start, "
                                     "complete)"))
                try:
                    at = parse_time(row[its].strip())
                except ValueError as exc:
                    problems.append((f"line {line}: timestamp", str(exc)))
                if len(problems) == bad:
                    resource = (spreadsheet_text(row[ir]).strip() or None
                                ) if ir is not None else None
                    groups.setdefault((case_id, task), []).append(
                        (at, rank, line, resource))  # type: ignore[arg-type]
                    if extra:
                        kept = attributes.setdefault(case_id, {})
                        for j, name in extra:
                            value = spreadsheet_text(row[j]).strip()
                            if value and name not in kept:
                                kept[name] = attribute_value(value)
            if len(problems) >= MAX_PROBLEMS:
                raise HistoryInvalid(problems, more=True)
    except csv.Error as exc:
        problems.append((f"line {start}: row", f"not CSV: {exc}"))
    if problems:
        raise HistoryInvalid(problems)
    if not rows:
        raise HistoryInvalid([(f"line {start}: row", "no rows after the header")])
    items = _pair(groups)
    return History(rows, items, {k: v for k, v in attributes.items() if v})


def _columns(header: list[str], line: int) -> dict[str, int]:
    """Column name -> index; the reserved names are matched without regard to case."""
    names = [spreadsheet_text(h).strip() for h in header]
    names = [n.lower() if n.lower() in RESERVED else n for n in names]
    problems = []
    # A header may be 50 MiB of column names: duplicates are found through a dict (a
    # list search per column was quadratic: a 1 MB header took two minutes), and the
    # refusal lists at most MAX_PROBLEMS of them (a header of commas once answered
    # with 66 bytes of error per byte sent).
    columns: dict[str, int] = {}
    for j, n in enumerate(names):
        if not n:
            problems.append((f"line {line}: header", f"column {j + 1} has no name"))
        elif n in columns:
            problems.append((f"line {line}: header", f"column {n!r} appears twice"))
        else:
            columns[n] = j
        if len(problems) >= MAX_PROBLEMS:
            raise HistoryInvalid(problems, more=True)
    missing = [n for n in REQUIRED if n not in columns]
    if missing:
        found = ", ".join(names[:MAX_PROBLEMS]) + (
            f", ... ({len(names)} columns)" if len(names) > MAX_PROBLEMS else "")
        problems.append((f"line {line}: header", f"missing column(s) {', '.join(missing)} "
                         f"(required: {', '.join(REQUIRED)}; found: {found})"))
    if problems:
        raise HistoryInvalid(problems)
    return columns


def _pair(groups: dict[tuple[str, str], list[tuple[float, int, int, str | None]]],
          ) -> list[Item]:
    """Rows of each (case, task), in time order (ties: lifecycle order), into items."""
    items: list[Item] = []
    for (case_id, task), events in groups.items():
        events.sort()
        # The item being filled: times and lines by rank, the resource of its latest row.
        times: list[float | None] = [None, None, None]
        lines = [0, 0, 0]
        resource: str | None = None
        prev: tuple[list[float | None], list[int]] | None = None
        for at, rank, line, who in events:
            if times[rank] == at and (who is None or resource is None or who == resource):
                # The item has this very event already: the row is listed twice (two
                # overlapping exports pasted into one file), not a second item -- one
                # would stay open for ever, the other a completion with no start. (By
                # someone else it is another item: two people closing the same task
                # in the same second.)
                resource = who or resource
                continue
            if any(times[r] is not None for r in range(rank, 3)):
                _reversed(case_id, task, prev, times, lines)
                items.append((case_id, task, resource, times[0], times[1], times[2]))
                prev, times, lines, resource = (times, lines), [None, None, None], [0, 0, 0], None
            times[rank], lines[rank] = at, line
            resource = who or resource
        if any(t is not None for t in times):
            _reversed(case_id, task, prev, times, lines)
            items.append((case_id, task, resource, times[0], times[1], times[2]))
    return items


def _reversed(case_id: str, task: str, prev: tuple[list[float | None], list[int]] | None,
              times: list[float | None], lines: list[int]) -> None:
    """Refuse an item whose later rows come before its enabled row in time but after it
    in the file: the previous item has no enabled, this one nothing but what it lacks."""
    if prev is None or prev[0][0] is not None or times[0] is None:
        return
    had = [r for r in (1, 2) if prev[0][r] is not None]
    if any(times[r] is not None for r in had):
        return
    late = had[-1]
    if lines[0] < prev[1][late]:
        raise HistoryInvalid([(
            f"line {prev[1][late]}: timestamp",
            f"{case_id}/{task}: {LIFECYCLE[late]} at {_iso(prev[0][late])} precedes its "
            f"enabled at {_iso(times[0])} (line {lines[0]})")])


def _iso(t: float | None) -> str:
    return "?" if t is None else dt.datetime.fromtimestamp(t, dt.UTC).isoformat()


# ------------------------------------------------------------------- the store
_INSERT = ("INSERT INTO imported_items (import_id, workflow_id, case_id, task, resource,"
           " enabled_at, started_at, completed_at, attributes) VALUES (?,?,?,?,?,?,?,?,?)")
# An item imported before that a later file knows more of; the case's attributes are the
# new file's merged over what the row had (a column the new export lacks keeps its value).
_UPDATE = ("UPDATE imported_items SET resource = :resource, enabled_at = :enabled,"
           " started_at = :started, completed_at = :completed, attributes = CASE WHEN"
           " :attributes IS NULL THEN attributes ELSE json_patch(COALESCE(attributes, '{}'),"
           " :attributes) END WHERE rowid = :rowid")
T = TypeVar("T")


class Imported(NamedTuple):
    import_id: int
    created: bool  # false: this very history was imported before, as `import_id`
    added: int = 0  # items written anew
    updated: int = 0  # items imported before that this history completed or filled in
    duplicates: int = 0  # items imported before, as they were: skipped


def history_digest(history: History) -> str:
    """What a history says, not how its file said it: its items and each case's
    attributes, in an order of their own (a file's rows may come in any)."""
    def dump(x: Any) -> str:
        return json.dumps(x, ensure_ascii=False, separators=(",", ":"), sort_keys=True)

    body = dump([sorted(dump(i) for i in history.items), sorted(history.attributes.items())])
    return hashlib.sha256(body.encode()).hexdigest()


async def write_history(store: Any, workflow_id: str, history: History) -> Imported:
    """Every item in one transaction under a new import id. A history the workflow
    already imported is not written again: importing the same export twice would count
    every item twice in what the MAPE-K loop learns."""
    as_json = {case_id: json.dumps(a, ensure_ascii=False, separators=(",", ":"))
               for case_id, a in history.attributes.items()}
    digest = history_digest(history)

    def write(db: sqlite3.Connection) -> Imported:
        # Inside BEGIN IMMEDIATE: no other import can take the same id or digest.
        before = db.execute("SELECT import_id FROM history_imports WHERE workflow_id = ?"
                            " AND digest = ?", (workflow_id, digest)).fetchone()
        if before is not None:
            return Imported(int(before[0]), False)
        # An import may write no item (every one a repeat or an update): its id is
        # taken all the same, so the next comes from both tables.
        (import_id,) = db.execute(
            "SELECT COALESCE(MAX(import_id), 0) + 1 FROM (SELECT import_id FROM"
            " history_imports UNION ALL SELECT import_id FROM imported_items)").fetchone()
        new, updates, duplicates = _overlap(db, workflow_id, history)
        db.executemany(_INSERT, ((import_id, workflow_id, *i, as_json.get(i[0]))
                                 for i in new))
        db.executemany(_UPDATE, ({"resource": i[2], "enabled": i[3], "started": i[4],
                                  "completed": i[5], "attributes": as_json.get(i[0]),
                                  "rowid": rowid} for rowid, i in updates))
        db.execute("INSERT INTO history_imports (import_id, workflow_id, digest) VALUES"
                   " (?, ?, ?)", (import_id, workflow_id, digest))
        return Imported(int(import_id), True, len(new), len(updates), duplicates)

    return await store.write(write)  # type: ignore[no-any-return]


def _overlap(db: sqlite3.Connection, workflow_id: str, history: History,
             ) -> tuple[list[Item], list[tuple[int, Item]], int]:
    """Split `history`'s items into those new to the workflow, those imported before
    that it knows more of ((rowid, the merged item)), and how many it repeats as they
    were. Two items are one when case and task agree and they share a time."""
    cases = history.attributes.keys() | {i[0] for i in history.items}
    known: dict[tuple[str, str], list[tuple[int, Item]]] = {}
    for rowid, case_id, task, resource, enabled, started, completed in db.execute(
            "SELECT rowid, case_id, task, resource, enabled_at, started_at, completed_at"
            " FROM imported_items WHERE workflow_id = ?", (workflow_id,)):
        if case_id in cases:
            known.setdefault((case_id, task), []).append(
                (rowid, (case_id, task, resource, enabled, started, completed)))
    new: list[Item] = []
    updated: dict[int, Item] = {}
    duplicates = 0
    for item in history.items:
        same = next(((rowid, old) for rowid, old in known.get((item[0], item[1]), ())
                     if any(t is not None and t == o for t, o in zip(item[3:], old[3:],
                                                                      strict=True))), None)
        if same is None:
            new.append(item)
            continue
        rowid, old = same
        merged: Item = (old[0], old[1], _either(item[2], old[2]), _either(item[3], old[3]),
                        _either(item[4], old[4]), _either(item[5], old[5]))
        if merged == old:
            duplicates += 1
            continue
        # A later item of this file matching the same row sees it merged, and the row
        # is written once, as merged last.
        rows = known[(item[0], item[1])]
        rows[rows.index((rowid, old))] = (rowid, merged)
        updated[rowid] = merged
    return new, list(updated.items()), duplicates


def _either(new: T | None, old: T | None) -> T | None:
    """What the later file says, where it says anything."""
    return new if new is not None else old


class ImportedRow:
    """One row of `imported_items`, as the export and the monitor read it."""

    __slots__ = ("attributes", "case_id", "completed_at", "enabled_at", "item", "resource",
                 "started_at", "task", "workflow_id")

    def __init__(self, item: int, workflow_id: str, case_id: str, task: str,
                 resource: str | None, enabled_at: float | None, started_at: float | None,
                 completed_at: float | None, attributes: str | None) -> None:
        self.item, self.workflow_id, self.case_id, self.task = item, workflow_id, case_id, task
        self.resource, self.enabled_at = resource, enabled_at
        self.started_at, self.completed_at = started_at, completed_at
        self.attributes: dict[str, Any] = json.loads(attributes) if attributes else {}

    def observation(self) -> Observation:
        # An item known only by a later time is dated by it: the loop needs a start.
        first = next(t for t in (self.enabled_at, self.started_at, self.completed_at)
                     if t is not None)
        done = self.completed_at is not None
        return Observation(self.case_id, self.workflow_id, self.task, self.item, first,
                           self.started_at, self.completed_at,
                           "completed" if done else None, self.resource, source="import")


async def imported_rows(store: Any, workflow_id: str | None = None,
                        import_id: int | None = None) -> list[ImportedRow]:
    where, args = [], []
    if workflow_id is not None:
        where.append("workflow_id = ?")
        args.append(workflow_id)
    if import_id is not None:
        where.append("import_id = ?")
        args.append(import_id)
    rows = await store.query(
        "SELECT rowid, workflow_id, case_id, task, resource, enabled_at, started_at,"
        " completed_at, attributes FROM imported_items"
        + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY rowid",
        tuple(args))
    return [ImportedRow(*r) for r in rows]


async def load_imported(store: Any, workflow_id: str | None = None,
                        import_id: int | None = None) -> list[Observation]:
    return [r.observation() for r in await imported_rows(store, workflow_id, import_id)]


async def absorb_imported(monitor: Monitor, store: Any, workflow_id: str | None = None,
                          import_id: int | None = None) -> int:
    """Hand imported items to the Monitor as observations and their cases' attributes
    to `monitor.attributes`; -> how many items."""
    rows = await imported_rows(store, workflow_id, import_id)
    monitor.absorb(r.observation() for r in rows)
    for r in rows:
        if r.attributes:
            monitor.attributes.setdefault(r.case_id, {}).update(r.attributes)
    return len(rows)
