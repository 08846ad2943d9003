"""A virtual clock: time moves only when the simulation says so.

The runtime never reads the wall clock; it asks a `Clock` (actors.ports). The system
clock lives in adapters/. Under a `VirtualClock` a simulation runs the system until it
is quiet, then jumps straight to the next deadline anyone sleeps for.
"""

from __future__ import annotations

import heapq
import itertools

import anyio


class VirtualClock:
    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        ev = anyio.Event()
        heapq.heappush(self._sleepers, (deadline, next(self._order), ev))
        try:
            await ev.wait()
        finally:
            ev.set()  # a cancelled sleeper must not make the clock jump for nobody

    def next_deadline(self) -> float | None:
        while self._sleepers and self._sleepers[0][2].is_set():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    def advance_to(self, t: float) -> int:
        """Move time forward to `t`, waking every sleeper due by then. -> how many woke."""
        if t < self._now:
            raise ValueError("a clock does not go backwards")
        self._now = t
        woke = 0
        while self._sleepers and self._sleepers[0][0] <= t:
            _, _, ev = heapq.heappop(self._sleepers)
            if not ev.is_set():
                ev.set()
                woke += 1
        return woke

    def advance_to_next(self) -> bool:
        """Jump to the next deadline. -> False when nobody sleeps."""
        nxt = self.next_deadline()
        if nxt is None:
            return False
        self.advance_to(max(nxt, self._now))
        return True
