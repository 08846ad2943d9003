"""`compile(spec) -> Net`: check a spec's meaning and build the integer-indexed net.

Every problem is collected and reported at once, located by a JSON-pointer-like path
into the spec (`/flows/4/to`, `/tasks/2/cancels/0`), so a user fixes a spec in one
round. Structural checks come first; only a structurally valid net is checked for
soundness (option to complete, proper completion, no dead tasks) by bounded state
space exploration, whose counter-example is reported as a firing sequence.
"""

from __future__ import annotations

import copy
import re
from collections import deque
from collections.abc import Callable
from typing import Any

from .errors import DataInvalid, Problem, SpecError
from .guards import Guard, GuardSyntaxError, compile_guard
from .net import (
    AND,
    OR,
    PARTIAL,
    XOR,
    MultipleInstance,
    Net,
    Task,
    Timer,
    make_relax,
)
from .spec import DataSchema, FieldSpec, WorkflowSpec, decode_spec, parse_duration

__all__ = ["DEFAULT_STATE_BOUND", "MAX_NODES", "compile", "compile_document"]

DEFAULT_STATE_BOUND = 20_000
# Tasks and conditions (a flow from task to task is a condition too) a checked spec
# may have. The structural checks cost the square of that and more, and registration
# runs them while the client waits: 3,000 tasks took 8 s. The shipped specs have at
# most 36; a workflow this large is several workflows handing the case on.
MAX_NODES = 500
# A workflow's id is part of URLs (/workflows/{id}/cases) and of other specs' hand-overs:
# one path segment, nothing to escape ("../../etc" registered, and no URL could name
# it). Checked at registration only, like the size: ids stored before still load.
WORKFLOW_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def compile_document(document: bytes | str | dict[str, Any], *, check_soundness: bool = True,
                     state_bound: int = DEFAULT_STATE_BOUND) -> Net:
    """Decode (JSON or YAML) and compile in one step; shape errors become a SpecError."""
    from .spec import SpecDecodeError

    try:
        spec = decode_spec(document)
    except SpecDecodeError as exc:
        raise SpecError("?", [Problem(exc.path or "/", exc.problem)]) from None
    return compile(spec, check_soundness=check_soundness, state_bound=state_bound)


