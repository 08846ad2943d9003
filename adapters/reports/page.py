"""A report page as data: sections of charts and tables, numbers already formatted.

The analyzers' pages (adapters/reports/flow_pages.py, money_pages.py) build these;
one template renders them all (templates/page.html). A table cell keeps its raw value
beside its text (`data-value` in the page) so a reader, or a test, can take the
numbers without parsing "1,234.5 h". A chart is a Chart.js configuration as plain
data, embedded as JSON and drawn by assets/report.js: no code in the data, nothing
fetched, so a page opened from disk draws the same as one served.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

# Colour-blind-safe (Okabe-Ito), then greys.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
           "#000000", "#999999", "#666666")
GOOD, BAD = "#009E73", "#D55E00"
NONE = "\u2013"  # an en dash: no value (not zero)


@dataclass(frozen=True, slots=True)
class Cell:
    text: str
    value: float | int | str | None = None  # the raw number behind `text`
    shade: float | None = None  # 0..1: the cell's background intensity (heat maps)


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    numeric: bool = True


@dataclass(frozen=True, slots=True)
class Table:
    id: str
    caption: str
    columns: list[Column]
    rows: list[tuple[str, list[Cell]]]  # (row key, cells)


@dataclass(frozen=True, slots=True)
class Chart:
    id: str
    label: str  # what it shows, for screen readers and as a caption
    config: dict[str, Any]
    height: int = 320


@dataclass(slots=True)
class Section:
    title: str
    note: str | None = None
    charts: list[Chart] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)


@dataclass(slots=True)
class Page:
    sections: list[Section]
    summary: list[tuple[str, Cell]] = field(default_factory=list)  # headline figures


# ------------------------------------------------------------------ formatting
def number(x: float | int | None, digits: int = 0) -> Cell:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return Cell(NONE, None)
    return Cell(f"{x:,.{digits}f}", x)


def count(n: int | None) -> Cell:
    return number(n, 0)


def hours(h: float | None) -> Cell:
    if h is None:
        return Cell(NONE, None)
    if h >= 48:
        return Cell(f"{h:,.0f} h ({h / 24:,.1f} d)", h)
    return Cell(f"{h:,.1f} h", h)


def percent(share: float | None, digits: int = 1) -> Cell:
    return Cell(NONE, None) if share is None else Cell(f"{100 * share:.{digits}f} %", share)


def money(x: float | None, currency: str) -> Cell:
    if x is None:
        return Cell(NONE, None)
    sign = "-" if x < 0 else ""
    return Cell(f"{sign}{currency} {abs(x):,.0f}", x)


def text(s: object) -> Cell:
    return Cell(NONE if s is None else str(s), None if s is None else str(s))


def when(at: float | None) -> str:
    if at is None:
        return NONE
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


# ------------------------------------------------------------------ charts
def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def bar(chart_id: str, label: str, labels: list[str], datasets: list[dict[str, Any]], *,
        stacked: bool = False, horizontal: bool = False, y_title: str | None = None,
        height: int = 320) -> Chart:
    """A bar chart; datasets get palette colours unless they bring their own."""
    for i, d in enumerate(datasets):
        d.setdefault("backgroundColor", color(i))
    value_axis = "x" if horizontal else "y"
    scales: dict[str, Any] = {"x": {"stacked": stacked}, "y": {"stacked": stacked}}
    scales[value_axis]["beginAtZero"] = True
    if y_title:
        scales[value_axis]["title"] = {"display": True, "text": y_title}
    options: dict[str, Any] = {"scales": scales}
    if len(datasets) == 1:  # the caption says what the one series is
        options["plugins"] = {"legend": {"display": False}}
    if horizontal:
        options["indexAxis"] = "y"
    return Chart(chart_id, label, {"type": "bar",
                                   "data": {"labels": labels, "datasets": datasets},
                                   "options": options}, height)


def line(chart_id: str, label: str, labels: list[str], datasets: list[dict[str, Any]], *,
         y_title: str | None = None, height: int = 320) -> Chart:
    for i, d in enumerate(datasets):
        d.setdefault("borderColor", color(i))
        d.setdefault("backgroundColor", color(i))
        d.setdefault("pointRadius", 0)
        d.setdefault("tension", 0.2)
    y: dict[str, Any] = {"beginAtZero": True}
    if y_title:
        y["title"] = {"display": True, "text": y_title}
    return Chart(chart_id, label, {"type": "line",
                                   "data": {"labels": labels, "datasets": datasets},
                                   "options": {"scales": {"y": y}}}, height)


def slug(s: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in s.lower()).strip("-")
