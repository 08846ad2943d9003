"""The analyzers `caseloop report` writes a page for: what each is called, what it
means in one sentence, the configuration its numbers depend on (their digests are in
its data stamp) and the function that builds its page."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from adapters.reports.collect import History
from adapters.reports.config import ReportConfig
from adapters.reports.flow_pages import (
    approvers_page,
    arrivals_page,
    bottlenecks_page,
    cycle_page,
)
from adapters.reports.money_pages import conversion_page, cost_page
from adapters.reports.page import Page


@dataclass(frozen=True, slots=True)
class Analyzer:
    id: str
    title: str
    meaning: str  # one sentence: what the page answers
    build: Callable[[History, ReportConfig], Page]
    configs: tuple[str, ...] = ()  # files of --specs its numbers depend on
    uses_time_zone: bool = False

    @property
    def file(self) -> str:
        return f"{self.id}.html"


ANALYZERS: tuple[Analyzer, ...] = (
    Analyzer("cycle-time", "Cycle time and SLO compliance",
             "How long cases stay in each workflow and work items take, against the "
             "targets of slos.yaml.", cycle_page, ("slos.yaml",)),
    Analyzer("bottlenecks", "Bottlenecks",
             "Which parallel branch holds up each join, where the pipeline's time goes "
             "and where work is waiting now.", bottlenecks_page),
    Analyzer("approvers", "Approver performance",
             "How fast each person answers the work put in front of them, and who is "
             "faster or slower than the task's average assignee.", approvers_page,
             ("roles.yaml",)),
    Analyzer("conversion", "Conversion and bookings",
             "How many leads become deals and how many deals become booked revenue, by "
             "segment.", conversion_page),
    Analyzer("cost", "Process cost and deal profitability",
             "What the pipeline's work costs per role, and what each booked deal "
             "contributes after discount, cost of goods and cost to serve.", cost_page,
             ("roles.yaml", "costs.yaml")),
    Analyzer("arrivals", "Arrival patterns",
             "When cases arrive in each workflow: per day, by hour of the day and by hour "
             "of the week.", arrivals_page, uses_time_zone=True),
)