def compile(spec: WorkflowSpec, *, check_soundness: bool = True,
            state_bound: int = DEFAULT_STATE_BOUND) -> Net:
    if check_soundness:  # not when loading what is stored: older specs must still load
        if not WORKFLOW_ID.fullmatch(spec.id):
            raise SpecError(spec.id, [Problem("/id", (
                "one URL path segment: letters, digits, '_', '.' or '-', at most 128, "
                "starting with a letter or digit"))])
        _limit_size(spec)
    problems: list[Problem] = []
    add = problems.append

    # --- identifiers ------------------------------------------------------------
    cond_ids: list[str] = []
    seen_ids: dict[str, str] = {}

    def declare(ident: str, path: str) -> None:
        if not ident:
            add(Problem(path, "an id must not be empty"))
        elif ident in seen_ids:
            add(Problem(path, f"duplicate id {ident!r} (first used at {seen_ids[ident]})"))
        else:
            seen_ids[ident] = path

    for i, c in enumerate(spec.conditions):
        declare(c.id, f"/conditions/{i}/id")
        cond_ids.append(c.id)
    for special, path in ((spec.start, "/start"), (spec.end, "/end")):
        if special not in seen_ids:
            declare(special, path)
            cond_ids.append(special)
    if spec.start == spec.end:
        add(Problem("/end", "start and end must be different conditions"))
    task_specs = spec.tasks
    for i, t in enumerate(task_specs):
        declare(t.id, f"/tasks/{i}/id")
    if not task_specs:
        add(Problem("/tasks", "a workflow needs at least one task"))
    task_pos = {t.id: i for i, t in enumerate(task_specs)}
    cond_set = set(cond_ids)

    # --- flows ------------------------------------------------------------------
    preset: list[list[int]] = [[] for _ in task_specs]
    outflows: list[list[tuple[int, int]]] = [[] for _ in task_specs]  # (flow index, cond)
    cond_index = {c: i for i, c in enumerate(cond_ids)}
    cond_in: dict[int, list[int]] = {}  # condition -> tasks producing into it

    def condition_for(name: str) -> int:
        if name not in cond_index:
            cond_index[name] = len(cond_ids)
            cond_ids.append(name)
        return cond_index[name]

    implicit: dict[tuple[str, str], int] = {}
    for i, f in enumerate(spec.flows):
        src_task, dst_task = f.source in task_pos, f.target in task_pos
        if f.source not in task_pos and f.source not in cond_set:
            add(Problem(f"/flows/{i}/from", f"unknown task or condition {f.source!r}"))
            continue
        if f.target not in task_pos and f.target not in cond_set:
            add(Problem(f"/flows/{i}/to", f"unknown task or condition {f.target!r}"))
            continue
        if not src_task and not dst_task:
            add(Problem(f"/flows/{i}", "a flow cannot join two conditions; put a task between"))
            continue
        if f.target == spec.start:
            add(Problem(f"/flows/{i}/to", "nothing may flow into the start condition"))
            continue
        if f.source == spec.end:
            add(Problem(f"/flows/{i}/from", "nothing may flow out of the end condition"))
            continue
        if not src_task and (f.when is not None or f.default):
            add(Problem(f"/flows/{i}/when", "only flows out of a task carry guards"))
        if src_task and dst_task:
            key = (f.source, f.target)
            if key in implicit:
                add(Problem(f"/flows/{i}", f"duplicate flow {f.source} -> {f.target}"))
                continue
            c = implicit[key] = condition_for(f"{f.source}->{f.target}")
            outflows[task_pos[f.source]].append((i, c))
            preset[task_pos[f.target]].append(c)
            cond_in.setdefault(c, []).append(task_pos[f.source])
        elif src_task:
            c = cond_index[f.target]
            if any(c == oc for _, oc in outflows[task_pos[f.source]]):
                add(Problem(f"/flows/{i}", f"duplicate flow {f.source} -> {f.target}"))
                continue
            outflows[task_pos[f.source]].append((i, c))
            cond_in.setdefault(c, []).append(task_pos[f.source])
        else:
            c = cond_index[f.source]
            if c in preset[task_pos[f.target]]:
                add(Problem(f"/flows/{i}", f"duplicate flow {f.source} -> {f.target}"))
                continue
            preset[task_pos[f.target]].append(c)

    guards: dict[int, Guard] = {}
    for i, f in enumerate(spec.flows):
        if f.when is not None:
            g = _guard(f.when, f"/flows/{i}/when", add)
            if g is not None:
                guards[i] = g

    # --- tasks ------------------------------------------------------------------
    tasks: list[Task] = []
    for i, ts in enumerate(task_specs):
        t = Task(i, ts)
        base = f"/tasks/{i}"
        t.preset = tuple(preset[i])
        t.preset_mask = _mask(t.preset)
        t.postset = tuple(c for _, c in outflows[i])
        t.post_mask = _mask(t.postset)
        if not t.preset:
            add(Problem(base, f"task {ts.id!r} has no incoming flow"))
        if not t.postset:
            add(Problem(base, f"task {ts.id!r} has no outgoing flow"))
        _compile_split(t, outflows[i], spec, guards, base, add)
        if t.join == PARTIAL:
            if ts.threshold is None or not 1 <= ts.threshold <= max(1, len(t.preset)):
                add(Problem(f"{base}/threshold", "a partial join needs a threshold between 1 "
                            f"and its {len(t.preset)} inputs"))
        elif ts.threshold is not None:
            add(Problem(f"{base}/threshold", "threshold is only for join 'partial'"))
        if ts.kind == "automatic" and not ts.action:
            add(Problem(f"{base}/action", "an automatic task needs an action"))
        if ts.kind == "composite" and not ts.workflow:
            add(Problem(f"{base}/workflow", "a composite task names its sub-workflow"))
        if ts.kind == "empty" and (ts.timer or ts.multiple_instance):
            add(Problem(base, "an empty task fires at once: no timer or instances"))
        if ts.timer is not None:
            try:
                after = parse_duration(ts.timer.after)
                t.timer = Timer(after, ts.timer.start == "started", ts.timer.on_timeout,
                                ts.timer.result, ts.timer.output)
            except ValueError as exc:
                add(Problem(f"{base}/timer/after", str(exc)))
        if "delay" in ts.params:  # read by the runtime before it runs the action
            try:
                t.delay = parse_duration(ts.params["delay"])
            except (ValueError, TypeError) as exc:
                add(Problem(f"{base}/params/delay", str(exc)))
        if ts.multiple_instance is not None:
            t.mi = _compile_mi(ts.multiple_instance, f"{base}/multiple_instance", add)
        t.outputs = _guard_map(ts.output, f"{base}/output", add)
        t.authority = _guard_map(ts.authority, f"{base}/authority", add)
        if ts.authority_when is not None:
            if not ts.authority:
                add(Problem(f"{base}/authority_when", "a condition for no authority"))
            t.authority_when = _guard(ts.authority_when, f"{base}/authority_when", add)
        if ts.accepts_signal and ts.authority:
            add(Problem(f"{base}/accepts_signal", "a task with authority limits is signed "
                        "off by a person: a signal checks no limit"))
        if ts.results:
            if ts.kind in ("empty", "composite"):
                add(Problem(f"{base}/results", f"a task of kind {ts.kind!r} reports no "
                            "result"))
            if (ts.timer is not None and ts.timer.on_timeout == "complete"
                    and ts.timer.result not in ts.results):
                add(Problem(f"{base}/timer/result", f"{ts.timer.result!r} is not one of the "
                            "task's results"))
        if ts.checklist_when is not None:
            if not ts.checklist:
                add(Problem(f"{base}/checklist_when", "a condition for an empty checklist"))
            t.checklist_when = _guard(ts.checklist_when, f"{base}/checklist_when", add)
        cancel_conds, cancel_tasks = [], []
        for k, ref in enumerate(ts.cancels):
            if ref in task_pos:
                cancel_tasks.append(task_pos[ref])
            elif ref in cond_index:
                cancel_conds.append(cond_index[ref])
            else:
                add(Problem(f"{base}/cancels/{k}", f"unknown task or condition {ref!r}"))
        t.cancel_conds = tuple(sorted(set(cancel_conds)))
        t.cancel_mask = _mask(t.cancel_conds)
        t.cancel_tasks = frozenset(cancel_tasks)
        for k, ref in enumerate(ts.milestone):
            if ref not in cond_index:
                add(Problem(f"{base}/milestone/{k}", f"unknown condition {ref!r}"))
            else:
                t.milestone_mask |= 1 << cond_index[ref]
        tasks.append(t)

    start, end = cond_index.get(spec.start, 0), cond_index.get(spec.end, 0)
    trig_t = trig_p = 0
    for c in spec.conditions:
        if c.trigger == "transient":
            trig_t |= 1 << cond_index[c.id]
        elif c.trigger == "persistent":
            trig_p |= 1 << cond_index[c.id]

    handovers = []
    for i, h in enumerate(spec.on_complete):
        g = _guard(h.when, f"/on_complete/{i}/when", add) if h.when is not None else None
        handovers.append((h.workflow, g))

    for name, fs in (spec.data.properties.items() if spec.data is not None else ()):
        if fs.min_length is None:
            continue
        if fs.type not in ("string", "any"):
            add(Problem(f"/data/properties/{name}/min_length",
                        f"a length applies to a string; the field is a {fs.type}"))
        elif fs.min_length < 0:
            add(Problem(f"/data/properties/{name}/min_length", "must be >= 0"))
    validate_data = _data_validator(spec.data)

    # --- reachability -----------------------------------------------------------
    if not problems:
        consumers: dict[int, list[int]] = {}  # condition -> tasks taking tokens from it
        for t in tasks:
            for c in t.preset:
                consumers.setdefault(c, []).append(t.idx)
        _check_reachability(spec, tasks, cond_ids, start, end, trig_t | trig_p, consumers, add)
        _precompute_orjoins(tasks, cond_in)
        for t in tasks:
            after = _downstream(t, tasks, consumers)
            t.in_cycle = t.idx in after
            t.contested = any(len(consumers[c]) > 1 for c in t.preset)
            if t.join == OR:
                # Inside a loop when something feeding an input lies downstream of it.
                feeders = 0
                for _, _, busy in t.orjoin:
                    feeders |= busy
                if any(feeders >> u & 1 for u in after):
                    t.relax = make_relax(t, tasks, trig_t | trig_p)
        for t in tasks:
            t.watch_conds = t.preset_mask | t.milestone_mask
            for _, conds, _tasks in t.orjoin:
                t.watch_conds |= conds
                t.watch_busy |= _tasks

    net = Net(spec, tuple(cond_ids), tuple(tasks), start, end, tuple(handovers),
              validate_data, trig_t, trig_p)
    if problems:
        raise SpecError(spec.id, problems)
    if check_soundness:
        from .soundness import check

        verdict = check(net, state_bound=state_bound)
        if verdict.problems:
            raise SpecError(spec.id, verdict.problems)
        net.warnings = tuple(verdict.warnings)
    return net


