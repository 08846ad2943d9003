"""The runtime's SLA deadlines: an item (or a case's stay in a workflow) still open at
its alert time gets exactly one `SlaBreached`, at exactly that time, and the policy's
notices land in the outbox table in the same append. Deadlines are derived from the
projections (enabled_at / entered_at + alert), so after a restart they are re-armed:
a pending one still fires once, one already raised is not raised again.

Real parts only: the SQLite store on a file, `actors.VirtualClock`, and the real
`adapters.slas.SlaBook` over an `adapters.people.Directory` (plus, for the policy
port itself, a small class implementing `actors.ports.SlaPolicy`).

Runtime finding (open when this file was written; its test stays red until fixed):

S1. After a restart, every instance of a multiple-instance task gets its own SLA
    deadline and breach (actors/runtime.py `_recover` arms `_arm_sla` for every open
    work item row; the rows do not say which are instances), while a runtime that was
    not restarted arms only the task's parent item (`_after_commit` skips
    `parent >= 0`). The same case breaches once or 1 + N times depending on whether
    the server restarted, and notifies N times more.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest
from actors_kit import DEAL_600K, net_of, running, spec_net

from actors import VirtualClock
from actors.ports import Notice, SlaTarget
from adapters.people import Directory, Person, Role
from adapters.slas import HOUR, Notifications, SlaBook, Slo, SloFile
from engine import decode_events
from engine.events import (
    CaseCompleted,
    CaseHandedOn,
    SlaBreached,
    SlaResolved,
    TimerFired,
    WorkItemCompleted,
    WorkItemEnabled,
)

pytestmark = pytest.mark.anyio

T0 = 1_700_000_000.0

# Approve (3 h alert) then Sign (no target); the stay in the workflow: 10 h alert.
FLOW = net_of({
    "id": "sla-flow",
    "tasks": [{"id": "Approve", "role": "sales_manager"}, {"id": "Sign"}],
    "flows": [{"from": "start", "to": "Approve"}, {"from": "Approve", "to": "Sign"},
              {"from": "Sign", "to": "end"}],
})
# Hands the case on to sla-next (2 h alert on the stay in sla-first, 6 h in sla-next).
FIRST = net_of({
    "id": "sla-first",
    "tasks": [{"id": "Draft"}],
    "flows": [{"from": "start", "to": "Draft"}, {"from": "Draft", "to": "end"}],
    "on_complete": [{"workflow": "sla-next"}],
})
NEXT = net_of({
    "id": "sla-next",
    "tasks": [{"id": "Close"}],
    "flows": [{"from": "start", "to": "Close"}, {"from": "Close", "to": "end"}],
})
NETS = [FLOW, FIRST, NEXT]

DIRECTORY = Directory(
    roles={"sales_manager": Role(), "cfo": Role(unlimited=True)},
    people={"marcus@acme.com": Person(role="sales_manager", name="Marcus"),
            "olivia@acme.com": Person(role="sales_manager", name="Olivia"),
            "lisa@acme.com": Person(role="cfo", name="Lisa")})
SLOS = SloFile(
    workflows={"sla-flow": Slo(target_hours=8, alert_hours=10),
               "sla-first": Slo(target_hours=1, alert_hours=2),
               "sla-next": Slo(target_hours=4, alert_hours=6)},
    tasks={"Approve": Slo(target_hours=1, alert_hours=3),
           "sla-next/Close": Slo(target_hours=5, alert_hours=8)},
    notifications=Notifications(recipients=["sales_manager", "lisa@acme.com"],
                                channels=["email", "slack"], slack_channel="deals"))


def book(configured: frozenset[str] = frozenset({"email", "slack"})) -> SlaBook:
    return SlaBook(SLOS, DIRECTORY, configured)


def breaches(log: list[Any]) -> list[SlaBreached]:
    return [e for e in log if type(e) is SlaBreached]


def item_of(log: list[Any], task: str) -> int:
    (item,) = [e.item for e in log if type(e) is WorkItemEnabled and e.task == task]
    return item


def outbox(db: str) -> list[dict[str, Any]]:
    con = sqlite3.connect(db)
    try:
        con.row_factory = sqlite3.Row
        rows = con.execute("SELECT key, case_id, topic, channel, target, subject, payload,"
                           " state, created_at FROM outbox ORDER BY id").fetchall()
    finally:
        con.close()
    return [dict(r) for r in rows]


def append_of(db: str, case_id: str, kind: str) -> list[tuple[int, float]]:
    """(pos, at) of the appends of a case whose events include an event named `kind`."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT pos, at, body FROM events WHERE case_id = ? ORDER BY pos",
                           (case_id,)).fetchall()
    finally:
        con.close()
    return [(pos, at) for pos, at, body in rows
            if any(type(e).__name__ == kind for e in decode_events(body))]


