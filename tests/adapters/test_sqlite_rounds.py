"""A round of appends is written in one transaction, one statement per kind of row: the
projections it leaves must not depend on how a case's commands fell into rounds.

(No `__init__.py` in tests/adapters: see test_sqlite_store.py.)
"""

from __future__ import annotations

import pathlib
import sqlite3
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_sqlite_store import append_of, new_case

from actors.ports import Append
from adapters.sqlite_schema import create_schema
from adapters.sqlite_writer import RoundWriter

CASE_COLUMNS = ("workflow_id, workflow_version, state, created_at, updated_at, closed_at,"
                " seq")


def life_of_a_deal(case_id: str) -> tuple[list[Append], tuple[Any, ...]]:
    """The appends of a deal approved step by step to its end, and the cases row its
    last append describes. Created and ended are appends that open or close a phase
    (the whole cases row); every approval in between changes only time and version."""
    case, first = new_case(case_id)
    appends = [first]
    now = 0.0
    while case.state == "active":
        now += 60.0
        item = case.work_items()[0]
        appends.append(append_of(case, case.complete(item.id, now, "approved"), now))
    c = appends[-1].case
    return appends, (c.workflow_id, c.workflow_version, c.state, c.created_at,
                     c.updated_at, c.closed_at, c.seq)


def write_in_rounds(appends: list[Append], cuts: list[int], path: str = ":memory:",
                    ) -> tuple[Any, ...]:
    db = sqlite3.connect(path, isolation_level=None)
    create_schema(db)
    writer = RoundWriter()
    start = 0
    for end in [*sorted(set(cuts)), len(appends)]:
        if end > start:
            refused, _ = writer.write(db, appends[start:end], follow=False)
            assert refused == []
            start = end
    row = db.execute(f"SELECT {CASE_COLUMNS} FROM cases").fetchall()
    db.close()
    assert len(row) == 1
    return row[0]


def test_a_case_ending_in_the_round_of_its_last_approval_shows_its_last_version() -> None:
    # The approvals before the end only touch the row; the end rewrites it whole. In one
    # round the whole rows went in first and the touches after, so an earlier approval's
    # time and version overwrote the end's: a closed case updated before it closed.
    appends, last = life_of_a_deal("d1")
    assert not appends[-2].phases and appends[-1].phases  # a touch, then the end
    assert write_in_rounds(appends, [len(appends) - 2]) == last


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=20), max_size=8))
def test_the_cases_row_is_the_last_appends_however_the_rounds_fall(cuts: list[int]) -> None:
    appends, last = life_of_a_deal("d2")
    assert write_in_rounds(appends, [c for c in cuts if c < len(appends)]) == last


def test_opening_a_database_written_before_the_fix_repairs_its_cases_rows(
        tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "old.db")
    appends, last = life_of_a_deal("d3")
    write_in_rounds(appends, [], path=path)
    db = sqlite3.connect(path, isolation_level=None)
    # What the old writer left: the version and time of the append before the last.
    db.execute("UPDATE cases SET seq = seq - 1, updated_at = updated_at - 60")
    db.execute("PRAGMA user_version = 1")
    db.close()
    db = sqlite3.connect(path, isolation_level=None)
    create_schema(db)
    assert db.execute(f"SELECT {CASE_COLUMNS} FROM cases").fetchall() == [last]
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    db.close()