def _limit_size(spec: WorkflowSpec) -> None:
    """Refuse a spec of more than MAX_NODES tasks and conditions, before any check whose
    cost grows faster than the spec (counted in one pass over the flows)."""
    task_ids = {t.id for t in spec.tasks}
    between = {(f.source, f.target) for f in spec.flows
               if f.source in task_ids and f.target in task_ids}
    nodes = len(spec.tasks) + len(spec.conditions) + len(between)
    if nodes > MAX_NODES:
        raise SpecError(spec.id, [Problem("/tasks", (
            f"{nodes} tasks and conditions ({len(between)} of them flows from task to task); "
            f"at most {MAX_NODES}: split the workflow and hand the case on (`on_complete`)"))])


def _mask(indices: tuple[int, ...] | list[int]) -> int:
    m = 0
    for i in indices:
        m |= 1 << i
    return m


def _guard(text: str, path: str, add: Any) -> Guard | None:
    try:
        return compile_guard(text)
    except GuardSyntaxError as exc:
        add(Problem(path, f"guard does not parse: {exc}"))
        return None


def _compile_split(t: Task, outs: list[tuple[int, int]], spec: WorkflowSpec,
                   guards: dict[int, Guard], base: str, add: Any) -> None:
    if t.split == AND:
        for fi, _ in outs:
            if spec.flows[fi].when is not None or spec.flows[fi].default:
                add(Problem(f"/flows/{fi}/when", f"task {t.id!r} has an AND split: its flows "
                            "all run and carry no guards (use split xor or or)"))
        return
    routes, defaults = [], []
    for fi, c in outs:
        f = spec.flows[fi]
        if f.default and f.when is not None and t.split == XOR:
            add(Problem(f"/flows/{fi}/when", "on an XOR split the default flow carries no "
                        "guard: it is taken when no other guard holds"))
            continue
        if f.when is None or f.default:
            defaults.append(c)
        # On an OR split the default may carry a guard too: it runs when its guard holds,
        # and also when no guard holds at all (YAWL's OR-split default).
        if f.when is not None and fi in guards:
            routes.append((c, guards[fi]))
    if (len(outs) > 1 or routes) and len(defaults) != 1:
        add(Problem(f"{base}/split", f"task {t.id!r} has a {spec.tasks[t.idx].split} split: "
                    f"exactly one outgoing flow must be the default (no guard), "
                    f"found {len(defaults)}"))
    t.routes = tuple(routes)
    t.default = defaults[0] if defaults else -1


