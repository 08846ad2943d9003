"""`caseloop serve`: by default the server's store writes from a process of its own
(adapters/sqlite_writer.py). A real server over a real file: it serves the tutorial's
first steps, a SIGTERM stops it and its writer cleanly, and the same database then
serves with `--writer thread`, with every acknowledged step there."""

from __future__ import annotations

import functools
import os
import pathlib
import signal
import subprocess
import sys
import time

import anyio
import httpx
import pytest
from http_kit import ROOT, Server, ServerFailed, in_process, poll

from adapters.sqlite_store import WRITER_ENV

API = "/api/v1"
DEAL = {"deal_name": "TechCorp", "customer_name": "TechCorp", "deal_acv": 120000,
        "discount_percent": 0}


def writer_of(pid: int, module: bytes = b"sqlite_writer") -> int | None:
    """The pid of `pid`'s child running the store's writer (or another `module`), if
    any (Linux /proc)."""
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_bytes().rsplit(b")", 1)[1].split()
            if int(fields[1]) == pid and module in (stat.parent / "cmdline").read_bytes():
                return int(stat.parent.name)
        except (OSError, ValueError, IndexError):
            continue
    return None


def writer_beside(srv: Server) -> int:
    """The pid of the running server's writer process (there must be one)."""
    assert srv.proc is not None
    child = writer_of(srv.proc.pid)
    assert child is not None, "no writer process beside the server"
    return child


def gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = pathlib.Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in (b"Z", b"X"):
            return True
        time.sleep(0.05)
    return False


def test_serve_with_the_writer_process_then_with_the_thread(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WRITER_ENV, raising=False)  # serve's own default
    srv = Server(tmp_path)
    srv.start()
    try:
        child = writer_beside(srv)
        r = httpx.post(f"{srv.url}{API}/workflows/deal-approval-gate/cases",
                       json={"case_id": "d1", "data": DEAL}, timeout=10)
        assert r.status_code == 201, r.text
        r = httpx.post(f"{srv.url}{API}/cases/d1/tasks/SendToFinance/complete",
                       json={"result": "approved"}, timeout=10)
        assert r.status_code == 200, r.text
        history = httpx.get(f"{srv.url}{API}/cases/d1/history", timeout=10).json()
        assert any(e["type"] == "TaskCompleted" for e in history["events"])
    finally:
        code = srv.stop()
    # uvicorn shuts down, then re-raises the SIGTERM it caught: -15 is a clean stop
    assert code in (0, -signal.SIGTERM) and "Application shutdown complete" in srv.stderr, \
        srv.stderr
    assert gone(child), "the writer process outlived the server"
    srv.start("--writer", "thread")
    try:
        assert srv.proc is not None and writer_of(srv.proc.pid) is None
        case = httpx.get(f"{srv.url}{API}/cases/d1", timeout=10).json()
        assert "SendToFinance" not in case["enabled_tasks"], case
        history = httpx.get(f"{srv.url}{API}/cases/d1/history", timeout=10).json()
        assert [e["task"] for e in history["events"] if e["type"] == "TaskCompleted"] == [
            "SendToFinance"]
    finally:
        srv.stop()


