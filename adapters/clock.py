"""The system clock: the one place caseloop reads the wall clock."""

from __future__ import annotations

import time

import anyio


class SystemClock:
    def now(self) -> float:
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        await anyio.sleep(max(0.0, deadline - time.time()))
