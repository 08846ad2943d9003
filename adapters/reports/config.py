"""The configuration a report page may depend on, read once per run from --specs:
roles.yaml (people and their roles), slos.yaml (targets), costs.yaml (rates), and the
time zone arrivals are read in. Each file's digest goes into the data stamp of the
pages computed from it, so editing a rate regenerates the cost page and nothing else.
"""

from __future__ import annotations

import hashlib
import pathlib
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from adapters.people import Directory, load_directory
from adapters.reports.costs import cost_model
from adapters.slas import SloFile, load_slos
from mapek.economics import CostModel

ABSENT = "absent"


@dataclass(frozen=True, slots=True)
class ReportConfig:
    specs: pathlib.Path
    directory: Directory
    slos: SloFile | None
    costs: CostModel
    time_zone: str
    digests: dict[str, str]  # file name -> sha256 prefix, or ABSENT

    def role_of_person(self, person: str) -> str | None:
        p = self.directory.people.get(person)
        return p.role if p is not None else None

    def zone_of_person(self, person: str) -> str:
        p = self.directory.people.get(person)
        return p.time_zone if p is not None else "UTC"

    def workflow_target(self, workflow_id: str) -> float | None:
        s = self.slos.workflows.get(workflow_id) if self.slos is not None else None
        return None if s is None else s.target_hours

    def task_target(self, workflow_id: str, task: str) -> float | None:
        """Hours, keyed as slos.yaml keys tasks: `workflow/Task` first, then `Task`."""
        if self.slos is None:
            return None
        s = self.slos.tasks.get(f"{workflow_id}/{task}") or self.slos.tasks.get(task)
        return None if s is None else s.target_hours

    def compliance_target(self, workflow_id: str, task: str | None = None) -> float | None:
        if self.slos is None:
            return None
        s = (self.slos.workflows.get(workflow_id) if task is None else
             self.slos.tasks.get(f"{workflow_id}/{task}") or self.slos.tasks.get(task))
        return None if s is None else s.compliance_target


def digest(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.exists() else ABSENT


def load_report_config(specs: str | pathlib.Path, time_zone: str = "UTC") -> ReportConfig:
    """Raises ValueError naming the file and field of a bad config, or a bad zone."""
    spec_dir = pathlib.Path(specs)
    if not spec_dir.is_dir():
        raise ValueError(f"no spec directory {str(spec_dir)!r} (--specs DIR)")
    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"--time-zone: unknown time zone {time_zone!r}") from None
    roles, slos = spec_dir / "roles.yaml", spec_dir / "slos.yaml"
    directory = load_directory(roles) if roles.exists() else Directory()
    return ReportConfig(
        spec_dir, directory, load_slos(slos) if slos.exists() else None,
        cost_model(spec_dir, directory), time_zone,
        {name: digest(spec_dir / name) for name in ("roles.yaml", "slos.yaml", "costs.yaml")})
