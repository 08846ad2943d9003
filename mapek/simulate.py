"""The pipeline simulation: leads and deals flowing through the five RevOps workflows
on the real runtime, worked by simulated people and customers (`caseloop simulate`).

Theory of operation
-------------------
`simulate_pipeline` runs the digital twin's loop (mapek.twin.run_agenda) over the
store it is given -- SQLite for the CLI, so the dashboard, `caseloop serve` and the
MAPE-K monitor see the history afterwards -- with a VirtualClock from `start` to
`start + days`. What it puts on the agenda:

* Arrivals. `deals` deal arrivals are drawn from the pattern (mapek.arrivals) over the
  period. Lead qualification (WF1) does not hand on to the deal gate (WF2): a
  qualified lead becomes a deal through a *new* case (PIPELINE.md). So each deal has
  its own lead, arriving `leads.lead_to_deal` earlier; when that lead is assigned to
  an SDR, the SDR opens the deal (WF2) at its planned time, or at once if the lead
  took longer. A deal whose lead would have arrived before the period starts opens
  without a lead case (its lead is history before the window). Extra leads that
  never become deals (weak, borderline, invalid, strong but quiet) come from the same
  draw (one draw of deals + extras, split at random, so a burst is a burst for both).
  A deal whose lead is still being qualified when the period ends is not
  opened: the summary counts deals opened, not planned.
* People. Every time the runtime offers a human work item, a person is chosen: the
  deal's owner (the SDR its lead was assigned to) for the SDR's tasks, else a holder
  of the task's role -- or, when the holders lack the authority the task needs (a 600K
  approval, a 20 % discount), the least senior person acting as that role who has
  it, checked by the same `authorize` the HTTP API uses. The person answers after
  their working-time response (mapek.responses) from dispatch (enabled, or released
  from a dispatch hold), with a result drawn from `outcomes`. Legal's approvals
  confirm the checklist; a pricing revision lowers the discount a little. An item that
  fails on its timer (the manager's approval unanswered after 24 h) is an incident: a
  person of the role picks it up after their response time, retries and completes it.
* Customers. The automated e-signature (the e_signature action is told to await its
  callback), a custom contract's signature, an amendment round, a prepayment and an
  invoice's payment take customers' calendar time; a signature may be declined, and
  when a customer is slower than the spec's timer (5 days to sign, 72 h per amendment,
  60 days to pay) the timer wins -- expiry, escalation, collections -- exactly as the
  specs say. The invoice goes out `invoice_after_hours` after revenue recognition
  starts; a prepaying customer who pays before that takes the prepay branch.

A planned action that finds its item gone (withdrawn, timed out, cancelled by a
rejection) is dropped and counted as `stale`. Randomness comes from four streams
derived from the seed (arrivals, deals, work, customers), drawn in agenda order, so the
same seed gives the same history event for event.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import msgspec

from actors import ActionContext, ActionRegistry, Runtime, VirtualClock
from actors.actions import AWAIT_CALLBACK, AWAITING
from actors.ports import Append, DispatchPolicy, EventStore, SlaPolicy
from engine import Case, EngineError, Net, WorkItem
from engine.net import AUTOMATIC

from .arrivals import arrivals
from .pipeline_mix import (
    SimulationConfig,
    company,
    draw_deal,
    extra_lead,
    lead_for,
    weighted,
)
from .sim_report import PhaseStats, Progress, SimulationSummary, Tally
from .twin import Act, Agenda, TapStore, run_agenda

__all__ = ["WORKFLOWS", "Authorize", "PhaseStats", "Progress", "SimPerson",
           "SimulationSummary", "simulate_pipeline"]

HOUR = 3600.0
DAY = 86400.0
LEADS, DEALS = "lead-qualification", "deal-approval-gate"
WORKFLOWS = (LEADS, DEALS, "contract-processing", "pricing-exception", "revenue-recognition")
VALIDATED = {"email_valid": True, "phone_valid": True, "company_verified": True}
CHECKLIST = {"redlines_reviewed": True, "pricing_approved": True}  # legal's gate
APPROVALS = ("SendToSalesManager", "SendToLegal", "SendToFinance", "ExecutiveCheck")
PRICING = ("SalesManagerApproval", "DirectorApproval", "CFOApproval", "BoardApproval",
           "CEOApproval")

class Authorize(Protocol):
    """Refuses (raises an EngineError) unless the person may complete the item with this
    output and result: adapters.people.authorize over roles.yaml, passed in by the
    caller."""

    def __call__(self, user: str, case: Case, ref: int, output: dict[str, Any] | None, *,
                 result: str | None = None) -> None: ...


class SimPerson(msgspec.Struct, frozen=True):
    id: str
    role: str
    roles: tuple[str, ...] = ()  # every role they may act in (their own and acts_as)
    time_zone: str = "UTC"


class _Deal(msgspec.Struct):
    case_id: str
    planned_at: float
    data: dict[str, Any]
    prepays: bool = False  # the customer pays before any invoice


class _Lead(msgspec.Struct):
    case_id: str
    data: dict[str, Any]
    kind: str  # deal (feeds one) | weak | borderline | invalid | strong
    deal: _Deal | None = None


class _Pipeline:
    """One simulation run: the runtime, the agenda and what the world remembers."""

    def __init__(self, store: EventStore, nets: Sequence[Net], actions: ActionRegistry,
                 cfg: SimulationConfig, people: Sequence[SimPerson], *, seed: int,
                 start: float, end: float, slas: SlaPolicy | None,
                 authorize: Authorize | None, signals_by: str,
                 dispatch: DispatchPolicy | None) -> None:
        self.cfg = cfg
        self.people = sorted(people, key=lambda p: p.id)
        self.authorize = authorize
        self.signals_by = signals_by
        self.start, self.end = start, end
        self.rng_work = random.Random(f"{seed}/work")
        self.rng_customers = random.Random(f"{seed}/customers")
        self.clock = VirtualClock(start)
        self.agenda = Agenda()
        self.rt = Runtime(TapStore(store, self._observe), self.clock, actions, slas=slas,
                          dispatch=dispatch)
        for net in nets:
            self.rt.add_net(net)
        self.leads: dict[str, _Lead] = {}
        self.deals: dict[str, _Deal] = {}
        self.opened = Counter[str]()  # leads / deals created
        self.fresh: deque[tuple[str, int]] = deque()  # items offered, not yet planned
        self.planned: set[tuple[str, int]] = set()
        self.leads_done: deque[str] = deque()  # deal leads that finished qualification
        self.failed: deque[tuple[str, int]] = deque()  # human items that became incidents
        self.rounds = Counter[str]()  # amendment rounds per case
        self.tally = Tally(signals_by)
        self.stale = self.unstaffed = 0

    # -------------------------------------------------------------- what happened
    def _observe(self, batch: Append) -> None:
        self.tally.observe(batch)
        cid = batch.case_id
        for it in batch.item_upserts:
            key = (cid, it.item)
            if it.state == "failed" and it.kind == "human":
                self.failed.append(key)  # a person's item timed out: an incident
                continue
            if key in self.planned:
                continue
            if (it.kind == "human" and it.state == "enabled") or (
                    it.kind == "automatic" and (it.assignee or "").startswith(AWAITING)):
                self.planned.add(key)
                self.fresh.append(key)
        lead = self.leads.get(cid)
        if lead is not None and lead.deal is not None and batch.case.state != "active":
            self.leads_done.append(cid)

    # ------------------------------------------------------------- the world acts
    async def settle(self) -> None:
        while self.leads_done:
            lead = self.leads[self.leads_done.popleft()]
            deal, lead.deal = lead.deal, None
            case = await self.rt.get(lead.case_id)
            owner = case.data.get("assigned_to")
            if deal is not None and owner:  # archived leads never become deals
                deal.data["owner"] = owner
                self.agenda.at(max(self.clock.now(), deal.planned_at), self._open(deal))
        while self.fresh:
            case_id, item = self.fresh.popleft()
            case = await self.rt.get(case_id)
            it = case.items.get(item)
            if it is not None:
                self._plan(case, it)
        while self.failed:
            case_id, item = self.failed.popleft()
            case = await self.rt.get(case_id)
            it = case.items.get(item)
            if it is not None and it.state == "failed":
                self._plan(case, it, retry=True)

    def _open(self, deal: _Deal) -> Act:
        async def open_deal() -> None:
            await self.rt.create(DEALS, deal.case_id, deal.data)
            self.opened["deals"] += 1
        return open_deal

    def _open_lead(self, lead: _Lead) -> Act:
        async def open_lead() -> None:
            await self.rt.create(LEADS, lead.case_id, lead.data)
            self.opened["leads"] += 1
        return open_lead

    def _complete(self, case_id: str, item: int, by: str, result: str | None,
                  output: dict[str, Any] | None, *, check: bool = True,
                  retry: bool = False) -> Act:
        authorize = self.authorize if check else None

        def command(c: Case) -> list[Any]:
            if authorize is not None:
                authorize(by, c, item, output, result=result)
            return c.complete(item, self.clock.now(), result, output, by)

        async def complete() -> None:
            try:
                if retry:  # the incident is picked up: retried, claimed and done at once
                    await self.rt.retry(case_id, item, by)
                await self.rt.tell(case_id, command)
            except EngineError:  # withdrawn, timed out or cancelled meanwhile
                self.stale += 1
        return complete

    # ------------------------------------------------------------------ planning
    def _staff(self, case: Case, it: WorkItem, role: str | None,
               output: dict[str, Any] | None, prefer: str | None = None,
               result: str | None = None) -> SimPerson | None:
        """Who takes the item: `prefer` if they hold the role, else the role's holders
        (in a drawn order), else those acting as the role, least senior first -- the
        first of them with the authority the task needs."""
        holders = [p for p in self.people if p.role == role]
        self.rng_work.shuffle(holders)
        acting = sorted((p for p in self.people if p.role != role and role in p.roles),
                        key=lambda p: (len(p.roles), p.id))
        order = [p for p in self.people if p.id == prefer and role in p.roles]
        for p in order + holders + acting:
            if self.authorize is None:
                return p
            try:
                self.authorize(p.id, case, it.id, output, result=result)
                return p
            except EngineError:
                continue
        return None

    def _outcome(self, name: str, default: str) -> str:
        table = self.cfg.outcomes.get(name)
        return weighted(self.rng_work, table) if table else default

    def _plan(self, case: Case, it: WorkItem, *, retry: bool = False) -> None:
        t = case.net.tasks[it.task]
        held = getattr(it, "held_until", None)
        at = it.enabled_at if held is None else max(it.enabled_at, held)
        at = max(at, self.clock.now())  # an incident: noticed from the moment it failed
        customers, rng_c = self.cfg.customers, self.rng_customers
        cid, task, data = case.case_id, t.id, case.data
        if t.kind == AUTOMATIC:  # the e-signature service waits for the customer
            result = "declined" if rng_c.random() < customers.declines else "signed"
            self.agenda.at(at + customers.e_signature.sample(rng_c, at, customers.time_zone),
                           self._complete(cid, it.id, self.signals_by, result, None,
                                          check=False))
            return
        if task in ("PaymentReceived", "PrepaymentReceived"):  # the billing system reports
            deal = self.deals.get(cid)
            if task == "PrepaymentReceived":
                if deal is None or not deal.prepays:
                    return  # withdrawn once the invoice goes out
                delay = customers.prepay_within.sample(rng_c)
            else:
                delay = customers.payment.sample(rng_c)
            paid = {"amount_paid": round(data.get("deal_acv", 0)
                                         * (1 - data.get("discount_percent", 0)), 2)}
            self.agenda.at(at + delay, self._complete(cid, it.id, self.signals_by, "paid",
                                                      paid, check=False))
            return
        result, output = self._decide(case, task)
        lead = self.leads.get(cid)
        owner = data.get("owner") if lead is None else None
        person = self._staff(case, it, t.role, output, prefer=owner, result=result)
        if person is None:
            self.unstaffed += 1
            return
        if task == "CustomerSignature":  # the customer signs; the SDR records it
            wait = customers.signature.sample(rng_c)
        elif task == "RequestAmendments":  # a round with the customer
            wait = customers.amendment.sample(rng_c)
        else:
            wait = self.cfg.people.response(person.id, person.role, person.time_zone, at,
                                            self.rng_work)
        self.agenda.at(at + wait, self._complete(cid, it.id, person.id, result, output,
                                                 retry=retry))

    def _decide(self, case: Case, task: str) -> tuple[str | None, dict[str, Any] | None]:
        """The result (and output) a person gives on `task` of this case."""
        cid, data = case.case_id, case.data
        lead = self.leads.get(cid)
        if task == "ReceiveMarketingLead":
            return "received", None
        if task == "ValidateContactInfo":
            if lead is not None and lead.kind == "invalid":
                return "invalid", None
            return "valid", dict(VALIDATED)
        if task == "ManualReview":
            qualifies = (lead is not None and lead.kind == "deal") or (
                self.rng_work.random() < self.cfg.leads.borderline_qualified)
            return ("qualified" if qualifies else "not_qualified"), None
        if task in ("LegalReview", "ExecutiveReview"):
            result = self._outcome(task, "approved")
            if result == "amendments" and self.rounds[cid] >= self.cfg.max_amendment_rounds:
                result = "approved"  # enough rounds: the contract is agreed
            confirmed = task == "LegalReview" and result == "approved"
            return result, ({"checklist": dict(CHECKLIST)} if confirmed else None)
        if task == "RequestAmendments":
            self.rounds[cid] += 1
            return "amended", None
        if task == "CustomerSignature":
            declined = self.rng_customers.random() < self.cfg.customers.declines
            return ("declined" if declined else "signed"), None
        if task == "JustifyDiscount":
            discount = float(data.get("discount_percent", 0))
            if data.get("pricing_attempts"):  # asked to revise: give a little ground
                discount = max(0.005, round(discount * 0.8 / 0.005) * 0.005)
            return "submitted", {"justification": "multi-year commitment and reference "
                                 "customer", "discount_percent": round(discount, 3)}
        if task in PRICING:
            return self._outcome("pricing_approval", "approved"), None
        if task in APPROVALS or task in ("Escalate", "Collections"):
            return self._outcome(task, "approved"), None
        return self._outcome(task, "done"), None  # a task this simulation does not know


async def simulate_pipeline(store: EventStore, nets: Sequence[Net], actions: ActionRegistry,
                            config: SimulationConfig, people: Sequence[SimPerson], *,
                            deals: int, days: float, pattern: str, seed: int, start: float,
                            slas: SlaPolicy | None = None, authorize: Authorize | None = None,
                            signals_by: str = "signal:billing", case_prefix: str = "",
                            dispatch: DispatchPolicy | None = None,
                            progress: Callable[[Progress], None] | None = None,
                            pause: Callable[[], Awaitable[None]] | None = None,
                            ) -> SimulationSummary:
    """Simulate `deals` deals (and their leads) arriving by `pattern` over `days` from
    `start` on the given store; the pipeline's nets must be among `nets`. The
    simulation registers its customers in `actions`: e_signature awaits the customer's
    callback, send_invoice goes out after `config.invoice_after_hours`. `pause` is
    awaited whenever the runtime is idle between two steps, where waiting changes
    nothing of what happens (a store that writes behind lets its disk catch up)."""
    have = {n.workflow_id for n in nets}
    missing = [w for w in WORKFLOWS if w not in have]
    if missing:
        raise ValueError(f"the pipeline's workflows are not all registered: {missing}")
    end = start + days * DAY

    async def await_customer(ctx: ActionContext) -> Any:
        return AWAIT_CALLBACK

    async def invoice(ctx: ActionContext) -> dict[str, Any]:
        return {}

    actions.register("e_signature", await_customer)
    actions.register("send_invoice", invoice, delay=config.invoice_after_hours * HOUR)
    sim = _Pipeline(store, nets, actions, config, people, seed=seed, start=start, end=end,
                    slas=slas, authorize=authorize, signals_by=signals_by, dispatch=dispatch)
    rng_arrivals = random.Random(f"{seed}/arrivals")
    rng_deals = random.Random(f"{seed}/deals")
    prefix = f"{case_prefix}-" if case_prefix else ""
    mix, leads_mix = config.deals, config.leads
    extra = round(deals * leads_mix.extra_per_deal)
    # One draw for deals and extra leads, split at random: both follow the same
    # intensity (a burst's spikes are the same spikes for both).
    both = arrivals(pattern, deals + extra, days, start, rng_arrivals,
                    time_zone=config.time_zone)
    order = list(range(len(both)))
    rng_arrivals.shuffle(order)
    times = sorted(both[i] for i in order[:deals])
    sdrs = [p.id for p in sim.people if p.role == "sdr"] or [None]
    for n, at in enumerate(times):
        data = draw_deal(rng_deals, mix, n, company(rng_deals, n))
        deal = _Deal(f"{prefix}deal-{n:05d}", at, data,
                     prepays=rng_deals.random() < config.customers.prepay)
        sim.deals[deal.case_id] = deal
        lead_at = at - leads_mix.lead_to_deal.sample(rng_deals)
        if lead_at < start:  # its lead came before the window: the deal opens as planned
            data["owner"] = sdrs[n % len(sdrs)]
            sim.agenda.at(at, sim._open(deal))
            continue
        lead = _Lead(f"{prefix}lead-{n:05d}", lead_for(rng_deals, data, n), "deal", deal)
        data["lead_id"] = lead.case_id
        sim.leads[lead.case_id] = lead
        sim.agenda.at(lead_at, sim._open_lead(lead))
    for k, at in enumerate(sorted(both[i] for i in order[deals:])):
        n = deals + k
        kind = weighted(rng_deals, leads_mix.extra)
        lead = _Lead(f"{prefix}lead-{n:05d}", extra_lead(rng_deals, kind, n), kind)
        sim.leads[lead.case_id] = lead
        sim.agenda.at(at, sim._open_lead(lead))

    steps = 0

    def step() -> None:
        nonlocal steps
        steps += 1
        if progress is not None and steps % 200 == 0:
            progress(_progress(sim, deals))

    async with sim.rt:
        async def settle() -> None:
            if pause is not None:
                await pause()
            await sim.settle()

        await run_agenda(sim.rt, sim.clock, sim.agenda, settle=settle, until=end, step=step)
    if progress is not None:
        progress(_progress(sim, deals))
    return _summary(sim, pattern, seed, deals)


def _progress(sim: _Pipeline, planned: int) -> Progress:
    return Progress(sim.clock.now(), sim.start, sim.end, sim.opened["leads"],
                    sim.opened["deals"], planned, sim.tally.events)


def _summary(sim: _Pipeline, pattern: str, seed: int, planned: int) -> SimulationSummary:
    return sim.tally.summary(
        start=sim.start, end=sim.end, pattern=pattern, seed=seed, leads=sim.opened["leads"],
        deals=sim.opened["deals"], deals_planned=planned, order=WORKFLOWS, stale=sim.stale,
        unstaffed=sim.unstaffed, incidents=len(sim.rt.incidents))
