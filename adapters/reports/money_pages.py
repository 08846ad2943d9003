"""The pages about money: conversion and bookings by segment; process cost and deal
profitability. Each is a function (history, config) -> Page over mapek.economics."""

from __future__ import annotations

import itertools

import numpy as np

from adapters.reports.collect import History
from adapters.reports.config import ReportConfig
from adapters.reports.page import (
    BAD,
    GOOD,
    Cell,
    Column,
    Page,
    Section,
    Table,
    bar,
    count,
    money,
    number,
    percent,
    text,
)
from mapek.economics import (
    PIPELINE,
    SegmentConversion,
    SegmentProfit,
    completed_cases,
    conversion,
    deal_profitability,
    deal_status,
    priced_items,
    process_cost,
)

WORST = 15  # least profitable deals listed


def conversion_page(h: History, cfg: ReportConfig) -> Page:
    c = conversion(h.phases, h.observations, h.attributes)
    cur = cfg.costs.currency
    funnel = [("leads", c.leads), ("leads_qualified", c.leads_qualified), ("deals", c.deals),
              ("deals_approved", c.deals_approved), ("deals_signed", c.deals_signed),
              ("deals_booked", c.deals_booked)]
    labels = {"leads": "leads", "leads_qualified": "qualified leads", "deals": "deals",
              "deals_approved": "approved", "deals_signed": "contract signed",
              "deals_booked": "revenue booked"}
    funnel_chart = bar("funnel", "Leads to booked revenue: cases reaching each step",
                       [labels[k] for k, _ in funnel],
                       [{"label": "cases", "data": [n for _, n in funnel]}], y_title="cases")
    funnel_table = Table("funnel", "The pipeline's steps", [
        Column("step", "step", False), Column("count", "cases"),
        Column("of_previous", "of the step before")],
        [(k, [text(labels[k]), count(n),
              percent(n / funnel[i - 1][1] if i and funnel[i - 1][1] else None)])
         for i, (k, n) in enumerate(funnel)])
    segs = [*c.segments, c.total]
    seg_chart = bar("segments", "Deals per segment by furthest step reached",
                    [s.segment for s in c.segments],
                    [{"label": "deals", "data": [s.deals for s in c.segments]},
                     {"label": "approved", "data": [s.approved for s in c.segments]},
                     {"label": "contract signed", "data": [s.signed for s in c.segments]},
                     {"label": "booked", "data": [s.booked for s in c.segments]}],
                    y_title="deals")
    acv_chart = bar("bookings", f"Booked revenue per segment ({cur}; ACV after discount)",
                    [s.segment for s in c.segments],
                    [{"label": "booked ACV after discount",
                      "data": [round(s.booked_net) for s in c.segments]}], y_title=cur)

    def row(s: SegmentConversion) -> tuple[str, list[Cell]]:
        return (s.segment, [text(s.segment), count(s.deals), count(s.approved),
                            count(s.signed), count(s.booked), count(s.open), count(s.lost),
                            percent(s.win_rate), money(s.pipeline_acv, cur),
                            money(s.booked_acv, cur), money(s.booked_net, cur)])

    seg_table = Table("segments", "Deals by segment", [
        Column("segment", "segment", False), Column("deals", "deals"),
        Column("approved", "approved"), Column("signed", "signed"),
        Column("booked", "booked"), Column("open", "open"), Column("lost", "lost"),
        Column("win_rate", "win rate"), Column("pipeline_acv", "pipeline ACV"),
        Column("booked_acv", "booked ACV"), Column("booked_net", "booked after discount")],
        [row(s) for s in segs])
    return Page([
        Section("From lead to booked revenue", "Counted as /stats counts: leads and "
                "deals are cases entering the lead and deal workflows; qualified, approved "
                "and booked are cases whose AssignToSDR, AllApprovalsComplete or "
                "BookRevenue completed; signed, deals handed on past the contract. A lead "
                "becomes a deal through a new case, so the two are not linked one to one.",
                [funnel_chart], [funnel_table]),
        Section("By segment", "Win rate: booked among the deals decided (booked or lost); "
                "open deals are still in a workflow. A deal's segment is its case data's.",
                [seg_chart, acv_chart], [seg_table]),
    ], [("leads", count(c.leads)), ("deals", count(c.deals)),
        ("revenue booked", count(c.deals_booked)),
        ("booked ACV after discount", money(c.booked_net, cur))])