def test_a_sigterm_to_the_whole_group_leaves_the_writer_to_the_servers_stop(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """systemd's default stop (KillMode=control-group), `kill -TERM -PGID` and process
    supervisors signal every process of the service at once. The writer must not go at
    the signal: the server is still finishing the requests in flight, and their
    appends would fail with 503 in what is meant to be a graceful stop. It goes when
    the server's stop closes its pipe."""
    monkeypatch.delenv(WRITER_ENV, raising=False)
    srv = Server(tmp_path)
    srv.start()
    try:
        child = writer_beside(srv)
        assert srv.proc is not None
        tail = writer_of(srv.proc.pid, b"adapters.monitor_tail")
        assert tail is not None, "no monitor tail beside the server"
        os.kill(child, signal.SIGTERM)  # the group's signal, as it reaches the writer
        os.kill(tail, signal.SIGTERM)  # ... and the monitor's tail
        assert not gone(child, within=1.0), "the writer went at SIGTERM, mid-service"
        assert not gone(tail, within=0.1), "the monitor's tail went at SIGTERM"
        # What the server still does before its own stop reaches the writer: written.
        r = httpx.post(f"{srv.url}{API}/workflows/deal-approval-gate/cases",
                       json={"case_id": "d1", "data": DEAL}, timeout=10)
        assert r.status_code == 201, r.text
    finally:
        code = srv.stop()  # the group's signal, as it reaches the server
    assert code in (0, -signal.SIGTERM) and "Application shutdown complete" in srv.stderr, \
        srv.stderr
    assert "StoreUnavailable" not in srv.stderr, srv.stderr
    assert gone(child), "the writer process outlived the server"
    assert gone(tail), "the monitor's tail outlived the server"
    srv.start()
    try:
        case = httpx.get(f"{srv.url}{API}/cases/d1", timeout=10)
        assert case.status_code == 200, case.text
    finally:
        srv.stop()


def cli_import(db: pathlib.Path, csv: pathlib.Path, case_id: str
               ) -> subprocess.CompletedProcess[str]:
    csv.write_text("case_id,task,event,timestamp\n"
                   f"{case_id},Review,enabled,2025-03-03T09:00:00Z\n"
                   f"{case_id},Review,completed,2025-03-03T10:00:00Z\n")
    return subprocess.run([sys.executable, "-m", "adapters.cli", "import", "--db", str(db),
                           "--workflow", "deal-approval-gate", str(csv)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_a_second_server_on_the_same_database_is_refused(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two servers over one file would each arm the same timers and run the same
    automatic work (an action's effect twice), and each answer 500 for a command on a
    case the other had written since (its actor behind the log). The second is refused
    at start, naming the file; a server killed with SIGKILL leaves no lock behind."""
    monkeypatch.delenv(WRITER_ENV, raising=False)
    db = tmp_path / "caseloop.db"
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    first, second = Server(tmp_path / "first", db=db), Server(tmp_path / "second", db=db)
    (tmp_path / "link.db").symlink_to(db)  # the same file by another name
    third = Server(tmp_path / "second", db=tmp_path / "link.db")
    first.start()
    try:
        with pytest.raises(ServerFailed):
            second.start(timeout=60)
        assert "is already being served" in second.stderr and str(db) in second.stderr, \
            second.stderr
        assert "Traceback" not in second.stderr, second.stderr
        with pytest.raises(ServerFailed):
            third.start(timeout=60)
        assert "is already being served" in third.stderr, third.stderr
        r = httpx.post(f"{first.url}{API}/workflows/deal-approval-gate/cases",
                       json={"case_id": "d1", "data": DEAL}, timeout=10)
        assert r.status_code == 201, r.text
        assert first.proc is not None
        # A CLI import beside it is allowed, and told the server sees it after a restart
        imported = cli_import(db, tmp_path / "a.csv", "h1")
        assert imported.returncode == 0, imported.stderr
        assert f"being served (caseloop serve, pid {first.proc.pid})" in imported.stderr
        first.proc.kill()  # no stop of its own: the lock goes with the process
        first.proc.wait()
        imported = cli_import(db, tmp_path / "b.csv", "h2")
        assert imported.returncode == 0 and "being served" not in imported.stderr, \
            imported.stderr
        second.start()
        case = httpx.get(f"{second.url}{API}/cases/d1", timeout=10)
        assert case.status_code == 200, case.text
    finally:
        first.stop()
        second.stop()
        third.stop()


def test_a_killed_writer_is_said_in_the_log_refused_at_once_and_a_restart_recovers(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer killed under the server (the OOM killer, a stray kill -9): commands
    are refused at once with 503 and the store's code, readiness says so, the log says
    what happened to the writer (not only what the next command met), and a restart
    serves everything acknowledged before."""
    monkeypatch.delenv(WRITER_ENV, raising=False)
    srv = Server(tmp_path)
    srv.start()
    try:
        r = httpx.post(f"{srv.url}{API}/workflows/deal-approval-gate/cases",
                       json={"case_id": "d1", "data": DEAL}, timeout=10)
        assert r.status_code == 201, r.text
        child = writer_beside(srv)
        os.kill(child, signal.SIGKILL)
        poll(lambda: httpx.get(srv.url + "/health/ready", timeout=10).status_code,
             lambda code: code == 503)
        # and liveness: only a restart brings the store back, so a supervisor should
        live = httpx.get(srv.url + "/health", timeout=10)
        assert live.status_code == 503 and "restart" in live.json()["checks"]["store"], \
            live.text
        r = httpx.post(f"{srv.url}{API}/cases/d1/tasks/SendToFinance/complete",
                       json={"result": "approved"}, timeout=10)
        assert r.status_code == 503 and r.json()["error"]["code"] == 9001, r.text
        poll(lambda: srv.stderr, lambda err: "writer process" in err and "SIGKILL" in err)
    finally:
        srv.stop()
    srv.start()
    try:
        case = httpx.get(f"{srv.url}{API}/cases/d1", timeout=10).json()
        assert "SendToFinance" in case["enabled_tasks"], case
        r = httpx.post(f"{srv.url}{API}/cases/d1/tasks/SendToFinance/complete",
                       json={"result": "approved"}, timeout=10)
        assert r.status_code == 200, r.text
    finally:
        srv.stop()


@pytest.mark.anyio
async def test_readiness_says_when_the_writer_answers_nothing(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stopped writer (or a disk that does not return) fails nothing, so only the
    time it has held rounds unanswered tells: readiness turns 503 and says it."""
    monkeypatch.setattr("adapters.sqlite_store.WRITER_STALL_S", 0.3)
    async with in_process(tmp_path, writer="process") as api:
        assert (await api.get("/health/ready")).status_code == 200
        child = writer_of(os.getpid())
        assert child is not None
        os.kill(child, signal.SIGSTOP)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(functools.partial(
                    api.post, f"{API}/workflows/deal-approval-gate/cases",
                    json={"case_id": "d1", "data": DEAL}))
                await anyio.sleep(0.6)
                r = await api.get("/health/ready")
                assert r.status_code == 503, r.text
                assert "answered nothing" in r.json()["checks"]["store"], r.text
                os.kill(child, signal.SIGCONT)
            assert (await api.get("/health/ready")).status_code == 200
        finally:
            os.kill(child, signal.SIGCONT)
