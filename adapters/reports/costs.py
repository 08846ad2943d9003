"""The cost model of `specs/costs.yaml`: an hourly rate per role of roles.yaml, the
standard effort of tasks whose open time is a customer's, a currency.

A bad file stops the report with the file and the field named, as every config loader
here does (`costs.yaml: /rates/sales_mgr: unknown role (roles.yaml has: ...)`); an
absent file is an empty model: the report still shows hours, priced at nothing.
"""

from __future__ import annotations

import pathlib

from adapters.config import load_yaml
from adapters.people import Directory
from mapek.economics import CostModel


def load_costs(path: str | pathlib.Path, directory: Directory | None = None) -> CostModel:
    """Read costs.yaml; with a directory, every role it prices must be one of its roles."""
    model = load_yaml(path, CostModel, "costs")
    if not model.currency.strip():
        raise ValueError(f"{path}: /currency: must not be empty")
    for where, table in (("rates", model.rates), ("effort_hours", model.effort_hours)):
        for key, hours_or_rate in table.items():
            if not 0 <= hours_or_rate < float("inf"):
                raise ValueError(f"{path}: /{where}/{key}: must be a number >= 0")
    wh = model.working_hours
    if wh is not None and wh.end <= wh.start:
        raise ValueError(f"{path}: /working_hours: end must be after start")
    if directory is not None and directory.roles:
        for role in model.rates:
            if role not in directory.roles:
                raise ValueError(f"{path}: /rates/{role}: unknown role (roles.yaml has: "
                                 f"{', '.join(sorted(directory.roles))})")
    return model


def cost_model(specs: pathlib.Path, directory: Directory | None = None) -> CostModel:
    """costs.yaml of the spec directory, or the empty model if there is none."""
    path = specs / "costs.yaml"
    return load_costs(path, directory) if path.exists() else CostModel(rates={})
