"""What the pipeline simulation is made of: its configuration and the leads and deals it
draws.

Theory of operation
-------------------
`SimulationConfig` is specs/simulation.yaml: the people's and customers' response
models (mapek.responses), the mix of leads and deals, and how often each task ends
which way. Every default is here too, so a missing file or section means "as shipped".

Deals are drawn to exercise every branch of the five workflows (PIPELINE.md):

* a segment (smb / mid_market / enterprise) fixes the company size and the ACV range
  (log-uniform within it): small deals need the manager and finance only, mid-market
  ones legal too, enterprise ones (above 250K) the executive check, and some above 1M
  and 5M contract value go beyond a director's and legal counsel's authority;
* a contract type per segment: standard (automated e-signature), custom (legal review,
  amendments, manual signature) or msa (plus executive review);
* a discount: none for about half the deals (straight to revenue recognition), else
  one of the authority bands of decision table 4 (manager, director, CFO, board, CEO),
  and above 15 % the executive check of decision table 2.

Leads come in two kinds. A deal's own lead has a profile that qualifies (scored above
65, or 40-65 and qualified by a manager's review); the other leads ("extra": weak,
borderline, invalid contact, strong but going nowhere in the window) exercise the
archive and review routes of lead qualification.

Drawing is plain functions of a `random.Random`, called in a fixed order, so the same
seed draws the same leads and deals.
"""

from __future__ import annotations

import math
import random
from typing import Annotated, Any

import msgspec

from .responses import CustomerModel, Delay, PeopleModel, RoleModel, Share

Weight = Annotated[float, msgspec.Meta(ge=0)]


