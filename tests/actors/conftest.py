"""Fixtures for the runtime tests: the anyio backend and a fresh database path.

There is deliberately no `__init__.py` in tests/actors (nor tests/adapters): with
pytest's default import mode a package directory named `actors` would be imported as
the top-level package `actors` and shadow the real one. Helpers shared by the test
modules live in `actors_kit.py` (a unique module name on the rootdir sys.path).
"""

from __future__ import annotations

import pathlib

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def db(tmp_path: pathlib.Path) -> str:
    """A real SQLite file for one test."""
    return str(tmp_path / "caseloop.db")
