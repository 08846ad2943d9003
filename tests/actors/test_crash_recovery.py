"""Reliability: a real child process driving 50 concurrent cases over a real SQLite
file is killed with SIGKILL at a random moment; on restart nothing acknowledged is
lost, nothing is duplicated, every open case resumes and every deadline is pending.
With the store's writer in a process of its own, that writer does not outlive the
process it served (it reads EOF and exits: no orphan)."""

from __future__ import annotations

import os
import pathlib
import random
import signal
import sqlite3
import subprocess
import sys
import time
from typing import Any

import anyio
import pytest
from actors_kit import HUMAN_APPROVALS, ROOT, completed_tasks, spec_net, state

from actors import Runtime, VirtualClock, placeholder_actions
from adapters.sqlite_store import SQLiteStore
from engine import EngineError, replay
from engine.events import CaseCreated, decode_events
from engine.net import KIND_NAME

CHILD = pathlib.Path(__file__).with_name("crash_child.py")
DEAL = spec_net("deal-approval-gate")


def gone(pid: int, within: float) -> bool:
    """The process has exited (a zombie waiting for init counts) within `within` s."""
    deadline = time.monotonic() + within
    while True:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in (b"Z", b"X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def run_and_kill(tmp: pathlib.Path, seed: int, writer: str = "thread",
                 ) -> tuple[str, pathlib.Path]:
    db, acks, err = str(tmp / "crash.db"), tmp / "acks.txt", tmp / "child.err"
    with open(err, "w") as errf:
        proc = subprocess.Popen([sys.executable, str(CHILD), db, str(acks), str(seed),
                                 writer], stdout=subprocess.PIPE, stderr=errf, text=True,
                                cwd=ROOT)
        try:
            assert proc.stdout is not None
            word, pid = proc.stdout.readline().split()
            assert word == "ready", err.read_text()
            assert (int(pid) > 0) == (writer == "process")
            time.sleep(random.Random(seed).uniform(0.3, 1.5))
            assert proc.poll() is None, "the child stopped by itself:\n" + err.read_text()
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            if writer == "process":  # EOF on its stdin: it finishes its round, exits
                assert gone(int(pid), 10), "the writer process outlived its parent"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return db, acks


def acknowledged(acks: pathlib.Path) -> list[tuple[str, str]]:
    text = acks.read_text() if acks.exists() else ""
    lines = text.split("\n")[:-1]  # a line cut short by the kill was never promised
    return [(c, t) for c, t in (ln.split(" ") for ln in lines)]


def read_logs(db: str) -> tuple[dict[str, list[Any]], float]:
    """Every case's log straight from the file: contiguous numbers from 1, each append
    decodes to exactly its numbered events, first event CaseCreated."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT case_id, first_seq, last_seq, body FROM events"
                           " ORDER BY case_id, first_seq").fetchall()
        cases = dict(con.execute("SELECT case_id, seq FROM cases").fetchall())
    finally:
        con.close()
    logs: dict[str, list[Any]] = {}
    last_at = 0.0
    for cid, first, last, body in rows:
        log = logs.setdefault(cid, [])
        assert first == len(log) + 1, f"{cid}: gap or duplicate at event {first}"
        events = decode_events(body)
        assert len(events) == last - first + 1, f"{cid}: append {first}..{last} is torn"
        log += events
        last_at = max([last_at, *(getattr(e, "at", 0.0) for e in events)])
    for cid, log in logs.items():
        assert type(log[0]) is CaseCreated and log[0].case_id == cid
        assert cases.get(cid) == len(log), f"{cid}: cases projection out of step"
    assert set(cases) == set(logs)
    return logs, last_at


async def resume(rt: Runtime, case_id: str) -> str:
    """Complete whatever is open in a case (retrying failed items) until it ends."""
    for _ in range(40):
        case = await rt.get(case_id)
        if case.status != "active":
            return case.status
        human = [i for i in case.work_items()
                 if case.net.tasks[i.task].id in HUMAN_APPROVALS]
        try:
            if any(i.state == "failed" for i in human):
                failed = next(i for i in human if i.state == "failed")
                await rt.retry(case_id, failed.id, by="ops")
            elif human:
                await rt.complete(case_id, human[0].id, "approved")
            else:
                await rt.wait_idle()
        except EngineError:
            await anyio.sleep(0)  # e.g. a deadline fired just now: look again
    return (await rt.get(case_id)).status


async def verify(db: str, acked: list[tuple[str, str]]) -> None:
    logs, last_at = read_logs(db)
    replayed = {cid: replay(log, DEAL) for cid, log in logs.items()}  # no event twice
    # every acknowledged completion is in the log
    done = {cid: completed_tasks(log) for cid, log in logs.items()}
    missing = [(c, t) for c, t in acked if t not in done.get(c, [])]
    assert not missing, f"acknowledged but lost: {missing[:5]}"
    # projections written with the events: open items and pending deadlines
    con = sqlite3.connect(db)
    items = con.execute("SELECT case_id, item, task, state, due FROM work_items").fetchall()
    con.close()
    assert sorted(items) == sorted(
        (cid, i.id, c.net.tasks[i.task].id, i.state, i.due)
        for cid, c in replayed.items() for i in c.work_items())
    timers = {(cid, i, due) for cid, c in replayed.items() for i, due in c.pending_timers()}
    open_cases = [cid for cid, c in replayed.items() if c.status == "active"]
    async with SQLiteStore(db) as store:
        assert {(t.case_id, t.item, t.due) for t in await store.pending_timers()} == timers
        clock = VirtualClock(last_at)
        async with Runtime(store, clock, placeholder_actions(), snapshot_every=4) as rt:
            rt.add_net(DEAL)
            for cid, c in replayed.items():  # activation (snapshot + log) == replay
                quiet = not any(KIND_NAME[c.net.tasks[i.task].kind] != "human" or
                                (i.due is not None and i.due <= last_at)
                                for i in c.work_items())
                got = await rt.get(cid)
                if quiet:
                    assert state(got) == state(c)
            statuses: dict[str, str] = {}

            async def finish(cid: str) -> None:
                statuses[cid] = await resume(rt, cid)

            async with anyio.create_task_group() as tg:
                for cid in open_cases:
                    tg.start_soon(finish, cid)
            await rt.wait_idle()
            stuck = {c: s for c, s in statuses.items() if s != "completed"}
            assert not stuck, f"not resumable: {list(stuck.items())[:5]}"
            assert rt.incidents == []


@pytest.mark.parametrize(("seed", "writer"), [
    (101, "thread"), (202, "thread"), (303, "thread"), (404, "process"), (505, "process")])
def test_sigkill_loses_no_acknowledged_completion(tmp_path: pathlib.Path, seed: int,
                                                  writer: str) -> None:
    db, acks = run_and_kill(tmp_path, seed, writer)
    acked = acknowledged(acks)
    assert acked, "the child acknowledged nothing before the kill"
    anyio.run(verify, db, acked)