def _compile_mi(mi: Any, base: str, add: Any) -> MultipleInstance | None:
    ok = True
    if mi.min < 0 or (mi.max is not None and mi.max < max(mi.min, 1)):
        add(Problem(base, "need 0 <= min <= max and max >= 1"))
        ok = False
    if mi.threshold is not None and (mi.threshold < 0 or
                                     (mi.max is not None and mi.threshold > mi.max)):
        add(Problem(f"{base}/threshold", "threshold must lie between 0 and max"))
        ok = False
    items = _guard(mi.items, f"{base}/items", add) if mi.items else None
    if mi.items and items is None:
        ok = False
    if not ok:
        return None
    return MultipleInstance(mi.min, mi.max, mi.threshold, mi.creation == "dynamic", items,
                            mi.item_field, mi.collect, mi.cancel_rest)


def _check_reachability(spec: WorkflowSpec, tasks: list[Task], cond_ids: list[str],
                        start: int, end: int, triggers: int,
                        consumers: dict[int, list[int]], add: Any) -> None:
    # Forward: a task is reachable when any input is (optimistic: joins ignored here,
    # the soundness check catches joins that never fire). Triggers arrive from outside.
    seen_c = {start} | {c for c in range(len(cond_ids)) if triggers >> c & 1}
    seen_t: set[int] = set()
    todo = deque(seen_c)
    while todo:
        c = todo.popleft()
        for ti in consumers.get(c, ()):
            if ti not in seen_t:
                seen_t.add(ti)
                for oc in tasks[ti].postset:
                    if oc not in seen_c:
                        seen_c.add(oc)
                        todo.append(oc)
    for t in tasks:
        if t.idx not in seen_t:
            add(Problem(f"/tasks/{t.idx}", f"task {t.id!r} is unreachable from the start"))
    # Backward: every task must have a path to the end (unless completion is implicit).
    if spec.completion != "implicit":
        producers: dict[int, list[int]] = {}
        for t in tasks:
            for c in t.postset:
                producers.setdefault(c, []).append(t.idx)
        back_c, back_t = {end}, set()
        todo = deque([end])
        while todo:
            c = todo.popleft()
            for ti in producers.get(c, ()):
                if ti not in back_t:
                    back_t.add(ti)
                    for ic in tasks[ti].preset:
                        if ic not in back_c:
                            back_c.add(ic)
                            todo.append(ic)
        # A thread that ends by being cancelled (WCP-18's change loop, say) needs no
        # path to the end; the soundness check decides whether it is really cancelled.
        cancellable = {u for t in tasks for u in t.cancel_tasks}
        for t in tasks:
            if t.idx in seen_t and t.idx not in back_t and t.idx not in cancellable:
                add(Problem(f"/tasks/{t.idx}", f"task {t.id!r} has no path to the end"))
    for i, c in enumerate(spec.conditions):
        ci = cond_ids.index(c.id)
        if ci not in seen_c and not triggers >> ci & 1:
            add(Problem(f"/conditions/{i}", f"condition {c.id!r} is unreachable"))


