"""The loop with routing, escalation and capacity recommendations, on a real SQLite
store: each is proposed from history; applying a routing change makes the real
least-loaded assignment stop choosing the slow person, and an escalation is what the
SLA policy is asked for; after N items under the policy the loop verifies it (the
people kept keep pace; the breach share does not rise) or rolls it back and notifies;
advice is refused on apply with the field that says why, and a rejected one is not
proposed again; a new loop folds the same state back."""

from __future__ import annotations

import msgspec
import pytest
from test_loop import Clock, notify

from actors.actions import ActionContext
from actors.assignment import least_loaded
from adapters.sqlite_store import KnowledgeStore, SQLiteStore
from mapek.escalation import SloTerms
from mapek.knowledge import Recommendation
from mapek.loop import LoopSettings, MapeK, Refused
from mapek.monitor import Monitor, Observation
from mapek.policy import PolicyBook
from mapek.twin import run_task_twin

pytestmark = pytest.mark.anyio
ASSIGN = "lead-qualification/AssignToSDR"
HOUR = 3600.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def loop_over(ev, store: SQLiteStore, obs: list[Observation], clock: Clock,
                    **settings) -> MapeK:
    monitor = Monitor(store)
    monitor.absorb(obs)
    loop = MapeK(monitor, KnowledgeStore(store), PolicyBook(), twin=run_task_twin,
                 now=clock, notify=notify, settings=LoopSettings(**settings),
                 time_zone_of=lambda p: ev.TZ,
                 slo_of=lambda wf, task: SloTerms(*ev.APPROVAL_SLO)
                 if task == "SendToSalesManager" else None,
                 escalate_to=lambda role: "director" if role == "sales_manager" else None,
                 assigned_at=lambda wf, task: ASSIGN if task == "JustifyDiscount" else None)
    await loop.load()
    return loop


def later(template: list[Observation], start: float, hours: list[float],
          by: list[str | None], prefix: str) -> list[Observation]:
    """New items of the template's task, one every 10 minutes from `start`."""
    o = template[0]
    return [Observation(f"{prefix}{i}", o.workflow_id, o.task, 1, start + i * 600.0, None,
                        start + i * 600.0 + h * HOUR, "completed", by=b, role=o.role,
                        source="import")
            for i, (h, b) in enumerate(zip(hours, by, strict=True))]


async def judged(loop: MapeK, clock: Clock, rec: Recommendation, new: list[Observation],
                 wait: float = HOUR) -> tuple[bool, Recommendation]:
    """The loop, `wait` after the last of `new` closed: (whether a cycle ran, `rec` then)."""
    loop.monitor.absorb(new)
    clock.t = max(o.closed_at for o in new) + wait
    ran = await loop.cycle()
    return ran, loop.get(rec.id)


async def test_routing_is_proposed_applied_at_the_assignment_and_verified(
        tmp_path, mapek_eval) -> None:
    obs, _ = mapek_eval.slow_person_world(4)
    clock = Clock(max(o.closed_at for o in obs) + HOUR)
    async with SQLiteStore(str(tmp_path / "db")) as store:
        loop = await loop_over(mapek_eval, store, obs, clock)
        assert await loop.cycle()
        (rec,) = loop.for_workflow("pricing-exception")
        assert (rec.type, rec.task, rec.status) == ("routing_optimization",
                                                    "JustifyDiscount", "ready_to_apply")
        assert rec.change.avoid == (mapek_eval.SLOW,) and rec.change.assigned_at == ASSIGN
        applied = await loop.apply(rec.id, "olivia")
        assert applied.applied_version == 1

        # The real assignment action, over the store's open work, with the book as its
        # routing policy: the slow SDR gets no new lead.
        assign = least_loaded(lambda role: list(mapek_eval.SDRS), store, loop.book)
        chosen = [(await assign(ActionContext(f"l{i}", 1, "AssignToSDR",
                                              "assign_least_loaded", {"role": "sdr"}, {}, 1,
                                              clock.t, "lead-qualification")))["assigned_to"]
                  for i in range(6)]
        assert mapek_eval.SLOW not in chosen and len(set(chosen)) == 2

        # 40 items since: the slow SDR still finishes old work (slowly), the others
        # their usual ~2 working hours. Only the kept people's items are measured.
        kept = [p for p in mapek_eval.SDRS if p != mapek_eval.SLOW]
        new = later(obs, clock.t, [2.5] * 40 + [30.0] * 10,
                    [kept[i % 2] for i in range(40)] + [mapek_eval.SLOW] * 10, "n")
        ran, done = await judged(loop, clock, rec, new)
        assert ran
        assert done.status == "verified", done.verification
        v = done.verification
        assert v["items_after"] == 40 and v["avoided_share_after"] == pytest.approx(0.2)
        assert v["realized_saving_hours"] >= rec.estimated_improvement_hours * 0.5

        again = await loop_over(mapek_eval, store, [], clock)
        assert again.get(rec.id).status == "verified"
        assert again.book.rule("lead-qualification", "AssignToSDR").avoid == (
            mapek_eval.SLOW,)


