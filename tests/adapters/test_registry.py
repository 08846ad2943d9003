"""Workflow registration: idempotent for the same content, a new version for a change,
one version number per change even when changes arrive together, and the same nets
after a restart."""

from __future__ import annotations

import pathlib
from typing import Any

import anyio
import msgspec
import pytest

from actors import Runtime, VirtualClock
from actors.ports import SpecRow
from adapters.registry import Registry, spec_digest
from adapters.sqlite_store import SQLiteStore
from engine import SpecError, decode_spec

pytestmark = pytest.mark.anyio


def spec(task: str, version: int = 1) -> dict[str, Any]:
    return {"id": "approval", "version": version, "tasks": [{"id": task}],
            "flows": [{"from": "start", "to": task}, {"from": task, "to": "end"}]}


async def test_same_content_is_one_version_whatever_its_version_field(tmp_path: pathlib.Path,
                                                                     ) -> None:
    async with SQLiteStore(str(tmp_path / "r.db")) as store:
        reg = Registry(store, Runtime(store, VirtualClock(0.0)))
        first = await reg.register(spec("Approve"), 0.0)
        again = await reg.register(spec("Approve", version=7), 1.0)
        assert (first.created, again.created) == (True, False)
        assert again.net.version == first.net.version == 1
        assert spec_digest(decode_spec(spec("Approve"))) == first.digest


async def test_changes_registered_together_get_distinct_versions(tmp_path: pathlib.Path,
                                                                 ) -> None:
    db = str(tmp_path / "r.db")
    async with SQLiteStore(db) as store:
        rt = Runtime(store, VirtualClock(0.0))
        reg = Registry(store, rt)
        await reg.register(spec("Approve"), 0.0)
        versions: list[int] = []

        async def change(task: str) -> None:
            versions.append((await reg.register(spec(task), 1.0)).net.version)

        async with anyio.create_task_group() as tg:
            for t in ("Review", "Check", "Sign"):
                tg.start_soon(change, t)
        assert sorted(versions) == [2, 3, 4]
        tasks = {v: [t.id for t in rt.net("approval", v).tasks] for v in (1, 2, 3, 4)}
    async with SQLiteStore(db) as store:  # a restart compiles the same versions
        rt2 = Runtime(store, VirtualClock(0.0))
        assert await Registry(store, rt2).load() == 4
        assert {v: [t.id for t in rt2.net("approval", v).tasks] for v in (1, 2, 3, 4)} == tasks
        assert rt2.net("approval").version == 4


async def test_an_older_versions_content_again_is_the_next_version(tmp_path: pathlib.Path,
                                                                   ) -> None:
    """Posted, it is what new cases take: versions are immutable, so going back is a new
    version with the old content. The spec directory at start goes back to nothing."""
    db = str(tmp_path / "r.db")
    async with SQLiteStore(db) as store:
        rt = Runtime(store, VirtualClock(0.0))
        reg = Registry(store, rt)
        first = await reg.register(spec("Approve"), 0.0)
        await reg.register(spec("Review"), 1.0)
        back = await reg.register(spec("Approve"), 2.0)
        assert (back.created, back.net.version, back.digest) == (True, 3, first.digest)
        assert rt.net("approval").version == 3
        assert [t.id for t in rt.net("approval").tasks] == ["Approve"]
        assert [t.id for t in rt.net("approval", 2).tasks] == ["Review"]
        again = await reg.register(spec("Approve"), 3.0)
        assert (again.created, again.net.version) == (False, 3)
        at_start = await reg.register(spec("Review"), 4.0, at_start=True)
        assert (at_start.created, at_start.net.version) == (False, 2)
        assert rt.net("approval").version == 3
    async with SQLiteStore(db) as store:
        rt2 = Runtime(store, VirtualClock(0.0))
        assert await Registry(store, rt2).load() == 3
        assert rt2.net("approval").version == 3
        assert [t.id for t in rt2.net("approval").tasks] == ["Approve"]


async def test_a_stored_spec_with_an_id_no_longer_accepted_still_loads(
        tmp_path: pathlib.Path) -> None:
    # Ids are one URL segment since session 11, checked when registering; a database
    # holding an older id must still start (a review found it refused to).
    odd = {**spec("Approve"), "id": "Lead Qualification (EU)"}
    async with SQLiteStore(str(tmp_path / "r.db")) as store:
        rt = Runtime(store, VirtualClock(0.0))
        with pytest.raises(SpecError) as info:
            await Registry(store, rt).register(odd, 0.0)
        assert [p.path for p in info.value.problems] == ["/id"]
        await store.save_spec(SpecRow(odd["id"], 1, spec_digest(decode_spec(odd)),
                                      msgspec.json.encode(decode_spec(odd)).decode(), 0.0))
        assert await Registry(store, Runtime(store, VirtualClock(0.0))).load() == 1
