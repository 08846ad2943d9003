"""The timing planner against worlds whose truth is known (bench/mapek_eval.py, a few
seeds): it finds the clear 2pm effect with confidence >= 0.8 and a twin estimate
within 25 % of the saving realized in the twin with the true responder; it claims
nothing where business hours and weekends alone shape response times, nor for a 24/7
team. The full evaluation (30 seeds per scenario) is recorded in bench/README.md."""

from __future__ import annotations

import numpy as np
import pytest

from mapek.policy import DispatchWindow
from mapek.timing import TaskHistory, TimingConfig, find_window, release_wait

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"




@pytest.mark.parametrize("seed", [11, 12, 13])
async def test_a_clear_effect_is_found_and_its_saving_estimated(seed: int, mapek_eval) -> None:
    run = await mapek_eval.evaluate("clear_effect", seed, 1600, 56, TimingConfig(bootstrap=150))
    assert run.detected and run.confidence >= 0.8, run
    assert "2pm" in run.window
    assert abs(run.error) <= 0.25, run


@pytest.mark.parametrize("scenario", ["business_hours", "always_on"])
@pytest.mark.parametrize("seed", [11, 12, 13])
async def test_no_effect_no_confident_claim(scenario: str, seed: int, mapek_eval) -> None:
    run = await mapek_eval.evaluate(scenario, seed, 1600, 56, TimingConfig(bootstrap=150))
    assert not run.detected, run


def test_below_the_minimum_sample_nothing_is_claimed() -> None:
    t = np.arange(100) * 3600.0 + 1.8e9
    h = TaskHistory("wf", "T", "UTC", [f"c{i}" for i in range(100)], t, t, t + 3600)
    assert find_window(h) is None


def test_work_waits_only_outside_the_window_and_never_beyond_the_longest_wait() -> None:
    w = DispatchWindow(14, 2, "UTC", max_wait_hours=4)
    tow = np.array([14.5, 10.0, 9.0, 16.0, 24 * 5 + 10.0])  # Mon 14:30, 10:00, 9:00 ...
    assert release_wait(tow, w).tolist() == [0.0, 4.0, 0.0, 0.0, 0.0]
