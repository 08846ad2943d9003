"""The loop's work in a worker process (mapek.offload, the server's way) gives what the
worker thread gives: the same recommendations from a cycle, the same analysis.

History from bench/mapek_eval.py's worlds with every kind of finding -- a dispatch
window (timing, estimated in the twin), a slow person (routing), a stuck approval
against its SLO (escalation), a queue (capacity) -- and lookups that matter to each:
roles, time zones, SLO terms and targets, the assignment deciding a task, the role an
escalation goes to. The process is a real one (anyio.to_process).
"""

from __future__ import annotations

import anyio
import msgspec
import numpy as np
import pytest

from adapters.sqlite_store import KnowledgeStore, SQLiteStore
from mapek.escalation import SloTerms
from mapek.loop import LoopSettings, MapeK
from mapek.monitor import Monitor, Observation
from mapek.policy import PolicyBook
from mapek.twin import run_task_twin

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def history(ev) -> list[Observation]:
    respond = ev.true_responder(ev.world("clear_effect"), 5)
    timing = [Observation(f"c{i}", "contract-processing", "SendForSignature", 1, t, t,
                          t + respond(i, t), "completed", source="import")
              for i, t in enumerate(ev.arrivals(np.random.default_rng(5), 1600, 56,
                                                ev.START))]
    slow, _ = ev.slow_person_world(6)
    queue, _ = ev.queue_world(6)
    return [*timing, *slow, *queue, *ev.approval_world(6, stuck=0.3)]


def lookups() -> dict:
    zones = {"legal0@acme.com": "America/New_York"}
    targets = {"SendToSalesManager": 4.0, "SendToLegal": 8.0, "JustifyDiscount": 24.0}
    return dict(
        time_zone_of=lambda person: zones.get(person) if person else None,
        target_of=lambda wf, task: targets.get(task),
        slo_of=lambda wf, task: (SloTerms(*ev_slo()) if task == "SendToSalesManager"
                                 else None),
        escalate_to=lambda role: "sales_director" if role == "sales_manager" else None,
        assigned_at=lambda wf, task: ("pricing-exception/AssignToSDR"
                                      if task == "JustifyDiscount" else None))


def ev_slo() -> tuple[float, float, float]:
    return (4.0, 24.0, 0.98)


def recommendations(loop: MapeK) -> list[tuple]:
    return sorted((r.type, r.workflow_id, r.task, r.description, r.confidence,
                   r.estimated_improvement, r.estimated_improvement_hours,
                   msgspec.to_builtins(r.change), msgspec.to_builtins(r.evidence))
                  for r in loop.recommendations.values())


async def test_a_cycle_and_an_analysis_in_a_worker_process_equal_the_threads(
        tmp_path, mapek_eval) -> None:
    obs = history(mapek_eval)
    now = max(o.closed_at for o in obs if o.closed_at) + 3600
    found = {}
    for offload in (False, True):
        async with SQLiteStore(str(tmp_path / f"{offload}.db")) as store:
            monitor = Monitor(store, role_of=lambda wf, task: None)
            monitor.absorb(msgspec.structs.replace(o) for o in obs)
            loop = MapeK(monitor, KnowledgeStore(store), PolicyBook(), twin=run_task_twin,
                         now=lambda: now, settings=LoopSettings(), offload=offload,
                         **lookups())
            await loop.load()
            with anyio.fail_after(300):
                assert await loop.cycle()
                analyses = {wf: msgspec.to_builtins(await loop.analysis(wf))
                            for wf in ("deal-approval-gate", "pricing-exception",
                                       "contract-processing")}
            found[offload] = (recommendations(loop), analyses)
    thread, process = found[False], found[True]
    assert {r[0] for r in thread[0]} >= {"timing_optimization", "routing_optimization",
                                          "escalation", "capacity"}, thread[0]
    assert process[0] == thread[0]
    assert process[1] == thread[1]
    assert any(a["slo"] for a in thread[1].values())  # the targets were asked for


async def test_a_twin_that_does_not_pickle_is_refused_in_a_process(tmp_path) -> None:
    """The process gets the twin by reference; a closure cannot go (loud, not a hang)."""
    obs = [Observation(f"c{i}", "wf", "Sign", 1, 1000.0 * i, None, 1000.0 * i + 600,
                       "completed") for i in range(300)]
    async with SQLiteStore(str(tmp_path / "db")) as store:
        monitor = Monitor(store)
        monitor.absorb(obs)
        loop = MapeK(monitor, KnowledgeStore(store), PolicyBook(),
                     twin=lambda *a: run_task_twin(*a), now=lambda: 1e6, offload=True)
        with pytest.raises(Exception, match=r"(?i)pickle|lambda"):
            await loop.cycle()


def _workers() -> list[int]:
    """This process's anyio.to_process children."""
    import os
    import pathlib

    me, out = os.getpid(), []
    for proc in pathlib.Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text()
            cmd = (proc / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == me and b"anyio.to_process" in cmd:
            out.append(int(proc.name))
    return out


async def test_a_ctrl_c_in_the_terminal_does_not_fail_the_loop_through_its_worker(
        tmp_path, mapek_eval) -> None:
    """The worker shares the server's process group: a Ctrl-C reaches it too. It ignores
    it (the server decides when to stop); before, the KeyboardInterrupt came back as the
    next call's answer and escaped the loop's `except Exception` (review finding)."""
    import os
    import signal

    obs, _ = mapek_eval.queue_world(6)
    async with SQLiteStore(str(tmp_path / "db")) as store:
        monitor = Monitor(store)
        monitor.absorb(obs)
        loop = MapeK(monitor, KnowledgeStore(store), PolicyBook(), twin=run_task_twin,
                     now=lambda: max(o.closed_at for o in obs) + 3600, offload=True)
        with anyio.fail_after(120):
            assert await loop.cycle()
            workers = _workers()  # ours, and any other test's still in anyio's pool
            assert workers
            for worker in workers:
                os.kill(worker, signal.SIGINT)  # idle, between two calls
            await anyio.sleep(0.5)
            assert set(_workers()) >= set(workers)
            assert await loop.cycle(force=True)  # answered, not a stray interrupt
