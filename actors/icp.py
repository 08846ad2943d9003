"""ICP scoring: the ideal customer profile as data, and the `icp_score` action.

The profile (specs/icp.yaml) is a list of weighted field rules plus floors. A lead's
score is max(sum of the rules' points capped at 100, the highest applicable floor),
an integer 0-100 (PIPELINE.md decision table 1). `score` is pure: it reads the lead's
data and never raises on it; a field the lead lacks (or of the wrong type) scores 0
for its rule, and the breakdown says why. Reading the profile file is the caller's
job (actors/ does no file I/O): `load_profile` takes the YAML text.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

import msgspec
import yaml

from .actions import ActionContext, Handler

MAX_SCORE = 100

# Points are never negative: so adding a true fact about a lead can only raise its
# score (a property the tests check), and the cap at 100 stays the only clamp.
Points = Annotated[int, msgspec.Meta(ge=0, le=MAX_SCORE)]
Name = Annotated[str, msgspec.Meta(min_length=1)]


class Band(msgspec.Struct, forbid_unknown_fields=True):
    at_least: float
    points: Points


class RangeRule(msgspec.Struct, tag="range", tag_field="kind", forbid_unknown_fields=True):
    """Numeric field: the points of the band with the highest `at_least` <= value."""
    name: Name
    field: Name
    bands: list[Band]

    def __post_init__(self) -> None:
        if not self.bands:
            raise ValueError("a range rule needs at least one band")
        bounds = [b.at_least for b in self.bands]
        if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
            raise ValueError("bands must be in strictly ascending `at_least` order")


class SetRule(msgspec.Struct, tag="set", tag_field="kind", forbid_unknown_fields=True):
    """String field whose value is one of `values` (case-insensitive)."""
    name: Name
    field: Name
    values: Annotated[list[str], msgspec.Meta(min_length=1)]
    points: Points


class BooleanRule(msgspec.Struct, tag="boolean", tag_field="kind", forbid_unknown_fields=True):
    """Field is exactly `true` (a truthy string such as "no" does not count)."""
    name: Name
    field: Name
    points: Points


class TextRule(msgspec.Struct, tag="text", tag_field="kind", forbid_unknown_fields=True):
    """String field that is non-empty, or, with `contains_any`, contains a keyword.

    Keywords match as whole words, case-insensitively: a plain substring test would let
    the state code "CA" match "Chicago" and "NY" match "Sunnyvale".
    """
    name: Name
    field: Name
    points: Points
    contains_any: list[Name] | None = None


class AllTrueRule(msgspec.Struct, tag="all_true", tag_field="kind", forbid_unknown_fields=True):
    """Every listed boolean field is exactly `true` (e.g. a validated contact)."""
    name: Name
    fields: Annotated[list[Name], msgspec.Meta(min_length=1)]
    points: Points


Rule = RangeRule | SetRule | BooleanRule | TextRule | AllTrueRule


class FloorWhen(msgspec.Struct, forbid_unknown_fields=True):
    field: Name
    at_least: float


class Floor(msgspec.Struct, forbid_unknown_fields=True):
    """A minimum score for leads that meet `when` whatever their other fields."""
    when: FloorWhen
    score: Points
    name: str | None = None

    @property
    def label(self) -> str:
        return self.name or f"{self.when.field} >= {self.when.at_least:g}"


class Profile(msgspec.Struct, forbid_unknown_fields=True):
    rules: list[Rule]
    floors: list[Floor] = []

    def __post_init__(self) -> None:
        # Names key the breakdown: two rules with one name would make it ambiguous.
        names = [r.name for r in self.rules]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"rule names must be unique, repeated: {', '.join(dup)}")


class BreakdownItem(msgspec.Struct):
    rule: str
    field: str
    points: int
    reason: str


class IcpScore(msgspec.Struct):
    score: int
    breakdown: list[BreakdownItem]
    floor: str | None = None  # the floor that decided the score (None: the rules did)


# Sections of icp.yaml that other modules read (adapters/intake.py: `intake`): not
# part of the profile, so skipped here rather than refused as unknown.
OTHER_SECTIONS = ("intake",)


def load_profile(text: str, source: str = "icp profile") -> Profile:
    """Decode a profile from YAML text; a bad one raises ValueError naming the spot."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"{source}: not valid YAML: {e}") from e
    if isinstance(raw, dict):
        raw = {k: v for k, v in raw.items() if k not in OTHER_SECTIONS}
    try:
        return msgspec.convert(raw, Profile)
    except msgspec.ValidationError as e:
        # msgspec's message ends with the path ("- at `$.rules[2].bands`").
        raise ValueError(f"{source}: {e}") from e


# --- scoring ---------------------------------------------------------------------------

_MISSING = object()


def _number(v: Any) -> float | None:
    # bool is an int in Python; `company_size: true` is not a size.
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return None if isinstance(v, float) and math.isnan(v) else float(v)