# ---------------------------------------------------------------- one deadline
async def test_an_item_open_at_its_alert_time_breaches_once_exactly_then(db: str) -> None:
    clock = VirtualClock(T0)
    async with running(db, clock, NETS, slas=book()) as (store, rt):
        await rt.create("sla-flow", "c1", {})
        await rt.wait_idle()
        assert clock.next_deadline() == T0 + 3 * HOUR, "the task's alert comes first"
        assert clock.advance_to_next()
        await rt.wait_idle()
        log = await store.events("c1")
        approve = item_of(log, "Approve")
        assert breaches(log) == [SlaBreached(approve, T0 + 3 * HOUR, "Approve",
                                             1 * HOUR, 3 * HOUR)]
        case = await rt.get("c1")
        assert case.breaches == {approve: "Approve"}
        assert case.enabled_tasks() == ["Approve"], "a breach changes nothing in the net"

        # the notices of SlaBook: one e-mail per recipient, one slack post
        rows = outbox(db)
        key = f"sla:c1:{approve}:{T0 + 3 * HOUR!r}"
        assert sorted(r["key"] for r in rows) == sorted([
            f"{key}:email:lisa@acme.com", f"{key}:email:marcus@acme.com",
            f"{key}:email:olivia@acme.com", f"{key}:slack"])
        assert {(r["channel"], r["target"]) for r in rows} == {
            ("email", "lisa@acme.com"), ("email", "marcus@acme.com"),
            ("email", "olivia@acme.com"), ("slack", "deals")}
        assert all(r["topic"] == "sla.breached" and r["case_id"] == "c1"
                   and r["state"] == "pending" for r in rows)
        payload = json.loads(rows[0]["payload"])
        assert payload["item"] == approve and payload["task"] == "Approve"
        assert payload["alert_hours"] == 3 and payload["target_hours"] == 1
        # written with the breach: the same commit time as the append that holds it
        ((_, at),) = append_of(db, "c1", "SlaBreached")
        assert {r["created_at"] for r in rows} == {at} == {T0 + 3 * HOUR}

        # time goes on: no second breach for that item, no more rows for it
        clock.advance_to(T0 + 9 * HOUR)
        await rt.wait_idle()
        assert len(breaches(await store.events("c1"))) == 1
        assert len(outbox(db)) == 4

        # the workflow stay breaches at entered + 10 h, as item 0
        assert clock.advance_to_next()
        assert clock.now() == T0 + 10 * HOUR
        await rt.wait_idle()
        log = await store.events("c1")
        assert breaches(log)[1:] == [SlaBreached(0, T0 + 10 * HOUR, "sla-flow", 8 * HOUR,
                                                 10 * HOUR)]
        assert (await rt.get("c1")).breaches == {approve: "Approve", 0: "sla-flow"}
        assert len(outbox(db)) == 8
        assert clock.next_deadline() is None, "nothing left to arm"