class Segment(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    share: Weight
    acv: tuple[float, float]  # log-uniform between
    company_size: tuple[int, int]  # log-uniform between
    contracts: dict[str, Weight]  # standard / custom / msa -> weight


class DiscountBand(msgspec.Struct, forbid_unknown_fields=True, frozen=True, array_like=True):
    low: float
    high: float
    weight: Weight


class DealMix(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    segments: dict[str, Segment] = msgspec.field(default_factory=lambda: {
        "smb": Segment(0.45, (8_000, 50_000), (15, 250), {"standard": 0.85, "custom": 0.15}),
        "mid_market": Segment(0.35, (50_000, 250_000), (200, 3_000),
                              {"standard": 0.55, "custom": 0.35, "msa": 0.10}),
        "enterprise": Segment(0.20, (250_000, 2_500_000), (2_000, 60_000),
                              {"standard": 0.20, "custom": 0.45, "msa": 0.35}),
    })
    no_discount: Share = 0.5
    discounts: list[DiscountBand] = msgspec.field(default_factory=lambda: [  # table 4
        DiscountBand(0.01, 0.05, 0.35), DiscountBand(0.055, 0.10, 0.30),
        DiscountBand(0.105, 0.15, 0.20), DiscountBand(0.155, 0.25, 0.10),
        DiscountBand(0.26, 0.35, 0.05),
    ])
    term_years: Annotated[int, msgspec.Meta(ge=1)] = 3
    margin: tuple[float, float] = (0.55, 0.85)


class LeadMix(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    lead_to_deal: Delay = Delay(48.0, 0.6)  # a deal's lead arrives this long before it
    extra_per_deal: Weight = 0.8  # leads that do not become deals, per deal
    extra: dict[str, Weight] = msgspec.field(default_factory=lambda: {
        "weak": 0.40, "borderline": 0.35, "invalid": 0.15, "strong": 0.10})
    borderline_qualified: Share = 0.35  # a manager qualifies an extra borderline lead


DEFAULT_OUTCOMES: dict[str, dict[str, float]] = {
    "SendToSalesManager": {"approved": 0.97, "rejected": 0.03},
    "SendToLegal": {"approved": 0.97, "rejected": 0.03},
    "SendToFinance": {"approved": 0.98, "rejected": 0.02},
    "ExecutiveCheck": {"approved": 0.95, "rejected": 0.05},
    "LegalReview": {"approved": 0.62, "amendments": 0.33, "rejected": 0.05},
    "ExecutiveReview": {"approved": 0.80, "amendments": 0.15, "rejected": 0.05},
    "Escalate": {"resolved": 0.85, "rejected": 0.15},
    "pricing_approval": {"approved": 0.70, "revise": 0.20, "denied": 0.10},
    "Collections": {"collected": 0.70, "written_off": 0.30},
}

DEFAULT_ROLES = {
    "sdr": RoleModel(median_hours=0.75, sigma=0.9),
    "sales_manager": RoleModel(median_hours=2.5, sigma=0.9,
                               hour_multipliers={15: 1.3, 16: 1.6}),
    "director": RoleModel(median_hours=3.0, sigma=0.9),
    "legal_counsel": RoleModel(median_hours=5.0, sigma=0.8),
    "finance_manager": RoleModel(median_hours=1.5, sigma=0.8),
    "cfo": RoleModel(median_hours=2.5, sigma=1.0),
    "board": RoleModel(median_hours=16.0, sigma=0.7),
    "ceo": RoleModel(median_hours=8.0, sigma=0.9),
}


class SimulationConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    time_zone: str = "America/New_York"  # the business's: arrival patterns' office hours
    people: PeopleModel = msgspec.field(
        default_factory=lambda: PeopleModel(roles=dict(DEFAULT_ROLES)))
    customers: CustomerModel = CustomerModel()
    deals: DealMix = DealMix()
    leads: LeadMix = LeadMix()
    outcomes: dict[str, dict[str, Weight]] = msgspec.field(  # task -> result -> weight
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_OUTCOMES.items()})
    invoice_after_hours: Annotated[float, msgspec.Meta(gt=0)] = 24.0  # the prepay window
    max_amendment_rounds: Annotated[int, msgspec.Meta(ge=0)] = 3  # then legal approves


# ------------------------------------------------------------------- drawing
def weighted(rng: random.Random, weights: dict[str, float]) -> str:
    """A key drawn in proportion to its weight (keys in the mapping's order)."""
    total = sum(weights.values())
    x = rng.random() * total
    for key, w in weights.items():
        x -= w
        if x < 0:
            return key
    return next(reversed(weights))


def _log_uniform(rng: random.Random, lo: float, hi: float) -> float:
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


_FIRST = ("Acme", "Blue", "Cedar", "Delta", "Evergreen", "Falcon", "Granite", "Harbor",
          "Iris", "Juniper", "Kestrel", "Lumen", "Meridian", "Nimbus", "Orchid", "Pioneer",
          "Quartz", "Redwood", "Summit", "Tidal", "Union", "Vertex", "Willow", "Zenith")
_SECOND = ("Analytics", "Logistics", "Health", "Capital", "Systems", "Retail", "Labs",
           "Energy", "Foods", "Media", "Robotics", "Partners")
_TARGET_INDUSTRIES = ("Software", "SaaS", "Financial Services", "Healthcare Technology",
                      "E-commerce")
_OTHER_INDUSTRIES = ("IT Consulting", "Manufacturing", "Retail", "Education", "Logistics")
_US = ("Austin, TX", "Boston, MA", "New York, NY", "Seattle, WA", "San Diego, CA")
_ABROAD = ("Berlin, Germany", "Lyon, France", "Toronto, Canada", "Osaka, Japan")
_PRODUCTS = ("Enterprise Analytics", "Revenue Insights", "Forecasting Suite",
             "Pipeline Automation")


def company(rng: random.Random, n: int) -> str:
    return f"{rng.choice(_FIRST)} {rng.choice(_SECOND)} {n:05d}"


def draw_deal(rng: random.Random, mix: DealMix, n: int, name: str) -> dict[str, Any]:
    """A deal's data (deal-approval-gate's fields plus segment, size and industry)."""
    seg_name = weighted(rng, {k: s.share for k, s in mix.segments.items()})
    seg = mix.segments[seg_name]
    acv = round(_log_uniform(rng, *seg.acv), -2)
    discount = 0.0
    if rng.random() >= mix.no_discount and mix.discounts:
        band = mix.discounts[int(weighted(rng, {str(i): b.weight
                                                for i, b in enumerate(mix.discounts)}))]
        discount = round(rng.uniform(band.low, band.high) / 0.005) * 0.005
        discount = round(min(1.0, max(0.005, discount)), 3)
    return {
        "deal_name": f"{name} {rng.choice(_PRODUCTS)}",
        "customer_name": name,
        "customer_id": f"cust_{n:05d}",
        "deal_acv": acv,
        "deal_value_3yr": acv * mix.term_years,
        "discount_percent": discount,
        "margin_percent": round(rng.uniform(*mix.margin), 3),
        "contract_type": weighted(rng, seg.contracts),
        "segment": seg_name,
        "company_size": int(_log_uniform(rng, *seg.company_size)),
        "industry": (rng.choice(_TARGET_INDUSTRIES) if rng.random() < 0.8
                     else rng.choice(_OTHER_INDUSTRIES)),
    }


def lead_for(rng: random.Random, deal: dict[str, Any], n: int) -> dict[str, Any]:
    """The qualifying lead a deal grew from."""
    name = deal["customer_name"]
    return {
        "company_name": name, "contact_name": f"Buyer {n:05d}",
        "contact_email": f"buyer{n:05d}@{_domain(name)}",
        "company_size": deal["company_size"], "industry": deal["industry"],
        "location": rng.choice(_US), "use_case": rng.choice(_PRODUCTS),
        "budget_known": True, "lead_source": rng.choice(("form", "referral", "event")),
    }


def extra_lead(rng: random.Random, kind: str, n: int) -> dict[str, Any]:
    """A lead that does not become a deal (PIPELINE.md decision table 1's other rows)."""
    name = company(rng, n)
    lead: dict[str, Any] = {
        "company_name": name, "contact_name": f"Contact {n:05d}",
        "contact_email": f"contact{n:05d}@{_domain(name)}",
        "lead_source": rng.choice(("form", "email", "event", "api")),
    }
    if kind == "weak":  # small, off-target, nothing known: archived
        lead |= {"company_size": rng.randint(5, 80), "industry": "Retail",
                 "location": rng.choice(_ABROAD), "budget_known": False}
    elif kind == "borderline":  # 100-499, not a target industry: a manager's review
        lead |= {"company_size": rng.randint(100, 450),
                 "industry": rng.choice(_OTHER_INDUSTRIES[1:]),
                 "location": rng.choice(_ABROAD), "use_case": rng.choice(_PRODUCTS),
                 "budget_known": True}
    else:  # strong (or invalid: the SDR finds the contact bogus before scoring)
        lead |= {"company_size": rng.randint(600, 20_000),
                 "industry": rng.choice(_TARGET_INDUSTRIES), "location": rng.choice(_US),
                 "use_case": rng.choice(_PRODUCTS), "budget_known": True}
    return lead


def _domain(name: str) -> str:
    return name.lower().replace(" ", "-") + ".example"
