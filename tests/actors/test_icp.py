"""ICP scoring (actors/icp.py) against the shipped profile (specs/icp.yaml): the
tutorial's TechCorp lead scores 72, decision table 1's rows land in their bands (the
ones the profile's header claims), floors, missing fields, a located error for a bad
profile, the action handler, and properties of the score."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
from actors_kit import TECHCORP_LEAD, pipeline_nets, running
from hypothesis import given
from hypothesis import strategies as st

from actors import ActionContext, VirtualClock, placeholder_actions
from actors.icp import BreakdownItem, IcpScore, icp_action, load_profile, score

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROFILE = load_profile((ROOT / "specs" / "icp.yaml").read_text(encoding="utf-8"))
VALIDATED = {"email_valid": True, "phone_valid": True, "company_verified": True}
TECHCORP = {**TECHCORP_LEAD, **VALIDATED}


def pts(result: IcpScore) -> dict[str, int]:
    return {b.rule: b.points for b in result.breakdown}


# ------------------------------------------------------------------------- TechCorp
def test_techcorp_scores_72_with_its_breakdown() -> None:
    assert TECHCORP["company_size"] == 5000 and TECHCORP["industry"] == "IT Consulting"
    result = score(PROFILE, TECHCORP)
    assert result.score == 72
    assert result.floor is None  # the 5000+ floor (70) applies but the rules beat it
    assert result.breakdown == [
        BreakdownItem("company_size", "company_size", 40, "company_size 5000 >= 5000"),
        BreakdownItem("target_industry", "industry", 0,
                      "industry 'IT Consulting' not in the target set"),
        BreakdownItem("use_case_clear", "use_case", 12, "use_case given"),
        BreakdownItem("budget_known", "budget_known", 0, "budget_known missing: 0 points"),
        BreakdownItem("validated_contact", "email_valid+company_verified", 10,
                      "email_valid and company_verified all true"),
        BreakdownItem("target_region", "location", 10,
                      "location 'San Francisco, CA' contains 'CA'"),
    ]


# ------------------------------------------------------------ decision table 1 rows
def lead(size: int, target: bool, use_case: bool, budget: bool, **more: Any) -> dict[str, Any]:
    """A DT1 row as a lead: contact validated, location outside the target regions
    (the reference lead of the profile's header)."""
    d: dict[str, Any] = {"company_size": size,
                         "industry": "SaaS" if target else "Manufacturing",
                         "location": "Toronto, Ontario", "budget_known": budget,
                         **VALIDATED, **more}
    if use_case:
        d["use_case"] = "Pipeline analytics"
    return d


@pytest.mark.parametrize(("size", "target", "use_case", "budget", "lo", "hi"), [
    (50, False, False, False, 0, 30),
    (50, True, False, False, 0, 30),
    (99, True, False, False, 0, 30),
    (150, False, True, False, 41, 50),
    (499, False, True, False, 41, 50),
    (150, False, True, True, 51, 65),
    (150, True, True, True, 66, 75),
    (499, True, True, True, 66, 75),
    (500, True, True, True, 76, 100),
    (4999, True, True, True, 76, 100),
    (5000, True, True, True, 76, 100),
    (20000, True, True, True, 76, 100),
])
def test_dt1_rows_met_exactly(size: int, target: bool, use_case: bool, budget: bool,
                              lo: int, hi: int) -> None:
    assert lo <= score(PROFILE, lead(size, target, use_case, budget)).score <= hi


def test_dt1_row_100_500_nothing_else_is_only_roughly_met() -> None:
    # Documented in icp.yaml: one point under the 31-40 band; a target-region location
    # brings it to 40.
    assert score(PROFILE, lead(150, False, False, False)).score == 30
    assert score(PROFILE, lead(150, False, False, False, location="Austin, TX")).score == 40


@pytest.mark.parametrize("use_case", [False, True])
@pytest.mark.parametrize("budget", [False, True])
@pytest.mark.parametrize("target", [False, True])
def test_dt1_5000_plus_any_is_70_or_more(target: bool, use_case: bool, budget: bool) -> None:
    assert score(PROFILE, lead(5000, target, use_case, budget)).score >= 70
    assert score(PROFILE, {"company_size": 5000}).score >= 70


def test_dt1_routing_bands() -> None:
    # > 65 AssignToSDR, 40-65 ManualReview, < 40 ArchiveLead.
    assert score(PROFILE, lead(50, False, False, False)).score < 40
    assert 40 <= score(PROFILE, lead(150, False, True, True)).score <= 65
    assert score(PROFILE, lead(150, True, True, True)).score > 65


# ------------------------------------------------------------------------ floors
def test_floor_lifts_a_bare_enterprise_lead_and_says_so() -> None:
    result = score(PROFILE, {"company_size": 6000})
    assert result.score == 70 and result.floor == "enterprise_size"
    assert sum(b.points for b in result.breakdown) == 70
    assert result.breakdown[-1].rule == "enterprise_size"
    assert result.breakdown[-1].points == 30  # 40 from the size band, 30 from the floor


def test_highest_applicable_floor_wins_and_a_floor_below_its_field_does_not() -> None:
    p = load_profile("""
rules: [{name: u, kind: text, field: use_case, points: 5}]
floors:
  - {when: {field: size, at_least: 10}, score: 20}
  - {when: {field: size, at_least: 100}, score: 50, name: big}
""")
    assert score(p, {"size": 5}).score == 0
    assert score(p, {"size": 10}).score == 20 and score(p, {"size": 10}).floor == "size >= 10"
    assert score(p, {"size": 500}).score == 50 and score(p, {"size": 500}).floor == "big"
    assert score(p, {"size": True}).score == 0  # a bool is not a size


def test_sum_is_capped_at_100() -> None:
    p = load_profile("""
rules:
  - {name: a, kind: boolean, field: a, points: 80}
  - {name: b, kind: boolean, field: b, points: 80}
""")
    assert score(p, {"a": True, "b": True}).score == 100


# ---------------------------------------------------------------- missing fields
def test_empty_lead_scores_zero_and_every_rule_says_missing() -> None:
    result = score(PROFILE, {})
    assert result.score == 0 and result.floor is None
    assert len(result.breakdown) == len(PROFILE.rules)
    assert all(b.points == 0 and "missing" in b.reason for b in result.breakdown)


@pytest.mark.parametrize("field", ["company_size", "industry", "use_case", "location",
                                   "email_valid", "company_verified"])
def test_a_missing_field_scores_zero_for_its_rule(field: str) -> None:
    data = {k: v for k, v in TECHCORP.items() if k != field}
    item = next(b for b in score(PROFILE, data).breakdown if field in b.field.split("+"))
    assert item.points == 0 and field in item.reason and "missing" in item.reason


def test_wrong_types_and_nulls_score_zero_without_raising() -> None:
    weird = {"company_size": "5000", "industry": 7, "use_case": ["x"], "location": None,
             "budget_known": "yes", "email_valid": 1, "company_verified": True}
    result = score(PROFILE, weird)
    assert result.score == 0
    assert score(PROFILE, {"company_size": float("nan")}).score == 0
    assert score(PROFILE, {"use_case": "   "}).score == 0


# ---------------------------------------------------------------- matching rules
@pytest.mark.parametrize("industry", ["saas", "SAAS", " Financial services ", "e-COMMERCE",
                                      "healthcare technology"])
def test_industry_set_is_case_insensitive(industry: str) -> None:
    assert pts(score(PROFILE, {"industry": industry}))["target_industry"] == 15


@pytest.mark.parametrize(("location", "hit"), [
    ("San Francisco, CA", True), ("new york, ny", True), ("Seattle WA", True),
    ("Boston, Massachusetts, USA", True), ("somewhere in the united states", True),
    ("Chicago, IL", False), ("Sunnyvale", False), ("Warsaw", False), ("Toronto", False),
])
def test_location_keywords_match_whole_words(location: str, hit: bool) -> None:
    assert pts(score(PROFILE, {"location": location}))["target_region"] == (10 if hit else 0)


def test_validated_contact_needs_every_listed_boolean() -> None:
    assert pts(score(PROFILE, {"email_valid": True, "company_verified": False})
               )["validated_contact"] == 0
    assert pts(score(PROFILE, {"email_valid": True, "company_verified": True})
               )["validated_contact"] == 10


# ------------------------------------------------------------------ bad profiles
@pytest.mark.parametrize(("text", "where"), [
    ("rules: [{name: a, kind: range, field: x, bands: [{at_least: 5, points: 1}, "
     "{at_least: 1, points: 2}]}]", "$.rules[0]"),
    ("rules: [{name: a, kind: boolean, field: x, points: 1}, "
     "{name: b, kind: set, field: y, values: [A], points: 1, extra: 2}]", "$.rules[1]"),
    ("rules: [{name: a, kind: sometimes, field: x, points: 1}]", "$.rules[0].kind"),
    ("rules: [{name: a, kind: boolean, field: x, points: -3}]", "$.rules[0].points"),
    ("rules: [{name: a, kind: all_true, fields: [], points: 3}]", "$.rules[0].fields"),
    ("rules: []\nfloors: [{when: {field: s}, score: 70}]", "$.floors[0].when"),
    ("rules: [{name: a, kind: boolean, field: x, points: 1}, "
     "{name: a, kind: boolean, field: y, points: 1}]", "unique"),
    ("rulez: []", "rulez"),
])
def test_a_malformed_profile_gives_a_located_value_error(text: str, where: str) -> None:
    with pytest.raises(ValueError, match=r"my\.yaml") as info:
        load_profile(text, "my.yaml")
    assert where in str(info.value)


def test_unparsable_yaml_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not valid YAML"):
        load_profile("rules: [", "bad.yaml")


# -------------------------------------------------------------------- the action
async def run_action(data: dict[str, Any]) -> dict[str, Any] | None:
    ctx = ActionContext(case_id="lead_techcorp_001", item=3, task="ScoringDecision",
                        action="icp_score", params={}, data=data, attempt=1, now=0.0)
    return await icp_action(PROFILE)(ctx)


@pytest.mark.anyio
async def test_action_returns_lead_score_and_plain_breakdown() -> None:
    out = await run_action(TECHCORP)
    assert out is not None and out["lead_score"] == 72
    assert out["icp_breakdown"][0] == {"rule": "company_size", "field": "company_size",
                                       "points": 40, "reason": "company_size 5000 >= 5000"}
    assert all(type(b) is dict for b in out["icp_breakdown"])
    assert sum(b["points"] for b in out["icp_breakdown"]) == 72
    assert (await run_action({}))["lead_score"] == 0  # type: ignore[index]


@pytest.mark.anyio
async def test_action_on_the_runtime_puts_the_breakdown_in_the_case_data(db: str) -> None:
    actions = placeholder_actions()
    actions.register("icp_score", icp_action(PROFILE))
    async with running(db, VirtualClock(0.0), pipeline_nets(), actions) as (_, rt):
        await rt.create("lead-qualification", "lead_techcorp_001", TECHCORP_LEAD)
        await rt.complete("lead_techcorp_001", "ReceiveMarketingLead", "received")
        await rt.complete("lead_techcorp_001", "ValidateContactInfo", "valid", VALIDATED)
        await rt.wait_idle()
        case = await rt.get("lead_techcorp_001")
        assert case.status == "completed" and rt.incidents == []
        assert case.data["lead_score"] == 72
        assert [b["points"] for b in case.data["icp_breakdown"]] == [40, 0, 12, 0, 10, 10]


@pytest.mark.anyio
async def test_the_placeholder_still_drives_the_spec(db: str) -> None:
    # The spec maps icp_breakdown from the action's output, falling back to the data
    # schema's default [] for an action (the placeholder) that reports none.
    async with running(db, VirtualClock(0.0), pipeline_nets(), placeholder_actions()) as (_, rt):
        await rt.create("lead-qualification", "l1", TECHCORP_LEAD)
        await rt.complete("l1", "ReceiveMarketingLead", "received")
        await rt.complete("l1", "ValidateContactInfo", "valid", VALIDATED)
        await rt.wait_idle()
        case = await rt.get("l1")
        assert case.status == "completed" and case.data["icp_breakdown"] == []


# -------------------------------------------------------------------- properties
FIELDS = ["company_size", "industry", "use_case", "location", "budget_known",
          "email_valid", "phone_valid", "company_verified", "other"]
values = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**7),
                   st.floats(allow_nan=True), st.text(max_size=30),
                   st.sampled_from(["SaaS", "saas", "IT Consulting", "Austin, TX", "USA"]),
                   st.lists(st.integers(), max_size=3))
leads = st.dictionaries(st.sampled_from(FIELDS), values)


@given(leads)
def test_score_is_always_an_int_in_0_100(data: dict[str, Any]) -> None:
    result = score(PROFILE, data)
    assert type(result.score) is int and 0 <= result.score <= 100


@given(leads, st.sampled_from(FIELDS))
def test_adding_a_true_boolean_never_lowers_the_score(data: dict[str, Any], field: str) -> None:
    data.pop(field, None)
    assert score(PROFILE, {**data, field: True}).score >= score(PROFILE, data).score
