"""The store's encoded tail (`read_encoded`, what the Monitor reads) on real files: the
same appends as `read_events`, in commit order, whatever the window, and still whole
when a batch is longer than SQLite lets one value be."""

from __future__ import annotations

import json
import pathlib
import sqlite3
from typing import Any

import msgspec
import pytest

from actors import Runtime, VirtualClock, placeholder_actions
from adapters.sqlite_store import SQLiteStore
from engine import compile_document
from engine.events import Event

# Each of the store's writers: what the child commits reads back the same.
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("writer")]

ROOT = pathlib.Path(__file__).resolve().parents[2]
APPROVALS = ("SendToSalesManager", "SendToLegal", "SendToFinance", "ExecutiveCheck")
decode_batch = msgspec.msgpack.Decoder(list[list[Event]]).decode  # type: ignore[valid-type]



async def fill(store: SQLiteStore, cases: int) -> None:
    """Deals through all four approvals, interleaved: appends of many cases mix."""
    net = compile_document((ROOT / "specs" / "deal-approval-gate.json").read_text())
    deal = json.loads((ROOT / "specs" / "examples" / "techcorp-deal.json").read_text())
    async with Runtime(store, VirtualClock(0.0), placeholder_actions()) as rt:
        rt.add_net(net)
        for i in range(cases):
            await rt.create("deal-approval-gate", f"d{i}", dict(deal))
        for task in APPROVALS:
            for i in range(cases):
                await rt.complete(f"d{i}", task, "approved", {"approval": "APPROVED"}, "ana")
        await rt.wait_idle()


def as_read(tail: tuple[list[int], list[str], bytes]) -> list[tuple[int, str, list[Any]]]:
    positions, case_ids, events = tail
    return list(zip(positions, case_ids, decode_batch(events), strict=True))


async def test_the_encoded_tail_is_the_log_read_in_full(tmp_path: pathlib.Path) -> None:
    async with SQLiteStore(str(tmp_path / "store.db")) as store:
        assert as_read(await store.read_encoded()) == []
        await fill(store, 7)
        full = [(p, c, evs) for p, c, _first, evs in await store.read_events(0, 10**6)]
        assert len(full) > 40
        assert as_read(await store.read_encoded(0, 10**6)) == full
        for after, limit in ((0, 1), (3, 5), (full[-2][0], 10), (full[-1][0], 10)):
            want = [r for r in full if r[0] > after][:limit]
            assert as_read(await store.read_encoded(after, limit)) == want


async def test_a_batch_longer_than_sqlite_allows_one_value_is_read_whole(
        tmp_path: pathlib.Path) -> None:
    async with SQLiteStore(str(tmp_path / "store.db")) as store:
        await fill(store, 7)
        full = [(p, c, evs) for p, c, _first, evs in await store.read_events(0, 10**6)]
        reader = store._reader  # aiosqlite runs its connection on a thread of its own
        assert reader is not None
        biggest = max(len(b) for (b,) in await store.query("SELECT body FROM events"))
        old = await reader._execute(reader._conn.setlimit, sqlite3.SQLITE_LIMIT_LENGTH,
                                    4 * biggest)
        try:  # one append fits, the whole tail concatenated does not
            with pytest.raises(sqlite3.DataError):
                await store.query("SELECT group_concat(body, x'') FROM events")
            assert as_read(await store.read_encoded(0, 10**6)) == full
            assert as_read(await store.read_encoded(2, 3)) == full[2:5]
        finally:
            await reader._execute(reader._conn.setlimit, sqlite3.SQLITE_LIMIT_LENGTH, old)