async def test_an_item_done_before_its_alert_does_not_breach(db: str) -> None:
    clock = VirtualClock(T0)
    async with running(db, clock, NETS, slas=book()) as (store, rt):
        await rt.create("sla-flow", "c1", {})
        clock.advance_to(T0 + 3 * HOUR - 1)
        await rt.complete("c1", "Approve", "approved", by="marcus@acme.com")
        await rt.wait_idle()
        clock.advance_to(T0 + 3 * HOUR + 60)
        await rt.wait_idle()
        log = await store.events("c1")
        assert breaches(log) == []
        assert outbox(db) == []
        # Sign has no target; finishing before the 10 h stay alert: nothing at all
        await rt.complete("c1", "Sign")
        clock.advance_to(T0 + 24 * HOUR)
        await rt.wait_idle()
        log = await store.events("c1")
        assert any(type(e) is CaseCompleted for e in log)
        assert breaches(log) == [] and outbox(db) == []


async def test_breach_resolved_by_completion_in_the_same_append(db: str) -> None:
    clock = VirtualClock(T0)
    async with running(db, clock, NETS, slas=book()) as (store, rt):
        await rt.create("sla-flow", "c1", {})
        clock.advance_to(T0 + 3 * HOUR)
        await rt.wait_idle()
        clock.advance_to(T0 + 4 * HOUR)
        await rt.complete("c1", "Approve", "approved")
        log = await store.events("c1")
        approve = item_of(log, "Approve")
        assert [e for e in log if type(e) is SlaResolved] == [SlaResolved(approve,
                                                                          T0 + 4 * HOUR)]
        assert append_of(db, "c1", "SlaResolved") == append_of(db, "c1",
                                                               "WorkItemCompleted")
        assert (await rt.get("c1")).breaches is None
        assert len(outbox(db)) == 4, "a resolution notifies nobody"


async def test_without_configured_channels_the_breach_is_recorded_but_not_queued(
        db: str) -> None:
    clock = VirtualClock(T0)
    async with running(db, clock, NETS, slas=book(frozenset())) as (store, rt):
        await rt.create("sla-flow", "c1", {})
        clock.advance_to(T0 + 3 * HOUR)
        await rt.wait_idle()
        assert len(breaches(await store.events("c1"))) == 1
        assert outbox(db) == []



async def test_a_breach_notice_names_the_deal_not_only_its_case_id(db: str) -> None:
    """The sales manager and the CFO are told of a late approval by Slack and e-mail
    (PIPELINE.md "SLOs"); a case id -- generated ones look like case_8891f3be3a6ba6e9 --
    does not tell them which deal is waiting: the subject, body and payload name it."""
    clock = VirtualClock(T0)
    async with running(db, clock, NETS, slas=book()) as (_store, rt):
        await rt.create("sla-flow", "c1", {"deal_name": "Globex Platform Renewal",
                                           "customer_name": "Globex Corp"})
        await rt.create("sla-flow", "c2", {"company_name": "Initech"})  # a lead
        # What an SDR typed, line breaks and all: an e-mail subject cannot carry those.
        await rt.create("sla-flow", "c3", {"deal_name": "Hooli\r\nBcc: all@hooli.com "
                                                        + "x" * 200})
        clock.advance_to(T0 + 3 * HOUR)
        await rt.wait_idle()
        con = sqlite3.connect(db)
        try:
            rows = con.execute("SELECT case_id, subject, body, payload FROM outbox"
                               " ORDER BY id").fetchall()
        finally:
            con.close()
        c1 = [r for r in rows if r[0] == "c1"]
        c2 = [r for r in rows if r[0] == "c2"]
        assert len(c1) == len(c2) == 4  # two managers and Lisa by e-mail, one Slack post
        for _case, subject, body, payload in c1:
            assert subject == ("SLA breached: Approve on Globex Platform Renewal "
                               "(Globex Corp) [c1]"), subject
            assert "Globex Platform Renewal (Globex Corp) [c1]" in body, body
            assert json.loads(payload)["case_name"] == "Globex Platform Renewal (Globex Corp)"
        for _case, subject, _body, payload in c2:
            assert subject == "SLA breached: Approve on Initech [c2]", subject
            assert json.loads(payload)["case_name"] == "Initech"
        c3 = [r for r in rows if r[0] == "c3"]
        assert len(c3) == 4
        for _case, subject, _body, payload in c3:
            name = json.loads(payload)["case_name"]
            assert name.startswith("Hooli Bcc: all@hooli.com xxx") and name.endswith("…")
            assert len(name) == 80 and "\n" not in subject and "\r" not in subject

