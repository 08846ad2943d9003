"""An event store in memory: the runtime's store port with no disk, for the twin.

Theory of operation
-------------------
The digital twin runs the real runtime thousands of times faster than people work;
a database would make every simulated completion wait for a commit. This store keeps
the same tables as the SQLite store (adapters/sqlite_store.py) as dicts and lists and
follows the same rules, so a case behaves here exactly as it does in production:

* an append must continue its case's log exactly where it ends (`first_seq` is the
  log's last number + 1), else `AppendConflict` -- the log is the truth, not the
  cases projection;
* a snapshot is stored with the sequence number it covers (the case row's `seq`);
  `load` returns it with the events after it, cutting a batch that straddles it;
* the work-items projection is upserted and deleted as the append says (an upsert of
  a known item changes only its state, due time and assignee, like the SQL upsert);
  pending timers are the items with a due time, open items are ordered by enabled_at;
* phases open per (case, workflow) and close every open phase of the case;
* every append gets a position, so `read_events` tails the log like the monitor does
  on SQLite.

An append is "durable" as soon as it is applied, so it never suspends: commit order is
call order trivially. Events are kept as the objects the runtime appended (they are
frozen structs; the engine replaces case data rather than mutating it), not encoded,
which is what makes the twin fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from actors.ports import (
    Append,
    AppendConflict,
    CaseRow,
    ItemRow,
    Notice,
    SpecRow,
    StoredCase,
    TimerKey,
    TimerRow,
)


class _Phase(msgspec.Struct):
    version: int
    entered_at: float
    left_at: float | None = None
    outcome: str | None = None


class MemoryStore:
    """actors.ports.EventStore in memory (plus the reads the twin and the monitor use)."""

    def __init__(self) -> None:
        # (pos, case_id, first_seq, events): the whole log in commit order.
        self._log: list[tuple[int, str, int, list[Any]]] = []
        self._by_case: dict[str, list[tuple[int, int, list[Any]]]] = {}  # first, last, events
        self._snapshots: dict[str, tuple[int, bytes]] = {}
        self._cases: dict[str, CaseRow] = {}
        self._items: dict[tuple[str, int], ItemRow] = {}
        self._phases: dict[str, dict[str, _Phase]] = {}
        self._specs: dict[tuple[str, int], SpecRow] = {}
        self.outbox: dict[str, tuple[str, Notice]] = {}  # key -> (case_id, notice)

    # -------------------------------------------------------------------- appends
    async def append(self, batch: Append) -> None:
        cid = batch.case_id
        runs = self._by_case.get(cid)
        end = runs[-1][1] if runs else 0
        if batch.first_seq != end + 1:
            raise AppendConflict(cid, batch.first_seq)
        last = batch.first_seq + len(batch.events) - 1
        events = list(batch.events)
        if runs is None:
            runs = self._by_case[cid] = []
        runs.append((batch.first_seq, last, events))
        self._log.append((len(self._log) + 1, cid, batch.first_seq, events))
        c = batch.case
        old = self._cases.get(cid)
        # The SQL upsert keeps created_at of the first row.
        self._cases[cid] = c if old is None else msgspec.structs.replace(
            c, created_at=old.created_at)
        items = self._items
        for it in batch.item_upserts:
            key = (cid, it.item)
            known = items.get(key)
            items[key] = it if known is None else msgspec.structs.replace(
                known, state=it.state, due=it.due, assignee=it.assignee)
        for item in batch.item_deletes:
            items.pop((cid, item), None)
        if batch.snapshot is not None:
            self._snapshots[cid] = (c.seq, batch.snapshot)
        for p in batch.phases or ():
            phases = self._phases.setdefault(cid, {})
            if p.op == "open":
                phases[p.workflow_id] = _Phase(p.version, p.at)
            else:
                for ph in phases.values():
                    if ph.left_at is None:
                        ph.left_at, ph.outcome = p.at, p.outcome
        for n in batch.notices or ():
            self.outbox.setdefault(n.key, (n.case_id or cid, n))

    # ---------------------------------------------------------------------- reads
    async def load(self, case_id: str) -> StoredCase | None:
        snap = self._snapshots.get(case_id)
        runs = self._by_case.get(case_id)
        if snap is None and not runs:
            return None
        after = snap[0] if snap else 0
        events: list[Any] = []
        for first, last, batch in runs or ():
            if last > after:
                events += batch[max(0, after + 1 - first):]
        return StoredCase(case_id, snap[1] if snap else None, after, events)

    async def case_exists(self, case_id: str) -> bool:
        return case_id in self._cases

    async def events(self, case_id: str) -> list[Any]:
        """The whole log of one case, from its first event."""
        return [e for _, _, batch in self._by_case.get(case_id, ()) for e in batch]

    async def read_events(self, after_pos: int = 0, limit: int = 10_000,
                          ) -> list[tuple[int, str, int, list[Any]]]:
        """Appends after a position, in commit order: (pos, case_id, first_seq, events)."""
        start = max(0, after_pos)  # positions are 1..len: list index = pos - 1
        return [(p, c, f, list(e)) for p, c, f, e in self._log[start:start + limit]]

    async def pending_timers(self, after: TimerKey | None = None,
                             limit: int | None = None) -> list[TimerRow]:
        rows = [TimerRow(it.case_id, it.item, it.due) for it in self._items.values()
                if it.due is not None]
        if after is not None:
            rows = [r for r in rows if r.key() > after]
        rows.sort(key=TimerRow.key)
        return rows if limit is None else rows[:limit]

    async def open_items(self, kind: str | None = None) -> list[ItemRow]:
        rows = [it for it in self._items.values() if kind is None or it.kind == kind]
        rows.sort(key=lambda r: r.enabled_at)
        return rows

    async def open_phases(self) -> list[tuple[str, str, float]]:
        return [(cid, wf, ph.entered_at) for cid, phases in self._phases.items()
                for wf, ph in phases.items() if ph.left_at is None]

    async def phases(self, workflow_id: str, since: float,
                     ) -> list[tuple[float, float | None, str | None]]:
        """(entered_at, left_at, outcome) of the cases that entered a workflow since."""
        return [(ph.entered_at, ph.left_at, ph.outcome) for phases in self._phases.values()
                if (ph := phases.get(workflow_id)) is not None and ph.entered_at >= since]

    async def open_counts(self, people: Sequence[str]) -> dict[str, int]:
        """Open work items assigned to each person (least-loaded assignment)."""
        wanted = set(people)
        out: dict[str, int] = {}
        for it in self._items.values():
            if it.assignee in wanted:
                out[it.assignee] = out.get(it.assignee, 0) + 1  # type: ignore[index]
        return out

    def cases(self) -> list[CaseRow]:
        """The cases projection, in order of creation."""
        return sorted(self._cases.values(), key=lambda c: (c.created_at, c.case_id))

    async def count_events(self) -> int:
        return sum(len(e) for _, _, _, e in self._log)

    # ---------------------------------------------------------------------- specs
    async def save_spec(self, row: SpecRow) -> None:
        self._specs.setdefault((row.workflow_id, row.version), row)  # INSERT OR IGNORE

    async def specs(self) -> list[SpecRow]:
        return [self._specs[k] for k in sorted(self._specs)]