def _missing(rule: str, field: str) -> BreakdownItem:
    return BreakdownItem(rule, field, 0, f"{field} missing: 0 points")


def _range(r: RangeRule, data: dict[str, Any]) -> BreakdownItem:
    v = data.get(r.field, _MISSING)
    if v is _MISSING or v is None:
        return _missing(r.name, r.field)
    n = _number(v)
    if n is None:
        return BreakdownItem(r.name, r.field, 0, f"{r.field} is not a number: 0 points")
    band = next((b for b in reversed(r.bands) if n >= b.at_least), None)
    if band is None:
        return BreakdownItem(r.name, r.field, 0,
                             f"{r.field} {v} below every band (< {r.bands[0].at_least:g})")
    return BreakdownItem(r.name, r.field, band.points,
                         f"{r.field} {v} >= {band.at_least:g}")


def _set(r: SetRule, data: dict[str, Any]) -> BreakdownItem:
    v = data.get(r.field, _MISSING)
    if v is _MISSING or v is None:
        return _missing(r.name, r.field)
    if not isinstance(v, str):
        return BreakdownItem(r.name, r.field, 0, f"{r.field} is not a string: 0 points")
    hit = v.strip().casefold() in {x.strip().casefold() for x in r.values}
    return BreakdownItem(r.name, r.field, r.points if hit else 0,
                         f"{r.field} {v!r} {'in' if hit else 'not in'} the target set")


def _boolean(r: BooleanRule, data: dict[str, Any]) -> BreakdownItem:
    v = data.get(r.field, _MISSING)
    if v is _MISSING or v is None:
        return _missing(r.name, r.field)
    hit = v is True
    return BreakdownItem(r.name, r.field, r.points if hit else 0,
                         f"{r.field} is {'true' if hit else 'not true'}")


def _text(r: TextRule, data: dict[str, Any]) -> BreakdownItem:
    v = data.get(r.field, _MISSING)
    if v is _MISSING or v is None:
        return _missing(r.name, r.field)
    if not isinstance(v, str):
        return BreakdownItem(r.name, r.field, 0, f"{r.field} is not a string: 0 points")
    if not v.strip():
        return BreakdownItem(r.name, r.field, 0, f"{r.field} is empty")
    if r.contains_any is None:
        return BreakdownItem(r.name, r.field, r.points, f"{r.field} given")
    found = next((k for k in r.contains_any if _word(k).search(v)), None)
    if found is None:
        return BreakdownItem(r.name, r.field, 0, f"{r.field} {v!r} names no target keyword")
    return BreakdownItem(r.name, r.field, r.points, f"{r.field} {v!r} contains {found!r}")


def _word(keyword: str) -> re.Pattern[str]:
    # re caches compiled patterns, so building one per call costs little.
    return re.compile(rf"(?<![0-9A-Za-z]){re.escape(keyword.strip())}(?![0-9A-Za-z])",
                      re.IGNORECASE)


def _all_true(r: AllTrueRule, data: dict[str, Any]) -> BreakdownItem:
    field = "+".join(r.fields)
    missing = [f for f in r.fields if data.get(f) is None]
    if missing:
        return BreakdownItem(r.name, field, 0, f"{', '.join(missing)} missing: 0 points")
    false = [f for f in r.fields if data[f] is not True]
    if false:
        return BreakdownItem(r.name, field, 0, f"{', '.join(false)} not true")
    return BreakdownItem(r.name, field, r.points, f"{' and '.join(r.fields)} all true")


_SCORERS: dict[type, Any] = {RangeRule: _range, SetRule: _set, BooleanRule: _boolean,
                             TextRule: _text, AllTrueRule: _all_true}


def score(profile: Profile, data: dict[str, Any]) -> IcpScore:
    """Score a lead's data against the profile. Pure; never raises on the data."""
    breakdown = [_SCORERS[type(r)](r, data) for r in profile.rules]
    total = min(MAX_SCORE, sum(b.points for b in breakdown))
    best: Floor | None = None
    for f in profile.floors:
        n = _number(data.get(f.when.field))
        if n is not None and n >= f.when.at_least and (best is None or f.score > best.score):
            best = f
    if best is None or best.score <= total:
        return IcpScore(total, breakdown)
    # The floor decides: say so in the breakdown too, so the case data explains the
    # score (its entries then add up to it).
    lift = best.score - total
    breakdown.append(BreakdownItem(best.label, best.when.field, lift,
                                   f"floor: {best.when.field} >= {best.when.at_least:g} "
                                   f"lifts the score to {best.score}"))
    return IcpScore(best.score, breakdown, best.label)


def icp_action(profile: Profile) -> Handler:
    """The `icp_score` action handler: scores the case data against `profile`."""
    async def icp_score(ctx: ActionContext) -> dict[str, Any]:
        result = score(profile, ctx.data)
        # Plain dicts: the output lands in the case data (icp_breakdown), which is JSON.
        return {"lead_score": result.score,
                "icp_breakdown": msgspec.to_builtins(result.breakdown)}
    return icp_score