# -------------------------------------------------------------- workflow stays
async def test_a_workflow_stay_breaches_item_zero_and_resolves_on_hand_on(db: str) -> None:
    clock = VirtualClock(T0)
    async with running(db, clock, NETS, slas=book()) as (store, rt):
        await rt.create("sla-first", "c1", {})
        await rt.wait_idle()
        assert clock.advance_to_next()
        assert clock.now() == T0 + 2 * HOUR
        await rt.wait_idle()
        log = await store.events("c1")
        assert breaches(log) == [SlaBreached(0, T0 + 2 * HOUR, "sla-first", HOUR, 2 * HOUR)]
        rows = outbox(db)
        assert rows and all(json.loads(r["payload"])["item"] == 0 for r in rows)
        assert all(r["subject"] == "SLA breached: sla-first on c1" for r in rows)

        clock.advance_to(T0 + 3 * HOUR)
        await rt.complete("c1", "Draft")  # the case hands on to sla-next
        log = await store.events("c1")
        done = [n for n, e in enumerate(log) if type(e) is CaseCompleted]
        resolved = [n for n, e in enumerate(log) if type(e) is SlaResolved]
        handed = [n for n, e in enumerate(log) if type(e) is CaseHandedOn]
        assert len(done) == len(resolved) == len(handed) == 1
        assert done[0] < resolved[0] < handed[0]
        assert log[resolved[0]] == SlaResolved(0, T0 + 3 * HOUR)
        case = await rt.get("c1")
        assert case.net.workflow_id == "sla-next" and case.breaches is None

        # the stay in sla-next is measured from the hand-on: 6 h alert, before Close's 8 h
        assert clock.advance_to_next()
        assert clock.now() == T0 + 9 * HOUR
        await rt.wait_idle()
        log = await store.events("c1")
        assert breaches(log)[1:] == [SlaBreached(0, T0 + 9 * HOUR, "sla-next", 4 * HOUR,
                                                 6 * HOUR)]
        assert clock.advance_to_next()  # Close: keyed "sla-next/Close", enabled at 3 h
        assert clock.now() == T0 + 11 * HOUR
        await rt.wait_idle()
        log = await store.events("c1")
        close = item_of(log, "Close")
        assert breaches(log)[2:] == [SlaBreached(close, T0 + 11 * HOUR, "Close", 5 * HOUR,
                                                 8 * HOUR)]
        await rt.complete("c1", "Close")
        log = await store.events("c1")
        assert sorted(e.item for e in log if type(e) is SlaResolved) == [0, 0, close]
        assert (await rt.get("c1")).breaches is None


async def test_the_deadline_of_a_workflow_left_behind_does_not_breach_the_next(db: str
                                                                                ) -> None:
    clock = VirtualClock(T0)
    async with running(db, clock, NETS, slas=book()) as (store, rt):
        await rt.create("sla-first", "c1", {})
        clock.advance_to(T0 + HOUR)
        await rt.complete("c1", "Draft")  # left sla-first before its 2 h alert
        await rt.wait_idle()
        assert clock.advance_to_next()  # sla-first's old deadline wakes: nothing to do
        assert clock.now() == T0 + 2 * HOUR
        await rt.wait_idle()
        assert breaches(await store.events("c1")) == []
        assert outbox(db) == []
        assert clock.advance_to_next()
        assert clock.now() == T0 + 7 * HOUR  # sla-next: entered at 1 h, alert 6 h
        await rt.wait_idle()
        assert [(e.item, e.task) for e in breaches(await store.events("c1"))] == [
            (0, "sla-next")]


# ---------------------------------------------------------------- restarts
@pytest.mark.parametrize("reopen_at", [T0 + HOUR, T0 + 5 * HOUR],
                         ids=["before-the-alert", "after-the-alert"])
