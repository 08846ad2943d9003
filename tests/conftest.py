"""Hypothesis for shared, noisy machines: timing is not what the property tests test.

A CI machine running other jobs can make input generation or one example slow; the
health check for slow generation and the per-example deadline would then fail a test
whose property holds. Both are off for every property test (a test may still set its
own settings on top).
"""

import importlib.util
import pathlib
import sys
import types

import pytest
from hypothesis import HealthCheck, settings

from adapters.sqlite_store import WRITER_ENV

settings.register_profile("caseloop", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("caseloop")


def load_mapek_eval() -> types.ModuleType:
    """bench/mapek_eval.py (worlds with known timing effects), loaded once: the MAPE-K
    tests build their histories from it."""
    if "mapek_eval" not in sys.modules:
        path = pathlib.Path(__file__).resolve().parents[1] / "bench" / "mapek_eval.py"
        spec = importlib.util.spec_from_file_location("mapek_eval", path)
        mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules["mapek_eval"] = mod
        spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return sys.modules["mapek_eval"]


@pytest.fixture(scope="session")
def mapek_eval() -> types.ModuleType:
    return load_mapek_eval()


SIMULATED_DEALS = 1500  # enough closed e-signatures (> 200) for a timing recommendation


@pytest.fixture(scope="session")
def simulated_db(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A store filled by `caseloop simulate` (seasonal, 30 days to today, seed 42), made
    once per run for the dashboard, report and metrics tests. Read it; a test that writes
    (apply, import, serve) works on its own copy: `shutil.copy(simulated_db, tmp_path)`.
    """
    import anyio

    from adapters.simulation import default_start, simulate_into

    specs = pathlib.Path(__file__).resolve().parents[1] / "specs"
    db = tmp_path_factory.mktemp("simulated") / "pipeline.db"
    anyio.run(lambda: simulate_into(str(db), deals=SIMULATED_DEALS, days=30,
                                    pattern="seasonal", seed=42, start=default_start(30),
                                    specs=str(specs)))
    return db


@pytest.fixture(params=["thread", "process"])
def writer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each of the SQLite store's writers in turn (SQLiteStore(writer=...) defaults to
    the environment's choice): a test that uses this runs with both."""
    monkeypatch.setenv(WRITER_ENV, request.param)
    return str(request.param)
