"""caseloop's in-memory side of vs_spiff.py alone, for instruction counts.

The wall clock on a shared machine swings by a third; callgrind's instruction counts
do not. This runs exactly what `vs_spiff.py` times for caseloop in memory -- the same
spec from bench/peers/, the same deals, the same completion order -- with nothing
else around it, so two case counts can be differenced (startup and imports cancel):

    for n in 200 400; do for what in complete create; do
      PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/tmp/vs.$n.$what.cg \\
        python bench/vs_spiff_counts.py --variant or --order seq --cases $n --$what
    done; done

instructions per completion = ((complete 400 - complete 200) - (create 400 - create
200)) / the human completions of the 200 more cases (`--cases N` prints them: 700
for the OR gate, 800 for the AND gate; the automatic AllApprovalsComplete is paid
for but not counted, as in vs_spiff.py).
"""

from __future__ import annotations

import argparse
import gc

from vs_spiff import VARIANTS, Caseloop, deals, plan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", choices=VARIANTS, default="or")
    ap.add_argument("--order", choices=("seq", "inter"), default="seq")
    ap.add_argument("--cases", type=int, default=200)
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--complete", action="store_true", help="create, then complete (default)")
    what.add_argument("--create", action="store_true", help="create the cases only")
    args = ap.parse_args()
    engine = Caseloop(args.variant)
    data = deals(args.cases)
    plans = [plan(d, args.variant) for d in data]
    cases = engine.create(data)
    gc.collect()
    gc.disable()  # as vs_spiff.py times it
    if not args.create:
        run = engine.run_sequential if args.order == "seq" else engine.run_interleaved
        run(cases, plans)
        engine.check(cases)
    print(f"{args.cases} cases, {sum(map(len, plans))} human completions")


if __name__ == "__main__":
    main()