async def test_routing_whose_others_slow_down_is_rolled_back_and_notified(
        tmp_path, mapek_eval) -> None:
    obs, _ = mapek_eval.slow_person_world(5)
    clock = Clock(max(o.closed_at for o in obs) + HOUR)
    async with SQLiteStore(str(tmp_path / "db")) as store:
        loop = await loop_over(mapek_eval, store, obs, clock, verify_after=30)
        await loop.cycle()
        (rec,) = loop.for_workflow("pricing-exception")
        await loop.apply(rec.id, "olivia")
        kept = [p for p in mapek_eval.SDRS if p != mapek_eval.SLOW]
        new = later(obs, clock.t, [40.0] * 30, [kept[i % 2] for i in range(30)], "n")
        _, done = await judged(loop, clock, rec, new)
        assert done.status == "rolled_back"
        assert done.verification["realized_saving_hours"] < 0
        assert loop.book.rule("lead-qualification", "AssignToSDR") is None
        assert await store.query("SELECT topic FROM outbox") == [("policy.rolled_back",)]


async def test_escalation_is_applied_as_the_sla_port_and_judged_by_breaches(
        tmp_path, mapek_eval) -> None:
    obs = mapek_eval.approval_world(4, 0.2)
    clock = Clock(max(o.closed_at for o in obs) + HOUR)
    async with SQLiteStore(str(tmp_path / "db")) as store:
        loop = await loop_over(mapek_eval, store, obs, clock, verify_after=40)
        await loop.cycle()
        (rec,) = loop.for_workflow("deal-approval-gate")
        assert rec.type == "escalation" and rec.change.escalation.to_role == "director"
        with pytest.raises(Refused):
            await loop.rollback(rec.id, "olivia")
        await loop.apply(rec.id, "olivia")
        rule = loop.book.escalation("deal-approval-gate", "SendToSalesManager")
        assert (rule.after, rule.to_role) == (rec.change.escalation.after_hours * HOUR,
                                              "director")
        # 40 mature items since, one in ten over the 4h target (a fifth before).
        new = later(obs, clock.t, ([1.0] * 9 + [6.0]) * 4, ["m"] * 40, "n")
        _, done = await judged(loop, clock, rec, new, 5 * HOUR)
        assert done.status == "verified", done.verification
        v = done.verification
        assert v["breach_share_after"] == pytest.approx(0.1)
        assert v["breach_share_before"] > 0.15 and v["realized_reduction"] > 0


async def test_an_escalation_after_which_breaches_rise_is_rolled_back(
        tmp_path, mapek_eval) -> None:
    obs = mapek_eval.approval_world(5, 0.2)
    clock = Clock(max(o.closed_at for o in obs) + HOUR)
    async with SQLiteStore(str(tmp_path / "db")) as store:
        loop = await loop_over(mapek_eval, store, obs, clock, verify_after=40)
        await loop.cycle()
        (rec,) = loop.for_workflow("deal-approval-gate")
        await loop.apply(rec.id, "olivia")
        new = later(obs, clock.t, [1.0, 6.0] * 20, ["m"] * 40, "n")  # half breach now
        # Items still open past their target are breaches too.
        young = later(obs, max(o.enabled_at for o in new) + 600, [99.0] * 5, ["m"] * 5, "y")
        loop.monitor.absorb([msgspec.structs.replace(o, closed_at=None, outcome=None)
                             for o in young])
        _, done = await judged(loop, clock, rec, new, 5 * HOUR)
        assert done.status == "rolled_back"
        assert done.verification["breach_share_after"] > 0.4
        assert loop.book.escalation("deal-approval-gate", "SendToSalesManager") is None


async def test_capacity_advice_cannot_be_applied_and_a_rejection_sticks(
        tmp_path, mapek_eval) -> None:
    obs, _ = mapek_eval.queue_world(4)
    clock = Clock(max(o.closed_at for o in obs) + HOUR)
    async with SQLiteStore(str(tmp_path / "db")) as store:
        loop = await loop_over(mapek_eval, store, obs, clock)
        await loop.cycle()
        (rec,) = [r for r in loop.for_workflow("deal-approval-gate") if r.type == "capacity"]
        assert rec.change is None and rec.task is None
        assert rec.evidence["role"] == "legal_counsel"
        with pytest.raises(Refused) as err:
            await loop.apply(rec.id, "olivia")
        assert err.value.field == "change" and "advice" in str(err.value)
        assert loop.book.current.version == 0
        await loop.reject(rec.id, "olivia", "no budget this quarter")
        assert await loop.cycle(force=True)
        capacity = [r for r in loop.for_workflow("deal-approval-gate")
                    if r.type == "capacity"]
        assert [r.status for r in capacity] == ["rejected"]