async def test_a_pending_deadline_fires_once_after_a_restart(db: str, reopen_at: float
                                                            ) -> None:
    async with running(db, VirtualClock(T0), NETS, slas=book()) as (store, rt):
        await rt.create("sla-flow", "c1", {})
        await rt.wait_idle()
        assert breaches(await store.events("c1")) == []
    clock = VirtualClock(reopen_at)
    async with running(db, clock, NETS, slas=book()) as (store, rt):
        await rt.wait_idle()
        if reopen_at < T0 + 3 * HOUR:
            assert breaches(await store.events("c1")) == []
            assert clock.advance_to_next()
            assert clock.now() == T0 + 3 * HOUR, "re-armed from enabled_at + alert"
            await rt.wait_idle()
        log = await store.events("c1")
        approve = item_of(log, "Approve")
        assert [(e.item, e.at) for e in breaches(log)] == [(approve, clock.now())]
        assert len(outbox(db)) == 4
        clock.advance_to(T0 + 9 * HOUR)
        await rt.wait_idle()
        assert len(breaches(await store.events("c1"))) == 1
    # and once more: still a single breach of that item, the outbox unchanged
    clock = VirtualClock(T0 + 9 * HOUR)
    async with running(db, clock, NETS, slas=book()) as (store, rt):
        await rt.wait_idle()
        assert [e.item for e in breaches(await store.events("c1"))] == [approve]
        assert len(outbox(db)) == 4


async def test_a_breach_recorded_before_a_restart_is_not_raised_again(db: str) -> None:
    clock = VirtualClock(T0)
    async with running(db, clock, NETS, slas=book()) as (store, rt):
        await rt.create("sla-flow", "c1", {})
        clock.advance_to(T0 + 10 * HOUR)  # both the item's and the stay's alerts passed
        await rt.wait_idle()
        before = await store.events("c1")
        assert sorted(e.item for e in breaches(before)) == [0, item_of(before, "Approve")]
        rows = outbox(db)
        assert len(rows) == 8
    for reopen in (T0 + 10 * HOUR, T0 + 30 * HOUR):
        clock = VirtualClock(reopen)
        async with running(db, clock, NETS, slas=book()) as (store, rt):
            await rt.wait_idle()
            while clock.advance_to_next():
                await rt.wait_idle()
            assert await store.events("c1") == before
            assert outbox(db) == rows
            case = await rt.get("c1")
            assert case.breaches == {0: "sla-flow", item_of(before, "Approve"): "Approve"}
    # the work ends after the restart: both breaches resolve in that append
    async with running(db, VirtualClock(T0 + 31 * HOUR), NETS, slas=book()) as (store, rt):
        await rt.complete("c1", "Approve", "approved")
        await rt.complete("c1", "Sign")
        log = await store.events("c1")
        assert sorted(e.item for e in log if type(e) is SlaResolved) == [
            0, item_of(before, "Approve")]
        assert any(type(e) is WorkItemCompleted for e in log)


