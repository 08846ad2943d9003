"""Economics (conversion, process cost, deal profitability) on hand-computable histories:
every number below can be checked on paper, and the invariants (a person's shared hours
add up to the time they held anything) hold for any history hypothesis comes up with."""

from __future__ import annotations

import math

import pytest
from history_kit import T0, H, stay
from hypothesis import given
from hypothesis import strategies as st

from mapek.economics import (
    PIPELINE,
    CostModel,
    PricedItem,
    WorkingHours,
    conversion,
    deal_profitability,
    deal_status,
    priced_items,
    process_cost,
    shared_hours,
    working_seconds,
)
from mapek.insights import Phase
from mapek.monitor import Observation

# ------------------------------------------------------------------ conversion
LEADS, DEALS = PIPELINE.leads, PIPELINE.deals
CONTRACT, REVENUE = "contract-processing", "revenue-recognition"


def marks(case: str, step: tuple[str, str], at_h: float = 1) -> Observation:
    return Observation(case, step[0], step[1], 1, T0 + at_h * H, None, T0 + at_h * H,
                       "completed", by="action:x")


def funnel_history() -> tuple[list[Phase], list[Observation], dict[str, dict[str, object]]]:
    phases = [stay("L1", LEADS, 0, 1), stay("L2", LEADS, 0, 1), stay("L3", LEADS, 0, 1),
              stay("D1", DEALS, 2, 3), stay("D1", CONTRACT, 3, 4), stay("D1", REVENUE, 4, 9),
              stay("D2", DEALS, 2, 3), stay("D2", CONTRACT, 3),
              stay("D3", DEALS, 2, 3, "cancelled")]
    obs = [marks("L1", PIPELINE.qualified), marks("L2", PIPELINE.qualified),
           marks("D1", PIPELINE.approved), marks("D2", PIPELINE.approved),
           marks("D1", PIPELINE.booked, 9)]
    attributes: dict[str, dict[str, object]] = {
        "D1": {"segment": "smb", "deal_acv": 1000, "discount_percent": 0.1},
        "D2": {"segment": "enterprise", "deal_acv": 5000},
        "D3": {"segment": "smb", "deal_acv": 2000}}
    return phases, obs, attributes


def test_conversion_counts_each_step_and_segment() -> None:
    phases, obs, attributes = funnel_history()
    c = conversion(phases, obs, attributes)
    assert (c.leads, c.leads_qualified, c.deals, c.deals_approved, c.deals_signed,
            c.deals_booked) == (3, 2, 3, 2, 1, 1)
    assert (c.booked_acv, c.booked_net) == (1000.0, pytest.approx(900.0))
    assert c.lead_to_deal == 1.0 and c.deal_to_booked == pytest.approx(1 / 3)
    enterprise, smb = c.segments  # most pipeline ACV first
    assert (enterprise.segment, enterprise.deals, enterprise.open, enterprise.win_rate) == (
        "enterprise", 1, 1, None)
    assert (smb.deals, smb.approved, smb.signed, smb.booked, smb.lost) == (2, 1, 1, 1, 1)
    assert smb.pipeline_acv == 3000.0 and smb.win_rate == 0.5
    assert c.total.deals == sum(s.deals for s in c.segments) == c.deals
    assert deal_status(phases, {"D1"}) == {"D1": "booked", "D2": "open", "D3": "lost"}


# ------------------------------------------------------------------ cost
MON = T0  # Monday 00:00 UTC
NINE_TO_FIVE = WorkingHours()


def test_working_seconds_count_paid_hours_only() -> None:
    import numpy as np

    def paid(a_h: float, b_h: float, zone: str = "UTC") -> float:
        w = working_seconds(np.array([MON + a_h * H, MON + b_h * H]), zone, NINE_TO_FIVE)
        return float(w[1] - w[0]) / H

    assert paid(9, 10) == 1.0
    assert paid(16, 24 + 10) == 2.0  # Monday 16:00 -> Tuesday 10:00: the night is free
    assert paid(4 * 24 + 16, 7 * 24 + 10) == 2.0  # Friday 16:00 -> Monday: no weekend
    assert paid(0, 7 * 24) == 40.0  # a week
    assert paid(13, 14, "America/New_York") == 0.0  # 08:00-09:00 in New York
    assert paid(14, 15, "America/New_York") == 1.0
    at = np.array([MON, MON + 5 * H])
    assert (working_seconds(at, "UTC", None) == at).all()  # around the clock


def test_shared_hours_divide_a_persons_time_among_items_held() -> None:
    import numpy as np

    def paid(t: np.ndarray) -> np.ndarray:
        return working_seconds(t, "UTC", NINE_TO_FIVE)

    both = shared_hours(np.array([MON + 9 * H, MON + 10 * H]),
                        np.array([MON + 11 * H, MON + 12 * H]), paid)
    assert both.tolist() == [1.5, 1.5]  # 9-10 A alone, 10-11 shared, 11-12 B alone