def _downstream(t: Task, tasks: list[Task], consumers: dict[int, list[int]]) -> set[int]:
    """The tasks a token leaving t can reach (t itself among them if t is in a loop)."""
    after: set[int] = set()
    todo, seen = list(t.postset), set(t.postset)
    while todo:
        for u in consumers.get(todo.pop(), ()):
            if u not in after:
                after.add(u)
                for c in tasks[u].postset:
                    if c not in seen:
                        seen.add(c)
                        todo.append(c)
    return after


def _precompute_orjoins(tasks: list[Task], cond_in: dict[int, list[int]]) -> None:
    for t in tasks:
        if t.join != OR:
            continue
        entries = []
        for c in t.preset:
            # Backwards from input c, never stepping through t itself.
            conds, busy = 0, 0
            todo = [c]
            visited = {c}
            while todo:
                x = todo.pop()
                for producer in cond_in.get(x, ()):
                    if producer == t.idx or busy >> producer & 1:
                        continue
                    busy |= 1 << producer
                    for ic in tasks[producer].preset:
                        conds |= 1 << ic
                        if ic not in visited:
                            visited.add(ic)
                            todo.append(ic)
            entries.append((1 << c, conds & ~(1 << c), busy))
        t.orjoin = tuple(entries)


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "number": (int, float), "integer": (int,), "boolean": (bool,),
    "object": (dict,), "array": (list,),
}


