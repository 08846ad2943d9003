"""A real `caseloop serve` in a subprocess, for the HTTP tests (no fakes, no ASGI shortcut).

    with serving(tmp_path) as srv:              # free port, temp db, specs/ registered
        httpx.get(srv.url + "/health/ready")
        srv.restart()                           # same db, new process (durability)
        srv.restart("--tokens", str(tokens))    # same db, token mode

`Server.start` waits for `GET /health/ready` == 200 (20 s by default) and fails with
the server's stderr in the message otherwise; `Server.stop` sends SIGTERM, then kills
after a grace period. The fixtures in `conftest.py` wrap this.

`in_process(tmp_path, **settings)` is the other way in: the same app (create_app, its
lifespan, a SQLite file under tmp_path, the shipped specs) called in-process through
httpx.ASGITransport, for tests of one refusal or answer that need no process.

This module has a unique name on purpose: tests/adapters has no `__init__.py` (a
package named `adapters` there would shadow the real one), so pytest puts this
directory on sys.path and the test modules import `http_kit` directly.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
READY_TIMEOUT = 20.0
STOP_GRACE = 10.0


@contextlib.asynccontextmanager
async def in_process(tmp_path: pathlib.Path, **settings: Any,
                     ) -> AsyncIterator[httpx.AsyncClient]:
    from adapters.http import Settings, create_app

    app = create_app(Settings(db=str(tmp_path / "t.db"), specs=str(SPECS), **settings))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app, raise_app_exceptions=False),
            base_url="http://127.0.0.1") as client:
        yield client


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerFailed(AssertionError):
    """The server did not become ready (its stderr is in the message)."""


class Server:
    """One database; any number of consecutive server processes over it."""

    def __init__(self, workdir: pathlib.Path, *, db: pathlib.Path | None = None,
                 specs: pathlib.Path | None = SPECS) -> None:
        self.workdir = workdir
        self.db = db or workdir / "caseloop.db"
        self.specs = specs
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.starts = 0
        self._log: pathlib.Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stderr(self) -> str:
        """Everything the current (or last) process wrote to stderr."""
        if self._log is None or not self._log.exists():
            return ""
        return self._log.read_text(encoding="utf-8", errors="replace")

    def start(self, *extra: str, timeout: float = READY_TIMEOUT) -> str:
        """Start a server over `self.db` with `extra` arguments; -> its base URL."""
        if self.proc is not None:
            raise RuntimeError("already running: stop() or restart() first")
        for attempt in range(3):  # a free port can be taken between probe and bind
            self.port = free_port()
            self.starts += 1
            self._log = self.workdir / f"server-{self.starts}.stderr"
            cmd = [sys.executable, "-m", "adapters.cli", "serve", "--host", "127.0.0.1",
                   "--port", str(self.port), "--db", str(self.db), "--no-access-log"]
            cmd += ["--specs", str(self.specs)] if self.specs else ["--no-specs"]
            cmd += list(extra)
            env = {k: v for k, v in os.environ.items() if k != "CASELOOP_TOKENS"}
            with self._log.open("wb") as err:
                self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=err)
            try:
                self._wait_ready(timeout)
                return self.url
            except ServerFailed:
                self.stop()
                if "address already in use" in self.stderr.lower() and attempt < 2:
                    continue
                raise
        raise AssertionError("unreachable")

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise ServerFailed(f"caseloop serve exited with {code} before it was ready; "
                                   f"stderr:\n{self.stderr}")
            try:
                r = httpx.get(self.url + "/health/ready", timeout=2.0)
                if r.status_code == 200:
                    return
                last = f"{r.status_code} {r.text}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.05)
        raise ServerFailed(f"caseloop serve not ready within {timeout:g} s (last: {last}); "
                           f"stderr:\n{self.stderr}")

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after a grace period; -> the exit code (None if not running)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
        return proc.wait()

    def restart(self, *extra: str, timeout: float = READY_TIMEOUT) -> str:
        """Stop, then start again over the same database (new port); -> the new URL."""
        self.stop()
        return self.start(*extra, timeout=timeout)


@contextlib.contextmanager
def serving(workdir: pathlib.Path, *extra: str, db: pathlib.Path | None = None,
            specs: pathlib.Path | None = SPECS) -> Iterator[Server]:
    """A started server; always stopped on the way out."""
    srv = Server(workdir, db=db, specs=specs)
    try:
        srv.start(*extra)
        yield srv
    finally:
        srv.stop()


def make_tokens(workdir: pathlib.Path, *users: str) -> tuple[pathlib.Path, dict[str, str]]:
    """Mint bearer tokens with `caseloop token create`; -> (tokens file, user -> token)."""
    path = workdir / "tokens.yaml"
    out = {}
    for user in users:
        done = subprocess.run([sys.executable, "-m", "adapters.cli", "token", "create", user,
                               "--tokens", str(path), "--roles", str(SPECS / "roles.yaml")],
                              cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        out[user] = done.stdout.strip().splitlines()[0]
    return path, out


def poll(fetch: Callable[[], Any], until: Callable[[Any], bool], timeout: float = 10.0) -> Any:
    """fetch() until until(result): what a server does after answering (automatic work,
    the outbox) is awaited by looking, not by sleeping a guessed time."""
    deadline = time.monotonic() + timeout
    last = fetch()
    while not until(last):
        if time.monotonic() > deadline:
            pytest.fail(f"not reached within {timeout:g} s; last: {last}")
        time.sleep(0.05)
        last = fetch()
    return last
