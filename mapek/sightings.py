"""Sightings: the engine's events as the Monitor reads them, with only the fields it folds.

The Monitor tails every append of the log, so what it costs per event is paid for every
completion the engine makes. Decoding each event in full was most of that cost on
bench/durable.py: a case's whole data map, the conditions a firing consumed and
produced, timers -- none of which the Monitor keeps. A sighting mirrors one engine
event under the same tag but declares only the fields the fold reads, with the same
types, so values convert exactly as the engine's own decoder converts them; msgspec
skips the rest of each map without building it. Every other engine event decodes to
an empty sighting of its own tag, so a log is never refused here for an event type the
engine has.
"""

from __future__ import annotations

from typing import Any, Union

import msgspec
from msgspec import UNSET

from engine.events import EVENT_TYPES


class Kept(msgspec.Struct, gc=False):
    """The case data worth keeping beside each observation (segmenting response
    times), from a data map; UNSET where the map does not have the key."""

    deal_acv: Any = UNSET
    contract_type: Any = UNSET
    discount_percent: Any = UNSET
    company_size: Any = UNSET
    industry: Any = UNSET
    segment: Any = UNSET


ATTRIBUTES: tuple[str, ...] = Kept.__struct_fields__
NOTHING_KEPT = Kept()


class Sighting(msgspec.Struct, frozen=True, gc=False):
    pass


class Enabled(Sighting, tag="WorkItemEnabled"):
    item: int
    task: str
    at: float
    parent: int = -1


class Completed(Sighting, tag="WorkItemCompleted"):
    item: int
    at: float
    result: str | None = None
    output: Kept | None = None
    by: str | None = None


class Cancelled(Sighting, tag="WorkItemCancelled"):
    item: int
    at: float


class Started(Sighting, tag="WorkItemStarted"):
    item: int
    at: float
    by: str | None = None


class Held(Sighting, tag="WorkItemHeld"):
    item: int
    until: float


class Fired(Sighting, tag="TaskFired"):
    task: str


class Created(Sighting, tag="CaseCreated"):
    workflow_id: str
    data: Kept


class HandedOn(Sighting, tag="CaseHandedOn"):
    workflow_id: str
    defaults: Kept | None = None


class Breached(Sighting, tag="SlaBreached"):
    item: int
    at: float
    task: str
    target: float
    alert: float


class Resolved(Sighting, tag="SlaResolved"):
    item: int
    at: float


_FOLDED = (Enabled, Completed, Cancelled, Started, Held, Fired, Created, HandedOn, Breached,
           Resolved)
_MIRRORED = {c.__struct_config__.tag for c in _FOLDED}
SIGHTINGS: tuple[type[Sighting], ...] = (
    *_FOLDED,
    *(msgspec.defstruct(f"Unread{c.__name__}", [], bases=(Sighting,), tag=c.__name__)
      for c in EVENT_TYPES if c.__name__ not in _MIRRORED))
_AnySighting = Union[SIGHTINGS]  # type: ignore[valid-type]  # noqa: UP007

# One append's events, as engine.events.encode_events wrote them.
decode_append = msgspec.msgpack.Decoder(list[_AnySighting]).decode  # type: ignore[valid-type]
# Many appends' events at once: a msgpack array of such arrays.
decode_appends = msgspec.msgpack.Decoder(list[list[_AnySighting]]).decode  # type: ignore[valid-type]