# ------------------------------------------------------- the policy port itself
class Flat:
    """A minimal SlaPolicy: every task 60 s, no workflow target; one webhook notice."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str | None]] = []

    def target(self, workflow_id: str, task: str | None) -> SlaTarget | None:
        self.asked.append((workflow_id, task))
        return None if task is None else SlaTarget(30.0, 60.0)

    def notices(self, case_id: str, workflow_id: str, breach: Any,
                data: Any = None) -> list[Notice]:
        return [Notice(f"flat:{case_id}:{breach.item}", "webhook", "ops", "sla.breached",
                       f"{breach.task} late", "", case_id, {"wf": workflow_id})]


async def test_any_sla_policy_drives_the_deadlines(db: str) -> None:
    clock, policy = VirtualClock(T0), Flat()
    async with running(db, clock, NETS, slas=policy) as (store, rt):
        await rt.create("sla-flow", "c1", {})
        assert ("sla-flow", None) in policy.asked and ("sla-flow", "Approve") in policy.asked
        clock.advance_to(T0 + 30)
        await rt.complete("c1", "Approve")  # Sign enabled at T0 + 30
        await rt.wait_idle()
        assert clock.advance_to_next()  # Approve's deadline: it is done, nothing happens
        assert clock.now() == T0 + 60
        await rt.wait_idle()
        assert breaches(await store.events("c1")) == []
        assert clock.advance_to_next()
        assert clock.now() == T0 + 90
        await rt.wait_idle()
        log = await store.events("c1")
        sign = item_of(log, "Sign")
        assert breaches(log) == [SlaBreached(sign, T0 + 90, "Sign", 30.0, 60.0)]
        assert [(r["key"], r["channel"], r["target"], json.loads(r["payload"]))
                for r in outbox(db)] == [(f"flat:c1:{sign}", "webhook", "ops",
                                          {"wf": "sla-flow"})]


# --------------------------------------------- multiple instances (finding S1)
MI = net_of({"id": "sla-mi", "tasks": [{"id": "Review", "multiple_instance": {"min": 2}}],
             "flows": [{"from": "start", "to": "Review"}, {"from": "Review", "to": "end"}]})


@pytest.mark.parametrize("restart", [False, True], ids=["same-runtime", "after-restart"])
async def test_instances_get_the_same_deadlines_with_or_without_a_restart(
        db: str, restart: bool) -> None:
    """Finding S1: the runtime arms an SLA deadline for a multiple-instance task's
    parent item only (`_after_commit` skips instances, parent >= 0), but `_recover`
    re-arms one for every open work item row -- instances included -- so after a
    restart each instance gets a breach (and notices) it would never get otherwise."""
    clock = VirtualClock(0.0)
    policy = Flat()
    async with running(db, clock, [MI], slas=policy) as (store, rt):
        case = await rt.create("sla-mi", "c1", {})
        parents = [i.id for i in case.work_items() if i.parent < 0]
        assert len(case.work_items()) == 3 and len(parents) == 1
        await rt.wait_idle()
        if not restart:
            clock.advance_to(200.0)
            await rt.wait_idle()
            assert [e.item for e in breaches(await store.events("c1"))] == parents
            return
    clock = VirtualClock(30.0)
    async with running(db, clock, [MI], slas=policy) as (store, rt):
        await rt.wait_idle()
        clock.advance_to(200.0)
        await rt.wait_idle()
        assert [e.item for e in breaches(await store.events("c1"))] == parents


async def test_an_alert_fires_on_time_while_reading_the_stores_next_timers_fails(
        db: str) -> None:
    """With few timers held, the store's next ones are read as the held ones fire. A
    read that fails (the store) is tried again every second, and what is held meanwhile
    -- an SLA alert here -- still fires on time; the store's timers fire once it reads."""
    deal_net = spec_net("deal-approval-gate")
    clock = VirtualClock(T0)
    async with running(db, clock, [deal_net, *NETS], slas=book()) as (store, rt):
        await rt.create("deal-approval-gate", "d0", DEAL_600K)  # due at T0 + 24 h
        clock.advance_to(T0 + HOUR)
        await rt.create("deal-approval-gate", "d1", DEAL_600K)  # due at T0 + 25 h
    async with running(db, clock, [deal_net, *NETS], slas=book(),
                       timer_window=1) as (store, rt):
        read = store.pending_timers
        failing = True

        async def pending_timers(after: Any, limit: int | None) -> Any:
            if failing:
                raise OSError("disk I/O error")
            return await read(after, limit)

        store.pending_timers = pending_timers  # type: ignore[method-assign]
        clock.advance_to(T0 + 23 * HOUR)
        await rt.create("sla-flow", "c1", {})  # Approve's alert at T0 + 26 h
        await rt.wait_idle()
        clock.advance_to(T0 + 24 * HOUR)  # d0 fires; reading d1's deadline fails
        await rt.wait_idle()
        clock.advance_to(T0 + 26 * HOUR)
        await rt.wait_idle()
        assert [b.at for b in breaches(await store.events("c1"))] == [T0 + 26 * HOUR]
        assert not [e for e in await store.events("d1") if type(e) is TimerFired]
        failing = False
        clock.advance_to(T0 + 26 * HOUR + 1)
        await rt.wait_idle()
        fired = [e.at for e in await store.events("d1") if type(e) is TimerFired]
        assert fired == [T0 + 26 * HOUR + 1], fired
