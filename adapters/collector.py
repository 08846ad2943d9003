"""The garbage collector's pace in a serving process (`caseloop serve`).

Why. CPython collects its youngest generation every 700 tracked allocations (net of
frees), and every tenth of those the middle one, whose objects a busy server keeps
alive for a while (the commands in flight, their coroutines and rounds). Serving
bench/durable.py at 1,000 concurrent cases the event loop's process spent a third of
its CPU there -- 1,380 collections, 1.7-2.9 s of thread time per 30,000 cases -- and
freed almost nothing by them (60 objects in a whole run): the engine's objects die by
reference counts. Young collections every YOUNG allocations instead: 36 collections,
0.34-0.62 s; a quarter more completions/s and a third off the p99 acknowledgement
(bench/README, "The collector's pace"). Each young collection is longer (10-20 ms
instead of tenths of one, measured by `caseloop_gc_pause_seconds`), and there are
forty times fewer.

A process-wide setting, so the process's decision, not the library's: the runtime
used as a library (tests, notebooks) keeps the interpreter's default. The Monitor's
tail process paces its own (adapters.monitor_tail); the store's writer process
allocates too little for it to matter (45 ms of its 4.5 s of CPU per 30,000 cases).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

# Young collections every this many tracked allocations (CPython's default is 700).
# The older generations keep their defaults: every tenth collection of the one below.
YOUNG = 10_000


@contextlib.contextmanager
def serving_pace() -> Iterator[None]:
    """Collect young objects every YOUNG allocations while in the block (a server's
    whole life), and as before after it."""
    was = gc.get_threshold()
    gc.set_threshold(YOUNG, *was[1:])
    try:
        yield
    finally:
        gc.set_threshold(*was)
