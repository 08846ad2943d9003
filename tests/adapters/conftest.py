"""Fixtures for the adapter tests: the anyio backend and real `caseloop serve` processes.

- `caseloop_server`: a server on a fresh temp db for one test (a `http_kit.Server`:
  `.url`, `.stderr`, `.restart(*args)` over the same db);
- `caseloop_url`: the same, just its base URL;
- `module_server`: one server shared by the tests of a module;
- `server_factory`: start servers with extra arguments (`--tokens FILE`), on a given
  db if wanted; every one is stopped at the end of the test.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator

import pytest
from http_kit import Server, serving


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def db(tmp_path: pathlib.Path) -> str:
    """A fresh SQLite file for one test."""
    return str(tmp_path / "store.db")


@pytest.fixture
def caseloop_server(tmp_path: pathlib.Path) -> Iterator[Server]:
    with serving(tmp_path) as srv:
        yield srv


@pytest.fixture
def caseloop_url(caseloop_server: Server) -> str:
    return caseloop_server.url


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(tmp_path_factory.mktemp("caseloop")) as srv:
        yield srv


@pytest.fixture
def server_factory(tmp_path: pathlib.Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(*extra: str, db: pathlib.Path | None = None) -> Server:
        workdir = tmp_path / f"server{len(started)}"
        workdir.mkdir()
        srv = Server(workdir, db=db)
        started.append(srv)
        srv.start(*extra)
        return srv

    try:
        yield start
    finally:
        for srv in started:
            srv.stop()
