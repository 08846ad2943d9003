"""The workflow spec model: what a user writes, as msgspec Structs.

One workflow per file, JSON or YAML, both decoded into the same Structs. Decoding
checks shape and types (msgspec names the failing path); the compiler
(`engine.compiler`) checks meaning: references, reachability, guards, soundness.
`specs/README.md` documents every field with an example.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec
import yaml

__all__ = [
    "ConditionSpec",
    "DataSchema",
    "FieldSpec",
    "FlowSpec",
    "HandOverSpec",
    "MultipleInstanceSpec",
    "SpecDecodeError",
    "TaskSpec",
    "TimerSpec",
    "WorkflowSpec",
    "decode_spec",
    "parse_duration",
]

TaskKind = Literal["human", "automatic", "empty", "composite"]
JoinKind = Literal["and", "xor", "or", "partial"]
SplitKind = Literal["and", "xor", "or"]


class _Spec(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    pass


class TimerSpec(_Spec):
    """A deadline on a work item. `after` is seconds or a duration like "72h", "5d"."""

    after: str | float
    start: Literal["enabled", "started"] = "enabled"
    on_timeout: Literal["complete", "cancel", "fail"] = "complete"
    # What a timed-out completion reports: guards on the task's outgoing flows read
    # `result` and the output fields, so "route on timeout" is an ordinary guard.
    result: str = "timeout"
    output: dict[str, Any] = {}


class MultipleInstanceSpec(_Spec):
    min: int = 1
    max: int | None = None
    # Completed instances needed to complete the task; the rest are cancelled.
    # None means all of them; 0 means do not wait (WCP-12).
    threshold: int | None = None
    creation: Literal["static", "dynamic"] = "static"
    # Expression yielding a list: one instance per element, the element given to the
    # instance as `item_field`. Without it, `min` instances are created.
    items: str | None = None
    item_field: str = "item"
    # Case field that receives the list of instance outputs when the task completes.
    collect: str | None = None
    # When the threshold is reached: cancel the unfinished instances (default), or let
    # them run on without further effect (WCP-34).
    cancel_rest: bool = True


class TaskSpec(_Spec):
    id: str
    name: str | None = None
    kind: TaskKind = "human"
    join: JoinKind = "xor"
    split: SplitKind = "and"
    threshold: int | None = None  # for join "partial": inputs needed to fire
    role: str | None = None
    user: str | None = None
    allocation: str | None = None  # allocation policy name, e.g. "least_loaded"
    action: str | None = None  # automatic tasks: a named action
    params: dict[str, Any] = {}
    timer: TimerSpec | None = None
    cancels: list[str] = []  # cancellation region: task and condition ids
    multiple_instance: MultipleInstanceSpec | None = None
    milestone: list[str] = []  # conditions that must hold a token (not consumed)
    workflow: str | None = None  # composite tasks: the sub-workflow id
    output: dict[str, str] = {}  # case field -> expression over the completion output
    checklist: list[str] = []  # items the completion must confirm
    # Guard over the case data and the completion (`result`, output fields) deciding
    # whether the checklist applies, e.g. only when a review approves:
    # "result == 'approved'". Without it the checklist always applies.
    checklist_when: str | None = None
    # Another system may complete this human task with a signal (a payment recorded by
    # the billing system). Automatic tasks always may (their callbacks); approvals never
    # should: a signal carries no person, so no role or authority is checked.
    accepts_signal: bool = False
    # The results a completion may report (the words its routes and outputs read).
    # Empty: any result. Given, anything else is refused, so a misspelt "Rejected" is
    # an error to the person, not a route the guards send on as if it were another.
    results: list[str] = []
    # Authority the completer needs: kind of limit -> expression measuring it, e.g.
    # {"discount": "discount_percent"}; checked against roles.yaml by the adapter.
    authority: dict[str, str] = {}
    # Guard over the case data and the completion deciding whether the limits bind, as
    # `checklist_when`: "result == 'approved'" lets anyone of the role ask for
    # amendments or reject, while signing off stays within the limit. Without it the
    # limits bind every completion.
    authority_when: str | None = None
    description: str | None = None


class ConditionSpec(_Spec):
    id: str
    name: str | None = None
    # A trigger condition receives tokens from outside (`Case.signal`). A transient
    # trigger is lost unless a task is waiting for it; a persistent one is kept.
    trigger: Literal["transient", "persistent"] | None = None


class FlowSpec(_Spec, rename={"source": "from", "target": "to"}):
    source: str
    target: str
    when: str | None = None  # guard; on XOR/OR splits a flow without one is the default
    default: bool = False


class HandOverSpec(_Spec):
    workflow: str
    when: str | None = None


class FieldSpec(_Spec):
    type: Literal["string", "number", "integer", "boolean", "object", "array", "any"] = "any"
    minimum: float | None = None
    exclusive_minimum: float | None = None
    maximum: float | None = None
    # The fewest characters a string may have, not counting surrounding whitespace:
    # 1 says "not blank" (a deal named "" or "   " has no name, whatever its length).
    # Checked by the compiler, not here: it can name the field (msgspec's path would
    # say `properties[...]`).
    min_length: int | None = None
    enum: list[Any] | None = None
    # Error code reported when the value is out of range (PIPELINE.md: 1003 for ACV).
    code: int | None = None
    # Filled in when the case starts (or is handed on) without the field, so guards
    # can route on it: a guard reading a missing field is an error, never a guess.
    default: Any = None


class DataSchema(_Spec):
    required: list[str] = []
    properties: dict[str, FieldSpec] = {}


class WorkflowSpec(_Spec):
    id: str  # registered ones: one URL path segment (engine.compiler.WORKFLOW_ID)
    name: str | None = None
    version: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)] = 1
    description: str | None = None
    start: str = "start"
    end: str = "end"
    # strict: reaching `end` must leave nothing behind (checked for soundness);
    # cancel_remaining: reaching `end` cancels what is left (WCP-43, explicit);
    # implicit: the case ends when nothing more can happen (WCP-11).
    completion: Literal["strict", "cancel_remaining", "implicit"] = "strict"
    # How its cases begin. "hand_on": only by another workflow's hand-over, with what
    # that workflow decided -- a case started directly would carry whatever its starter
    # wrote, an approval_status of "approved" included (the adapter lets a permission
    # through: moving deals in from another system).
    entry: Literal["any", "hand_on"] = "any"
    data: DataSchema | None = None
    tasks: list[TaskSpec] = []
    conditions: list[ConditionSpec] = []
    flows: list[FlowSpec] = []
    on_complete: list[HandOverSpec] = []
    metadata: dict[str, Any] = {}


class SpecDecodeError(ValueError):
    """The document is not a workflow spec at all (syntax, shape or types)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