def _guard_map(exprs: dict[str, str], base: str, add: Callable[[Problem], None],
               ) -> tuple[tuple[str, Guard], ...]:
    """name -> expression, compiled; the ones that do not parse are reported at base/name."""
    out = []
    for name, expr in exprs.items():
        g = _guard(expr, f"{base}/{name}", add)
        if g is not None:
            out.append((name, g))
    return tuple(out)


def _data_validator(schema: DataSchema | None) -> Any:
    """A closure checking case data against the schema: 1002 missing, 1001 wrong type.

    Returns the data with declared defaults filled in (a new dict when any is). With
    `partial=True` it checks only the fields a completion writes (`data` is then the
    update): no defaults, and a required field is missing only if written as null.
    """
    if schema is None or (not schema.required and not schema.properties):
        return _accept
    required = tuple(schema.required)
    props = tuple(schema.properties.items())
    by_name = dict(props)
    defaults = tuple((n, p.default) for n, p in props if p.default is not None)

    def check(name: str, p: FieldSpec, v: Any) -> None:
        if p.type != "any":
            ok = isinstance(v, _TYPES[p.type]) and not (
                isinstance(v, bool) and p.type in ("number", "integer"))
            if not ok:
                raise DataInvalid(f"field {name!r} must be a {p.type}", field=name, code=1001)
        code = p.code or 1001
        if p.enum is not None and v not in p.enum:
            raise DataInvalid(f"field {name!r} must be one of {p.enum}", field=name, code=code)
        if p.min_length and isinstance(v, str) and len(v.strip()) < p.min_length:
            # Measured without the surrounding whitespace, which a form pads a name
            # with and which shows as nothing: "   " is blank, not three characters.
            raise DataInvalid(f"field {name!r} is blank" if not v.strip() else
                              f"field {name!r} must have at least {p.min_length} characters "
                              "(not counting surrounding spaces)", field=name, code=code)
        if isinstance(v, int | float) and not isinstance(v, bool):
            if p.minimum is not None and v < p.minimum:
                raise DataInvalid(f"field {name!r} must be >= {p.minimum:g}", field=name,
                                  code=code)
            if p.exclusive_minimum is not None and v <= p.exclusive_minimum:
                raise DataInvalid(f"field {name!r} must be > {p.exclusive_minimum:g}",
                                  field=name, code=code)
            if p.maximum is not None and v > p.maximum:
                raise DataInvalid(f"field {name!r} must be <= {p.maximum:g}", field=name,
                                  code=code)

    def validate(data: dict[str, Any], partial: bool = False) -> dict[str, Any]:
        if partial:
            for name, v in data.items():
                if v is None:
                    if name in required:
                        raise DataInvalid(f"missing required field {name!r}", field=name,
                                          code=1002)
                elif name in by_name:
                    check(name, by_name[name], v)
            return data
        missing = [(n, v) for n, v in defaults if data.get(n) is None]
        if missing:
            data = {**data, **{n: copy.deepcopy(v) for n, v in missing}}
        for name in required:
            if data.get(name) is None:
                raise DataInvalid(f"missing required field {name!r}", field=name, code=1002)
        for name, p in props:
            v = data.get(name)
            if v is not None:
                check(name, p, v)
        return data

    return validate


def _accept(data: dict[str, Any], partial: bool = False) -> dict[str, Any]:
    return data