def cost_page(h: History, cfg: ReportConfig) -> Page:
    model, cur = cfg.costs, cfg.costs.currency
    known = cfg.role_of_person if cfg.directory.people else None
    items = priced_items(h.observations, model, known, cfg.zone_of_person, now=h.now)
    pc = process_cost(items, model)
    role_chart = bar("cost-by-role", f"Process cost per role ({cur})",
                     [r.role for r in pc.roles],
                     [{"label": "cost", "data": [round(r.cost or 0.0) for r in pc.roles]}],
                     y_title=cur)
    role_table = Table("roles", "Hours and cost per role (hours x rate)", [
        Column("role", "role", False), Column("items", "work items"),
        Column("standard", "at standard effort"), Column("hours", "hours"),
        Column("rate", f"rate ({cur}/h)"), Column("cost", "cost")],
        [(r.role, [text(r.role), count(r.items), count(r.standard_items),
                   number(r.hours, 1), number(r.rate, 2), money(r.cost, cur)])
         for r in pc.roles]
        + [("total", [text("total"), count(sum(r.items for r in pc.roles)),
                      count(sum(r.standard_items for r in pc.roles)),
                      number(pc.total_hours, 1), Cell("", None),
                      money(pc.total_cost, cur)])])
    roles = sorted({r for w in pc.workflows for r in w.by_role})
    wf_chart = bar("cost-by-workflow", f"Process cost per workflow, by role ({cur})",
                   [w.workflow_id for w in pc.workflows],
                   [{"label": r, "data": [round(w.by_role.get(r, 0.0)) for w in pc.workflows]}
                    for r in roles], stacked=True, y_title=cur)
    wf_table = Table("workflows", "Cost per workflow", [
        Column("workflow", "workflow", False), Column("cases", "cases"),
        Column("hours", "hours"), Column("cost", "cost"), Column("per_case", "per case")],
        [(w.workflow_id, [text(w.workflow_id), count(w.cases), number(w.hours, 1),
                          money(w.cost, cur), money(w.cost_per_case, cur)])
         for w in pc.workflows])

    booked = completed_cases(h.observations, PIPELINE.booked)[0]
    pr = deal_profitability(deal_status(h.phases, booked), h.attributes, items, model)
    segs = [*pr.segments, pr.total]
    profit_chart = bar("profit-by-segment", f"Where booked ACV goes, per segment ({cur})",
                       [s.segment for s in pr.segments],
                       [{"label": "contribution", "backgroundColor": GOOD,
                         "data": [round(s.contribution) for s in pr.segments]},
                        {"label": "cost to serve", "backgroundColor": BAD,
                         "data": [round(s.cost_to_serve) for s in pr.segments]},
                        {"label": "cost of goods (1 - margin)", "backgroundColor": "#999999",
                         "data": [round(s.net_revenue - s.gross_margin)
                                  for s in pr.segments]},
                        {"label": "discount given", "backgroundColor": "#E69F00",
                         "data": [round(s.discount_given) for s in pr.segments]}],
                       stacked=True, y_title=cur)

    def row(s: SegmentProfit) -> tuple[str, list[Cell]]:
        return (s.segment, [text(s.segment), count(s.deals), money(s.acv, cur),
                            money(s.discount_given, cur), money(s.net_revenue, cur),
                            money(s.gross_margin, cur), money(s.cost_to_serve, cur),
                            money(s.contribution, cur), percent(s.contribution_share),
                            money(s.cost_per_deal, cur), count(s.losing)])

    profit_table = Table("profit", f"Booked deals' first-year contribution ({cur})", [
        Column("segment", "segment", False), Column("deals", "deals"), Column("acv", "ACV"),
        Column("discount", "discount given"), Column("net", "after discount"),
        Column("gross", "gross margin"), Column("serve", "cost to serve"),
        Column("contribution", "contribution"), Column("share", "of revenue"),
        Column("per_deal", "cost to serve per deal"), Column("losing", "deals at a loss")],
        [row(s) for s in segs])
    counted = [d for d in pr.deals if d.status == pr.basis and d.contribution_share is not None]
    shares = np.array([100 * (d.contribution_share or 0.0) for d in counted], dtype=float)
    counts, edges = np.histogram(shares, bins=20) if shares.size else (np.zeros(0), [])
    dist = bar("contribution-share", "Booked deals by contribution, % of revenue after "
               "discount", [f"{a:.0f}\u2013{b:.0f} %" for a, b in itertools.pairwise(edges)],
               [{"label": "deals", "data": counts.astype(int).tolist()}], y_title="deals",
               height=240)
    worst = Table("worst", f"The {WORST} booked deals with the smallest contribution share", [
        Column("case", "deal", False), Column("segment", "segment", False),
        Column("acv", "ACV"), Column("discount", "discount"), Column("margin", "margin"),
        Column("serve", "cost to serve"), Column("contribution", "contribution"),
        Column("share", "of revenue")],
        [(d.case_id, [text(d.case_id), text(d.segment), money(d.acv, cur),
                      percent(d.discount), percent(d.margin_share, 0),
                      money(d.cost_to_serve, cur), money(d.contribution, cur),
                      percent(d.contribution_share)]) for d in counted[:WORST]])
    unpriced = ("" if not pc.unpriced_hours else
                f" {pc.unpriced_hours:,.1f} hours of roles without a rate are not priced.")
    return Page([
        Section("Process cost", "Each person's paid working hours (specs/costs.yaml, on their "
                "own clock) are shared among the work items they hold at each moment, "
                "dispatched \u2192 completed, and charged at their own role's hourly rate. "
                "The log records no effort, so this counts all of a busy person's paid "
                "time as pipeline work: an upper bound that cannot exceed what they are "
                "paid for. Tasks whose open time is a customer's (signing, paying) are "
                "charged a standard effort instead." + unpriced,
                [role_chart, wf_chart], [role_table, wf_table]),
        Section("Deal profitability", "Contribution = ACV \u00d7 (1 \u2212 discount) "
                "\u00d7 gross margin share (the deal's margin_percent, else "
                f"{model.default_margin:.0%}) \u2212 cost to serve (the process cost of the "
                "deal's own case, approval to revenue; its lead is another case). First "
                "year only; segments sum the booked deals.",
                [profit_chart, dist], [profit_table, worst]),
    ], [("process cost", money(pc.total_cost, cur)),
        ("hours of work", number(pc.total_hours, 0)),
        ("booked deals' contribution", money(pr.total.contribution, cur))])