@given(st.lists(st.tuples(st.floats(0, 200), st.floats(0, 50)), min_size=1, max_size=30))
def test_shared_hours_sum_to_the_time_anything_was_held(rows: list[tuple[float, float]],
                                                       ) -> None:
    import numpy as np

    begin = np.array([MON + a * H for a, _ in rows])
    end = np.array([MON + (a + d) * H for a, d in rows])
    hours = shared_hours(begin, end, lambda t: t)  # around the clock
    busy, reach = 0.0, -math.inf  # the union of the intervals, by a sweep
    for a, b in sorted(zip(begin.tolist(), end.tolist(), strict=True)):
        if b > reach:
            busy += b - max(a, reach)
            reach = b
    assert hours.sum() == pytest.approx(busy / H, abs=1e-6)
    assert (hours >= -1e-9).all()


MODEL = CostModel(rates={"sales_manager": 100.0, "sdr": 40.0}, currency="EUR",
                  effort_hours={"CustomerSignature": 0.25}, default_margin=0.5)


def work(case: str, task: str, by: str, begin_h: float, end_h: float | None,
         role: str | None = "sales_manager", wf: str = DEALS,
         outcome: str = "completed") -> Observation:
    return Observation(case, wf, task, 1, MON + begin_h * H, None,
                       None if end_h is None else MON + end_h * H,
                       None if end_h is None else outcome, by=by, role=role)


def test_priced_items_charge_shared_working_hours_at_the_persons_rate() -> None:
    obs = [work("D1", "SendToSalesManager", "marcus", 9, 11),
           work("D2", "SendToSalesManager", "marcus", 10, 12),
           work("D3", "SendToSalesManager", "marcus", 10, None),  # open at `now`
           work("D1", "CustomerSignature", "sarah", 9, 60, role="sdr", wf=CONTRACT),
           work("D1", "AllApprovalsComplete", "action:x", 9, 9, role=None),  # automatic
           work("D2", "CustomerSignature", "timer", 9, 99, role="sdr"),  # nobody
           work("D3", "SendToLegal", "marcus", 9, 10, outcome="cancelled"),
           work("D4", "SendToLegal", "priya", 9, 10, role="legal_counsel")]
    people = {"marcus": "sales_manager", "sarah": "sdr", "priya": "legal_counsel"}
    items = priced_items(obs, MODEL, people.get, now=MON + 12 * H)
    got = {(it.case_id, it.task): (it.role, it.hours, it.cost, it.standard) for it in items}
    assert got[("D1", "SendToSalesManager")] == ("sales_manager", pytest.approx(1 + 1 / 3),
                                                 pytest.approx(100 * (1 + 1 / 3)), False)
    assert got[("D2", "SendToSalesManager")][1] == pytest.approx(1 / 3 + 1 / 2)
    assert got[("D1", "CustomerSignature")] == ("sdr", 0.25, 10.0, True)  # standard effort
    assert got[("D4", "SendToLegal")] == ("legal_counsel", 1.0, None, False)  # no rate
    assert len(items) == 4  # no open, automatic, timer or cancelled item is priced

    cost = process_cost(items, MODEL)
    assert cost.currency == "EUR"
    assert [r.role for r in cost.roles] == ["sales_manager", "sdr", "legal_counsel"]
    manager = cost.roles[0]
    assert manager.hours == pytest.approx(1 + 1 / 3 + 1 / 3 + 1 / 2)
    assert manager.cost == pytest.approx(manager.hours * 100)
    assert cost.unpriced_hours == 1.0 and cost.roles[-1].cost is None
    assert cost.total_cost == pytest.approx(sum(it.cost or 0 for it in items))
    deals = {w.workflow_id: w for w in cost.workflows}
    assert deals[DEALS].cases == 2 and deals[CONTRACT].cost == 10.0
    assert deals[DEALS].cost_per_case == pytest.approx(deals[DEALS].cost / 2)


def test_deal_profitability_is_margin_after_discount_minus_cost_to_serve() -> None:
    items = [PricedItem("D1", DEALS, "T", "sales_manager", 5.0, False, 500.0),
             PricedItem("D2", DEALS, "T", "sales_manager", 60.0, False, 6000.0),
             PricedItem("D2", DEALS, "T", "board", 1.0, False, None)]  # unpriced
    attributes = {"D1": {"segment": "enterprise", "deal_acv": 100_000,
                         "discount_percent": 0.1, "margin_percent": 0.8},
                  "D2": {"segment": "smb", "deal_acv": 10_000},
                  "D3": {"segment": "smb", "deal_acv": 1_000_000}}
    p = deal_profitability({"D1": "booked", "D2": "booked", "D3": "open"}, attributes,
                           items, MODEL)
    by_case = {d.case_id: d for d in p.deals}
    d1, d2 = by_case["D1"], by_case["D2"]
    assert (d1.net_revenue, d1.gross_margin, d1.cost_to_serve) == (
        pytest.approx(90_000), pytest.approx(72_000), 500.0)
    assert d1.contribution == pytest.approx(71_500)
    assert d1.contribution_share == pytest.approx(71_500 / 90_000)
    assert d2.margin_share == 0.5 and d2.contribution == -1000.0  # default margin
    assert p.deals[0].case_id == "D2"  # least profitable first
    assert p.basis == "booked" and p.total.deals == 2  # the open D3 is not summed
    assert p.total.contribution == pytest.approx(70_500)
    assert p.total.discount_given == pytest.approx(10_000)
    assert [s.segment for s in p.segments] == ["enterprise", "smb"]
    assert p.segments[1].losing == 1
