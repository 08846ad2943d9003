"""The child process of the crash test: drives deal-approval-gate cases until killed.

    python crash_child.py DB ACKS SEED [WRITER]

Waves of 50 concurrent cases go through the real Runtime over the SQLite file DB.
After every acknowledged completion (the awaited `rt.complete` returned) it appends
"case_id task" to ACKS and fsyncs it, so the parent knows what was promised. Some
cases are left open on purpose (their 24 h deadlines stay pending), and between waves
the virtual clock moves on by up to 30 h, so earlier cases' deadlines come due and
fire while later waves run. Prints "ready PID" once it is about to start working
(PID: the store's writer process with WRITER "process", 0 with "thread", the
default); it never stops by itself: the parent kills it with SIGKILL.
"""

from __future__ import annotations

import os
import pathlib
import random
import sys

import anyio

from actors import Runtime, VirtualClock, placeholder_actions
from adapters.sqlite_store import SQLiteStore
from engine import EngineError, compile_document

ROOT = pathlib.Path(__file__).resolve().parents[2]
APPROVALS = ("SendToSalesManager", "SendToLegal", "SendToFinance", "ExecutiveCheck")
CASES_PER_WAVE = 50


async def worker(rt: Runtime, case_id: str, rng: random.Random, acks: int) -> None:
    data = {"deal_name": f"deal {case_id}", "customer_name": "TechCorp",
            "deal_acv": rng.choice([30_000, 120_000, 600_000]),
            "discount_percent": rng.choice([0, 0, 0.2])}
    await rt.create("deal-approval-gate", case_id, data)
    while True:
        case = await rt.get(case_id)
        if case.status != "active":
            return
        open_ = [t for t in case.enabled_tasks() if t in APPROVALS]
        if not open_ or rng.random() < 0.08:
            return  # left open: its deadline stays pending
        task = rng.choice(open_)
        result = "rejected" if rng.random() < 0.04 else "approved"
        await anyio.sleep(0)  # let the other cases interleave
        try:
            await rt.complete(case_id, task, result)
        except EngineError:
            continue  # e.g. its deadline fired meanwhile
        os.write(acks, f"{case_id} {task}\n".encode())  # one write: a whole line or none
        await anyio.to_thread.run_sync(os.fsync, acks)  # durable before we go on


async def main(db: str, acks_path: str, seed: int, writer: str) -> None:
    rng = random.Random(seed)
    net = compile_document((ROOT / "specs" / "deal-approval-gate.json").read_text())
    acks = os.open(acks_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    clock = VirtualClock(0.0)
    store = SQLiteStore(db, writer=writer)  # type: ignore[arg-type]
    async with store, Runtime(store, clock, placeholder_actions(), snapshot_every=4) as rt:
        rt.add_net(net)
        print(f"ready {store.writer_pid() or 0}", flush=True)
        wave = 0
        while True:
            async with anyio.create_task_group() as tg:
                for i in range(CASES_PER_WAVE):
                    tg.start_soon(worker, rt, f"w{wave}-c{i}", random.Random(rng.random()),
                                  acks)
            wave += 1
            clock.advance_to(clock.now() + rng.uniform(0, 30 * 3600))


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]),
              sys.argv[4] if len(sys.argv) > 4 else "thread")
