"""Hand-computable history rows shared by test_insights.py and test_economics.py.

tests/mapek has no `__init__.py`, so pytest puts this directory on sys.path and the test
modules import `history_kit` directly (the name is unique across tests/ on purpose).
"""

from __future__ import annotations

from mapek.insights import Phase

T0 = 1_704_067_200.0  # 2024-01-01 00:00 UTC, a Monday
H = 3600.0


def stay(case: str, wf: str, entered_h: float, left_h: float | None = None,
         outcome: str | None = "completed") -> Phase:
    return Phase(case, wf, T0 + entered_h * H,
                 None if left_h is None else T0 + left_h * H,
                 None if left_h is None else outcome)
