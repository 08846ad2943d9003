"""The layers import downwards only: engine <- actors <- mapek <- adapters.

engine/ is pure: no async, no I/O, no clock, no randomness. Checked twice: statically
(every import statement in the layer's source) and dynamically (importing the package
in a fresh interpreter pulls in none of the forbidden modules).
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

OURS = {"engine", "actors", "mapek", "adapters"}
# Modules whose presence in engine/ would mean I/O, concurrency, a clock or chance.
IMPURE = {
    "asyncio", "anyio", "trio", "threading", "multiprocessing", "concurrent", "socket",
    "ssl", "select", "selectors", "subprocess", "os", "io", "pathlib", "shutil", "tempfile",
    "sqlite3", "aiosqlite", "asyncpg", "http", "urllib", "httpx", "starlette", "uvicorn",
    "time", "datetime", "random", "secrets", "signal", "logging",
}
ALLOWED_BELOW = {
    "engine": set(),
    "actors": {"engine"},
    "mapek": {"engine", "actors"},
    "adapters": {"engine", "actors", "mapek"},
}


def imports_of(layer: str) -> list[tuple[str, str]]:
    found = []
    for f in sorted((ROOT / layer).rglob("*.py")):
        tree = ast.parse(f.read_text(encoding="utf-8"), filename=str(f))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(f.name, a.name.split(".")[0]) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.append((f.name, node.module.split(".")[0]))
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED_BELOW))
def test_layer_imports_point_down(layer: str) -> None:
    bad = [(f, m) for f, m in imports_of(layer)
           if m in OURS and m != layer and m not in ALLOWED_BELOW[layer]]
    assert not bad, f"{layer}/ imports upwards or sideways: {bad}"


def test_engine_source_imports_nothing_impure() -> None:
    bad = [(f, m) for f, m in imports_of("engine") if m in IMPURE]
    assert not bad, f"engine/ must stay pure (no I/O, async, clock, randomness): {bad}"


# msgspec itself loads datetime and uuid (and so _socket); what matters at run time is
# that the engine drags in no event loop, database, server or process machinery.
HEAVY = {"asyncio", "anyio", "trio", "sqlite3", "aiosqlite", "asyncpg", "starlette", "uvicorn",
         "httpx", "subprocess", "multiprocessing", "concurrent", "selectors", "threading"}


def test_importing_engine_loads_nothing_impure() -> None:
    forbidden = HEAVY | (OURS - {"engine"})
    probe = (
        "import sys; before = set(sys.modules); import engine; "
        "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
        f"print(sorted(new & set({sorted(forbidden)!r})))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "[]", f"importing engine pulled in: {out}"
