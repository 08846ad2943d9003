"""Work history out: a workflow's items -- from this engine's event log and from
imported files -- as a CSV event log or an XES log for process-mining tools.

Theory of operation
-------------------
`gather` collects the items of one workflow into traces, one per case: the Monitor's
observations of the log (caught up first; item by item: enabled, started, closed, by
whom) and the rows of `imported_items` read straight from the store, so the export
says what the store holds whether or not this process absorbed it. A trace carries
its case's attributes (the Monitor's for cases of the log, the file's for imported
ones) and its items; the writers turn each item into its lifecycle events in time
order.

- CSV has exactly the import's columns (case_id, task, event, timestamp, resource,
  then one column per attribute), so an export imported into another workflow gives
  the same items. Text a spreadsheet would run as a formula (a deal named "=..."
  or "@...") is written with a leading apostrophe, which the import takes off again
  (adapters.history.spreadsheet_safe). The import has no word for a cancellation,
  so cancelled items are left out of the CSV rather than coming back as work still
  open.
- XES (IEEE 1849-2016) declares the Concept, Lifecycle, Time and Organizational
  extensions: concept:name is the task, lifecycle:transition schedule / start /
  complete (ate_abort for a cancelled item), time:timestamp ISO 8601 with offset,
  org:resource the person. Case attributes are typed trace attributes.

Both writers are generators of text chunks, so a response can stream them.

At a year's scale (150,000 items of one workflow) pairing the items into traces is
seconds of Python: `gather` copies what it needs of the Monitor on the event loop (the
list of closed observations, which never change again; the open ones and the case
attributes, which the fold still updates, one by one) and builds the traces on a
worker thread, so a server answers other requests meanwhile.
"""

from __future__ import annotations

import copy
import csv
import datetime as dt
import io
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import quoteattr

import anyio

from adapters.history import RESERVED, ImportedRow, imported_rows, spreadsheet_safe
from mapek.monitor import Monitor, Observation

FORMATS = ("xes", "csv")
MEDIA = {"xes": "application/xml", "csv": "text/csv; charset=utf-8"}
CHUNK = 1 << 16
# CSV names of the lifecycle events, and XES's (the import reads both).
CSV_EVENT = ("enabled", "started", "completed")
XES_EVENT = ("schedule", "start", "complete", "ate_abort")


@dataclass(slots=True)
class ExportItem:
    task: str
    resource: str | None
    enabled_at: float | None
    started_at: float | None
    closed_at: float | None
    cancelled: bool = False

    @property
    def first(self) -> float:
        t = self.enabled_at
        if t is None:
            t = self.started_at if self.started_at is not None else self.closed_at
        assert t is not None  # an item has at least one of its times
        return t

    def events(self) -> Iterator[tuple[float, int, str | None]]:
        """(time, lifecycle rank, resource): the person on the events they did, and on
        the item's only event (a lone enabled row may name whom it was offered to)."""
        times = (self.enabled_at, self.started_at, self.closed_at)
        last = max(r for r, t in enumerate(times) if t is not None)
        for r, t in enumerate(times):
            if t is not None:
                yield t, (3 if r == 2 and self.cancelled else r), (
                    self.resource if r > 0 or last == 0 else None)

    def count(self) -> int:
        return ((self.enabled_at is not None) + (self.started_at is not None)
                + (self.closed_at is not None))


@dataclass(slots=True)
class Trace:
    case_id: str
    attributes: dict[str, Any] = field(default_factory=dict)
    items: list[ExportItem] = field(default_factory=list)

    def events(self, cancelled: bool = True) -> list[tuple[float, int, str, str | None]]:
        """(time, rank, task, resource) in time order. At one instant the item that
        began earlier goes first (a completion before the enabling it caused), and
        within an item the lifecycle's order."""
        # (at, first, rank, n) is unique (n: the item's place), so sorting the whole
        # tuples orders by it alone, with no key function.
        keyed = [(at, i.first, rank, n, i.task, who)
                 for n, i in enumerate(self.items) if cancelled or not i.cancelled
                 for at, rank, who in i.events()]
        keyed.sort()
        return [(at, rank, task, who) for at, _, rank, _, task, who in keyed]

    def count(self, cancelled: bool = True) -> int:
        """len(self.events(cancelled)), without ordering them."""
        return sum(i.count() for i in self.items if cancelled or not i.cancelled)


async def gather(store: Any, monitor: Monitor, workflow_id: str) -> list[Trace]:
    """Every case with items in the workflow, ordered by its first event."""
    await monitor.catch_up()
    # On the event loop, where the Monitor folds (see the module's docstring).
    closed = monitor.closed[:]
    still_open = [copy.copy(o) for o in monitor.open.values() if o.workflow_id == workflow_id]
    attributes = {c: dict(a) for c, a in monitor.attributes.items()}  # ~50 ms for 50k
    rows = await imported_rows(store, workflow_id)
    return await anyio.to_thread.run_sync(
        traces_of, workflow_id, closed, still_open, attributes, rows, abandon_on_cancel=True)