_MSGSPEC_PATH = re.compile(r"^(?P<msg>.*?)(?: - at `(?P<path>[^`]*)`)?$", re.S)


def _pointer(msgspec_path: str) -> str:
    # msgspec says `$.tasks[3].join`; we report JSON-pointer-like `/tasks/3/join`.
    p = msgspec_path.removeprefix("$")
    p = re.sub(r"\[(\d+)\]", r"/\1", p).replace(".", "/").replace("[", "/").replace("]", "")
    return p or "/"


# How deep a YAML spec may nest (a real one nests a few levels). PyYAML composes a level
# in a few Python frames: 1,000 brackets ran into the recursion limit, and whatever the
# collector finalized meanwhile ran with no stack left to report its own errors.
NESTING_MAX = 64


class _SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing aliases (`*name`) and nesting past NESTING_MAX.

    Aliases let a few hundred bytes of YAML expand into gigabytes of nested lists
    ("billion laughs"): a 600-byte spec once became 147 MB of `metadata`, froze the
    server and was stored. A workflow spec never needs them, so the first alias is
    refused where it stands (an anchor alone repeats nothing and is harmless).
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._path: list[str] = []  # where the node being composed sits, to locate an alias

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        # A mapping's value comes with its key node, a sequence's item with its
        # position, a key with None: only the first two name a step of the path.
        step = None if parent is None or index is None else (
            str(index.value) if isinstance(index, yaml.ScalarNode) else str(index))
        if step is not None:
            self._path.append(step)
        try:
            if len(self._path) > NESTING_MAX:
                raise SpecDecodeError("/" + "/".join(self._path[:NESTING_MAX]),
                                      f"nested deeper than {NESTING_MAX} levels")
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                mark = event.start_mark
                raise SpecDecodeError("/" + "/".join(self._path),
                                      f"YAML aliases are not accepted (*{event.anchor} at line "
                                      f"{mark.line + 1}, column {mark.column + 1}); write the "
                                      "value out")
            return super().compose_node(parent, index)
        finally:
            if step is not None:
                self._path.pop()


def decode_spec(document: bytes | str | dict[str, Any], fmt: str | None = None) -> WorkflowSpec:
    """Decode a spec from JSON or YAML text, or from an already-parsed mapping.

    `fmt` is "json" or "yaml"; when absent, text starting with `{` is JSON.
    """
    try:
        if isinstance(document, dict):
            return msgspec.convert(document, WorkflowSpec)
        text = document.decode() if isinstance(document, bytes) else document
        if fmt is None:
            fmt = "json" if text.lstrip().startswith("{") else "yaml"
        if fmt == "json":
            return msgspec.json.decode(text, type=WorkflowSpec)
        try:
            obj = yaml.load(text, Loader=_SpecLoader)  # a SafeLoader: no Python objects
        except yaml.YAMLError as exc:
            raise SpecDecodeError("", f"not valid YAML: {exc}") from None
        if not isinstance(obj, dict):
            raise SpecDecodeError("", "a workflow spec must be a mapping")
        return msgspec.convert(obj, WorkflowSpec)
    except msgspec.ValidationError as exc:
        m = _MSGSPEC_PATH.match(str(exc))
        assert m is not None
        raise SpecDecodeError(_pointer(m["path"] or "$"), m["msg"]) from None
    except msgspec.DecodeError as exc:
        raise SpecDecodeError("", f"not valid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise SpecDecodeError("", "not UTF-8 text") from None


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


# The longest duration anything takes: a deadline beyond it would lie past what a date
# can hold ("999999999999w" registered, and every view of a case of it failed).
MAX_DURATION = 100 * 365.25 * 86400.0  # a century


class DurationTooLong(ValueError):
    """A well-formed duration longer than MAX_DURATION."""


def parse_duration(value: str | float) -> float:
    """Seconds from 90, "90s", "30m", "72h", "5d" or "2w", at most MAX_DURATION.
    Raises ValueError."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"not a duration: {value!r} (use e.g. 90, '30m', '72h', '5d')")
        seconds = float(m[1]) * _UNIT[m[2] or "s"]
    if not seconds <= MAX_DURATION:  # also NaN and infinity
        raise DurationTooLong(f"{value!r} is longer than a century")
    return seconds
