"""Analyze at scale: the MAPE-K Analyze stage over 100 000 cases' observations.

Synthesizes a year of deals (vectorized numpy, not timed): each case is qualified by
an SDR, goes through a parallel approval group of four (an AND-split: the four items
are enabled at one instant) and then to a contract desk. Twelve people in three time
zones; response times are log-normal, slower outside the person's working hours, with
one slow approver (Legal) and one slow person planted. The newest cases are still
open (right-censored). Then times `ItemFrame.from_observations` and each analyzer, and
`analyze(...)` end to end. Target: analysis of 100 000 cases in < 5 s.

`--cycle` also times what a MAPE-K cycle computes over the same observations (its
worker thread's part: the timing planner with its bootstrap and twin, the routing,
escalation and capacity planners), the pace of the server's background cycles.

    python bench/mapek_analysis.py [--cases 100000] [--seed 1] [--repeat 1] [--smoke]

One JSON line on stdout; a short summary on stderr.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mapek.analyze import (  # noqa: E402
    ItemFrame,
    analyze,
    assignee_effect,
    bottlenecks,
    breach_risk,
    dispatch_effect,
    slo_compliance,
)
from mapek.loop import MapeK  # noqa: E402
from mapek.memory_store import MemoryStore  # noqa: E402
from mapek.monitor import Monitor, Observation, local_clocks  # noqa: E402
from mapek.policy import PolicyBook  # noqa: E402
from mapek.twin import run_task_twin  # noqa: E402

WORKFLOW = "deal-approval-gate"
ZONES = ("America/New_York", "Europe/Berlin", "Asia/Kolkata")
PEOPLE = {f"p{i:02d}": ZONES[i % 3] for i in range(12)}
# task -> (pool of people, role, median response hours)
TASKS = {
    "Qualify": (["p00", "p01", "p02", "p03"], "sdr", 2.0),
    "SendToSalesManager": (["p04", "p05"], "sales_manager", 6.0),
    "SendToLegal": (["p06", "p07"], "legal", 14.0),  # the planted bottleneck
    "SendToFinance": (["p08", "p09"], "finance", 6.0),
    "ExecutiveCheck": (["p10", "p11"], "executive", 5.0),
    "Contract": (["p00", "p03", "p06", "p09"], "deal_desk", 8.0),
}
APPROVALS = ("SendToSalesManager", "SendToLegal", "SendToFinance", "ExecutiveCheck")
SLOW_PERSON = "p05"
TARGETS = {"Qualify": 8.0, "SendToSalesManager": 24.0, "SendToLegal": 48.0,
           "SendToFinance": 24.0, "ExecutiveCheck": 24.0, "Contract": 48.0}
YEAR = 365 * 86400.0
T0 = 1_704_067_200.0  # 2024-01-01 UTC


def synthesize(cases: int, seed: int) -> tuple[list[Observation], float]:
    rng = np.random.default_rng(seed)
    arrive = np.sort(T0 + rng.random(cases) * YEAR)
    now = T0 + YEAR
    names = list(PEOPLE)
    zone_of_person = np.array([ZONES.index(PEOPLE[p]) for p in names])
    obs: list[Observation] = []

    def respond(task: str, at: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pool, _role, median = TASKS[task]
        who = rng.choice([names.index(p) for p in pool], at.size)
        hour, _ = local_clocks(at, zone_of_person[who], list(ZONES))
        off_hours = (hour < 9) | (hour >= 18)
        slow = np.where(np.array(names)[who] == SLOW_PERSON, 1.8, 1.0)
        hours = median * slow * np.where(off_hours, 1.6, 1.0) * rng.lognormal(0, 0.6, at.size)
        # Picked up after a short wait of its own, then worked on.
        picked = at + np.minimum(0.2 * median * rng.lognormal(0, 0.5, at.size), hours) * 3600
        return who, picked, at + hours * 3600.0

    def emit(task: str, enabled: np.ndarray, who: np.ndarray, picks: np.ndarray,
             closed: np.ndarray, item: int) -> None:
        role = TASKS[task][1]
        for c, (e, w, picked, t) in enumerate(zip(enabled.tolist(), who.tolist(),
                                                  picks.tolist(), closed.tolist(), strict=True)):
            if e >= now:
                continue
            done = t <= now
            obs.append(Observation(
                f"deal_{c:07d}", WORKFLOW, task, item, e,
                started_at=picked if picked <= now else None,
                closed_at=t if done else None, outcome="completed" if done else None,
                by=names[w] if picked <= now else None, role=role))

    who, picked, qualified = respond("Qualify", arrive)
    emit("Qualify", arrive, who, picked, qualified, 1)
    joined = qualified.copy()
    for i, task in enumerate(APPROVALS):
        who, picked, closed = respond(task, qualified)
        emit(task, qualified, who, picked, closed, 2 + i)
        joined = np.maximum(joined, closed)
    who, picked, closed = respond("Contract", joined)
    emit("Contract", joined, who, picked, closed, 6)
    return obs, now


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--smoke", action="store_true", help="tiny run (bench/run_all.py --smoke)")
    ap.add_argument("--cycle", action="store_true",
                    help="also time a MAPE-K cycle's analysis and planning")
    a = ap.parse_args(argv)
    if a.smoke:
        a.cases, a.repeat = 2_000, 1
    obs, now = synthesize(a.cases, a.seed)

    def target_of(_wf: str, task: str) -> float | None:
        return TARGETS.get(task)

    def zone_of(person: str | None) -> str:
        return PEOPLE.get(person or "", "UTC")

    pc = time.perf_counter
    for _ in range(a.repeat):
        t = pc()
        frame = ItemFrame.from_observations(obs, now, zone_of)
        times = {"frame": pc() - t}
        t = pc()
        slo = slo_compliance(frame, target_of, now)
        times["slo_compliance"] = pc() - t
        t = pc()
        joins = bottlenecks(frame)
        times["bottlenecks"] = pc() - t
        t = pc()
        dispatch = [dispatch_effect(frame, wf, task) for wf, task in frame.activities]
        times["dispatch_effect"] = pc() - t
        t = pc()
        assignees = [assignee_effect(frame, wf, task) for wf, task in frame.activities]
        times["assignee_effect"] = pc() - t
        t = pc()
        risks = breach_risk(frame, target_of, now, limit=500)
        times["breach_risk"] = pc() - t
        t = pc()
        whole = analyze(obs, target_of, now, zone_of)
        times["analyze_end_to_end"] = pc() - t
        if a.cycle:
            loop = MapeK(Monitor(MemoryStore()), MemoryStore(), PolicyBook(),
                         twin=run_task_twin, now=lambda: now, time_zone_of=zone_of,
                         target_of=target_of)
            t = pc()
            proposals = loop._analyze_and_plan([o for o in obs if o.closed_at is not None],
                                               [o for o in obs if o.closed_at is None], now)
            times["cycle_analyze_and_plan"] = pc() - t
        row = {"bench": "mapek_analysis", "cases": a.cases, "observations": len(obs),
               "open": sum(o.closed_at is None for o in obs),
               **{k: round(v, 3) for k, v in times.items()},
               "sum_of_stages": round(sum(v for k, v in times.items()
                                          if k not in ("analyze_end_to_end",
                                                       "cycle_analyze_and_plan")), 3)}
        print(json.dumps(row), flush=True)
        print(f"mapek_analysis: {a.cases} cases, {len(obs)} observations: "
              + ", ".join(f"{k} {v:.3f} s" for k, v in times.items()), file=sys.stderr)
    join = joins[0] if joins else None
    if join is not None:
        print(f"  bottleneck: {join.bottleneck} of {join.tasks} (n={join.n}, share "
              f"{join.by_task[0].share.value:.2f}, conf {join.by_task[0].share.confidence})",
              file=sys.stderr)
    for d in dispatch:
        if d is not None and d.effect is not None:
            print(f"  dispatch {d.task}: best hour {d.best_hour}, ratio {d.effect.value:.2f} "
                  f"[{d.effect.low:.2f}, {d.effect.high:.2f}] conf {d.effect.confidence:.3f}",
                  file=sys.stderr)
    for p in assignees:
        if p is not None:
            top = p.people[0]
            print(f"  assignee {p.task}: slowest {top.person} ratio "
                  f"{top.effect.value if top.effect else None} claimed {top.claimed}",
                  file=sys.stderr)
    print(f"  slo rows {len(slo)}, breach risks {len(risks)}, analysis stamp "
          f"{whole.stamp}", file=sys.stderr)
    if a.cycle:
        for p in proposals:
            print(f"  cycle: {p.type} {p.task}: {p.description}", file=sys.stderr)


if __name__ == "__main__":
    main()
