"""The export's traces (adapters/history_export.py) without a server: the order of a
trace's events is the documented one (time; at one instant the item that began earlier
first; within an item the lifecycle's order), `Trace.count` is the number of events
without ordering them, `gather` exports what the Monitor had folded when it was
called, even while the fold moves on (it builds the traces on a worker thread), and no
CSV cell opens as a formula in a spreadsheet while the import still reads back what was
written."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import anyio
from hypothesis import given
from hypothesis import strategies as st

from adapters.history import attribute_value, parse_history
from adapters.history_export import ExportItem, Trace, gather, traces_of, write_csv
from mapek.monitor import Observation

TIMES = st.one_of(st.none(), st.sampled_from([0.0, 1.0, 2.0, 2.5]),
                  st.floats(0, 10, allow_nan=False))


@st.composite
def items(draw: Any) -> ExportItem:
    times = draw(st.lists(TIMES, min_size=3, max_size=3).filter(
        lambda ts: any(t is not None for t in ts)))
    return ExportItem(draw(st.sampled_from(["A", "B"])),
                      draw(st.sampled_from([None, "ann", "bob"])), *times,
                      cancelled=draw(st.booleans()))


def reference_events(t: Trace, cancelled: bool) -> list[tuple[float, int, str, str | None]]:
    """The order as first written: a sort on (time, item's first time, rank, place)."""
    keyed = [((at, i.first, rank, n), (at, rank, i.task, who))
             for n, i in enumerate(t.items) if cancelled or not i.cancelled
             for at, rank, who in i.events()]
    keyed.sort(key=lambda k: k[0])
    return [e for _, e in keyed]


@given(st.lists(items(), max_size=8), st.booleans())
def test_events_keep_their_order_and_count(its: list[ExportItem], cancelled: bool) -> None:
    t = Trace("c", {}, its)
    events = t.events(cancelled)
    assert events == reference_events(t, cancelled)
    assert t.count(cancelled) == len(events)


def obs(case: str, task: str, item: int, enabled: float, closed: float | None = None,
        workflow: str = "wf", **kw: Any) -> Observation:
    return Observation(case, workflow, task, item, enabled, closed_at=closed,
                       outcome="completed" if closed is not None else None, **kw)


def test_traces_of_orders_cases_by_their_first_event() -> None:
    closed = [obs("late", "A", 1, 50.0, 60.0), obs("early", "A", 1, 10.0, 20.0),
              obs("other", "A", 1, 0.0, 1.0, workflow="wf2"),
              obs("imp", "A", 1, 5.0, 6.0, source="import")]
    still_open = [obs("early", "B", 2, 30.0)]
    traces = traces_of("wf", closed, still_open, {"early": {"deal_acv": 5}}, [])
    assert [t.case_id for t in traces] == ["early", "late"]  # other workflow, imports: out
    assert traces[0].attributes == {"deal_acv": 5}
    assert [(task, rank) for _, rank, task, _ in traces[0].events()] == [
        ("A", 0), ("A", 2), ("B", 0)]


class FakeMonitor:
    """What gather reads of a Monitor; its catch-up is a fold that moves on while the
    traces are built (the open item closes, a new one opens)."""

    def __init__(self) -> None:
        self.closed = [obs("c1", "A", 1, 10.0, 20.0)]
        self.open = {("c1", 2): obs("c1", "B", 2, 20.0)}
        self.attributes: dict[str, dict[str, Any]] = {"c1": {"segment": "smb"}}

    async def catch_up(self) -> None:
        pass


class NoImports:
    async def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        return []


def test_gather_exports_the_history_as_it_was_when_asked() -> None:
    monitor = FakeMonitor()

    async def main() -> str:
        async with anyio.create_task_group() as tg:
            got: list[Trace] = []

            async def export() -> None:
                got.extend(await gather(NoImports(), monitor, "wf"))  # type: ignore[arg-type]

            tg.start_soon(export)
            await anyio.sleep(0)  # gather has copied what it needs; the fold moves on
            o = monitor.open.pop(("c1", 2))
            o.closed_at, o.outcome = 99.0, "completed"
            monitor.closed.append(o)
            monitor.closed.append(obs("c2", "A", 3, 1.0, 2.0))
            monitor.attributes["c1"]["segment"] = "enterprise"
        return "".join(write_csv(got))

    text = anyio.run(main)
    assert text.splitlines()[1:] == [
        "c1,A,enabled,1970-01-01T00:00:10+00:00,,smb",
        "c1,A,completed,1970-01-01T00:00:20+00:00,,smb",
        "c1,B,enabled,1970-01-01T00:00:20+00:00,,smb",
    ]


# ------------------------------------------------------------ spreadsheet formulas
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
NUMBERS = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
# Text CSV can carry (no surrogates); weighted towards what spreadsheets run.
TEXT = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.builds(lambda q, c, rest: "'" * q + c + rest, st.integers(0, 3),
              st.sampled_from(FORMULA_START), st.text(max_size=8)),
    st.sampled_from(["-5", "-0.25", "-1e-05", "+5", "-2+3", "@SUM(A1:A9)",
                     '=HYPERLINK("http://x.example","y")', "=1+1", "'=1+1", "''@x",
                     "\t=1", "\r=1", " =1", "02139", "'", "''", "a'=b"]))


def cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def opens_as_formula(cell: str) -> bool:
    """What Excel, LibreOffice and Google Sheets run when a CSV is opened."""
    return cell.startswith(FORMULA_START) and not NUMBERS.fullmatch(cell)


def as_imported(value: str) -> Any:
    """What the import makes of a value it reads as it is (it trims, reads numbers)."""
    return attribute_value(value.strip())


@given(st.dictionaries(st.sampled_from(["deal_name", "=evil", "@name", "-x", "'=q"]), TEXT,
                       min_size=1, max_size=4),
       st.sampled_from(["D-1", "=1+1", "@D", "-D", "'=D", "\tD"]),
       st.sampled_from(["Approve", "+Approve", "=A1"]),
       st.sampled_from([None, "ann@acme.com", "@ann", "=cmd|' /C calc'!A0"]))
def test_csv_cells_never_open_as_formulas_and_import_back_as_written(
        attributes: dict[str, str], case_id: str, task: str, who: str | None) -> None:
    trace = Trace(case_id, dict(attributes), [ExportItem(task, who, 0.0, None, 3600.0)])
    text = "".join(write_csv([trace]))
    rows = cells(text)
    assert not [c for row in rows for c in row if opens_as_formula(c)], rows
    assert rows[1][3] == "1970-01-01T00:00:00+00:00"  # timestamps as they were

    history = parse_history(text.encode())
    (item,) = history.items
    assert item[:3] == (case_id.strip(), task, who)
    kept = {k: as_imported(v) for k, v in attributes.items() if v.strip()}
    assert history.attributes.get(case_id.strip(), {}) == kept


def test_numbers_are_written_as_numbers() -> None:
    trace = Trace("D-1", {"deal_acv": 40000, "margin": -0.25, "delta": -5, "tiny": -1e-05,
                          "note": "-2+3"}, [ExportItem("Approve", None, 0.0, None, None)])
    header, row = cells("".join(write_csv([trace])))
    by_name = dict(zip(header, row, strict=True))
    assert (by_name["deal_acv"], by_name["margin"], by_name["delta"], by_name["tiny"]) == (
        "40000", "-0.25", "-5", "-1e-05")
    assert by_name["note"] == "'-2+3"  # a formula (=-2+3) to a spreadsheet: text here