def traces_of(workflow_id: str, closed: Sequence[Observation], still_open: Sequence[Observation],
              attributes: Mapping[str, Mapping[str, Any]], rows: Sequence[ImportedRow],
              ) -> list[Trace]:
    """The workflow's traces from the Monitor's observations (closed, then open, as
    `Monitor.observations` yields them) and the store's imported rows."""
    traces: dict[str, Trace] = {}
    for pool in (closed, still_open):
        for o in pool:
            if o.workflow_id != workflow_id or o.source != "log":
                continue  # absorbed imports: read from the store, with their rows
            t = traces.get(o.case_id)
            if t is None:
                t = traces[o.case_id] = Trace(o.case_id, dict(attributes.get(o.case_id, {})))
            t.items.append(ExportItem(o.task, o.by, o.enabled_at, o.started_at, o.closed_at,
                                      o.outcome == "cancelled"))
    for r in rows:
        t = traces.get(r.case_id)
        if t is None:
            t = traces[r.case_id] = Trace(r.case_id)
        t.attributes.update(r.attributes)
        t.items.append(ExportItem(r.task, r.resource, r.enabled_at, r.started_at,
                                  r.completed_at))
    out = [t for t in traces.values() if t.items]
    out.sort(key=lambda t: (min(i.first for i in t.items), t.case_id))
    return out


def stamp(t: float) -> str:
    """Epoch seconds -> ISO 8601 in UTC with its offset, microseconds when there are."""
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat()


# ------------------------------------------------------------------------- CSV
def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def write_csv(traces: list[Trace]) -> Iterator[str]:
    names = sorted({k for t in traces for k in t.attributes} - set(RESERVED))
    buf = io.StringIO()
    w = csv.writer(buf)
    # Every cell that carries someone's text -- case data, names, imported history --
    # is made safe to open in a spreadsheet; the event and the timestamp are ours.
    w.writerow([*RESERVED, *map(spreadsheet_safe, names)])
    for t in traces:
        case_id = spreadsheet_safe(t.case_id)
        attrs = [spreadsheet_safe(_text(t.attributes.get(n))) for n in names]
        for at, rank, task, who in t.events(cancelled=False):
            w.writerow([case_id, spreadsheet_safe(task), CSV_EVENT[rank], stamp(at),
                        spreadsheet_safe(who or ""), *attrs])
        if buf.tell() > CHUNK:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


# ------------------------------------------------------------------------- XES
# Characters XML 1.0 cannot carry at all, even escaped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

_XES_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<log xes.version="1849-2016" xes.features="nested-attributes" \
xmlns="http://www.xes-standard.org/">
  <extension name="Concept" prefix="concept" uri="http://www.xes-standard.org/concept.xesext"/>
  <extension name="Lifecycle" prefix="lifecycle" \
uri="http://www.xes-standard.org/lifecycle.xesext"/>
  <extension name="Time" prefix="time" uri="http://www.xes-standard.org/time.xesext"/>
  <extension name="Organizational" prefix="org" uri="http://www.xes-standard.org/org.xesext"/>
  <global scope="trace">
    <string key="concept:name" value="__INVALID__"/>
  </global>
  <global scope="event">
    <string key="concept:name" value="__INVALID__"/>
    <string key="lifecycle:transition" value="complete"/>
    <date key="time:timestamp" value="1970-01-01T00:00:00+00:00"/>
  </global>
  <classifier name="Activity" keys="concept:name"/>
  <classifier name="Activity and transition" keys="concept:name lifecycle:transition"/>
"""


def _q(value: str) -> str:
    return quoteattr(_NOT_XML.sub("\ufffd", value))


def _typed(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return f'<boolean key={_q(key)} value="{"true" if value else "false"}"/>'
    if isinstance(value, int):
        return f'<int key={_q(key)} value="{value}"/>'
    if isinstance(value, float):
        text = repr(value) if math.isfinite(value) else (
            "NaN" if math.isnan(value) else "INF" if value > 0 else "-INF")
        return f'<float key={_q(key)} value="{text}"/>'
    return f"<string key={_q(key)} value={_q(_text(value))}/>"


def write_xes(traces: list[Trace], workflow_id: str) -> Iterator[str]:
    parts = [_XES_HEAD,
             f'  <string key="concept:name" value={_q(workflow_id)}/>\n'
             '  <string key="lifecycle:model" value="standard"/>\n']
    for t in traces:
        parts.append(f'  <trace>\n    <string key="concept:name" value={_q(t.case_id)}/>\n')
        parts += [f"    {_typed(k, v)}\n" for k, v in sorted(t.attributes.items())
                  if k != "concept:name"]
        for at, rank, task, who in t.events():
            parts.append(
                f'    <event>\n      <string key="concept:name" value={_q(task)}/>\n'
                f'      <string key="lifecycle:transition" value="{XES_EVENT[rank]}"/>\n'
                f'      <date key="time:timestamp" value="{stamp(at)}"/>\n'
                + (f'      <string key="org:resource" value={_q(who)}/>\n' if who else "")
                + "    </event>\n")
        parts.append("  </trace>\n")
        if len(parts) > 2000:
            yield "".join(parts)
            parts = []
    parts.append("</log>\n")
    yield "".join(parts)
