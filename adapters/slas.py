"""Service levels from `slos.yaml`: the targets the runtime arms deadlines for, and who
hears of a breach (the runtime's `SlaPolicy` port).

A target is two numbers: `target_hours` (what good looks like; compliance is measured
against it) and `alert_hours` (when a breach is raised: an `SlaBreached` event and
notifications). Tasks are keyed by task id, or `workflow/Task` where two workflows
share a task name; workflows by workflow id.

Notifications go to the `recipients` of the `notifications` section (roles or people)
through the `channels` named there -- only those the deployment configured
(channels.yaml) -- so a breach never queues a notification that nobody can deliver:

    notifications:
      recipients: [sales_manager, cfo]   # roles (every person holding one) or people
      channels: [slack, email]           # email: one per person; slack/webhook: one post
      slack_channel: revops-alerts

Escalations (the MAPE-K loop's, through the `EscalationPolicy` port) move a task's alert
earlier for new work items: `target` then answers the escalation's threshold, so the
runtime raises the breach early, and `notices` sends that early alert (topic
`sla.escalated`) to the people of the escalation's role as well as the recipients.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any

import msgspec

from actors.ports import EscalationPolicy, Notice, SlaTarget
from adapters.config import load_yaml
from adapters.people import Directory
from mapek.escalation import SloTerms

HOUR = 3600.0
CHANNELS = ("email", "slack", "webhook")


class Slo(msgspec.Struct, forbid_unknown_fields=True):
    target_hours: float
    alert_hours: float | None = None  # default: the target
    compliance_target: float = 0.95

    @property
    def alert(self) -> float:
        return self.alert_hours if self.alert_hours is not None else self.target_hours


class Notifications(msgspec.Struct, forbid_unknown_fields=True):
    recipients: list[str] = []
    channels: list[str] = []
    slack_channel: str = "revops-alerts"
    webhook_channel: str = "default"


class SloFile(msgspec.Struct, forbid_unknown_fields=True):
    workflows: dict[str, Slo] = {}
    tasks: dict[str, Slo] = {}
    total_deal_cycle: Slo | None = None
    notifications: Notifications = msgspec.field(default_factory=Notifications)


def load_slos(path: str | pathlib.Path) -> SloFile:
    """Read slos.yaml; a bad entry stops the start with the file and field named."""
    slos = load_yaml(path, SloFile, "SLO")
    for where, table in (("workflows", slos.workflows), ("tasks", slos.tasks)):
        for name, s in table.items():
            if s.target_hours <= 0 or s.alert < s.target_hours:
                raise ValueError(f"{path}: /{where}/{name}: need 0 < target_hours <= "
                                 "alert_hours")
            if not 0 < s.compliance_target <= 1:
                raise ValueError(f"{path}: /{where}/{name}/compliance_target: a share in "
                                 "(0, 1]")
    for ch in slos.notifications.channels:
        if ch not in CHANNELS:
            raise ValueError(f"{path}: /notifications/channels: unknown channel {ch!r} "
                             f"(one of {', '.join(CHANNELS)})")
    return slos


class SlaBook:
    """slos.yaml as the runtime's SLA policy, with the people who are told."""

    def __init__(self, slos: SloFile, directory: Directory,
                 configured: set[str] | frozenset[str] = frozenset(),
                 escalations: EscalationPolicy | None = None) -> None:
        self.slos = slos
        self.directory = directory
        self.channels = [c for c in slos.notifications.channels if c in configured]
        self.escalations = escalations
        self._targets: dict[tuple[str, str | None], SlaTarget | None] = {}

    def slo(self, workflow_id: str, task: str | None) -> Slo | None:
        if task is None:
            return self.slos.workflows.get(workflow_id)
        return self.slos.tasks.get(f"{workflow_id}/{task}") or self.slos.tasks.get(task)

    def target(self, workflow_id: str, task: str | None) -> SlaTarget | None:
        key = (workflow_id, task)
        if key not in self._targets:  # asked once per enabled item: remember
            s = self.slo(workflow_id, task)
            self._targets[key] = None if s is None else SlaTarget(s.target_hours * HOUR,
                                                                 s.alert * HOUR)
        t = self._targets[key]
        if t is not None and task is not None and self.escalations is not None:
            # Asked when an item's deadline is armed: an escalation applied since acts
            # on new work (a dict lookup for the tasks without one).
            rule = self.escalations.escalation(workflow_id, task)
            if rule is not None and rule.after < t.alert:
                return SlaTarget(t.target, rule.after)
        return t

    def terms(self, workflow_id: str, task: str) -> SloTerms | None:
        """The SLO of a task as the MAPE-K loop plans with it (hours, share)."""
        s = self.slo(workflow_id, task)
        return None if s is None else SloTerms(s.target_hours, s.alert, s.compliance_target)

    def escalation_role(self, role: str) -> str | None:
        """Whom an early alert on `role`'s work should reach: the role of the people who
        manage its holders (roles.yaml `manages`; the most common), else the least
        senior other role that acts as it (so may do the work itself), else None."""
        d = self.directory
        holders = set(d.people_with_role(role))
        bosses = [p.role for _u, p in sorted(d.people.items())
                  if holders & set(p.manages) and p.role != role]
        if bosses:
            return max(sorted(set(bosses)), key=bosses.count)
        acting = [(len(d.acts_as(r)), r) for r in sorted(d.roles)
                  if r != role and role in d.acts_as(r) and d.people_with_role(r)]
        return min(acting)[1] if acting else None

    def recipients(self) -> list[str]:
        out: list[str] = []
        for r in self.slos.notifications.recipients:
            people = (self.directory.people_with_role(r) if r in self.directory.roles
                      else [r])
            out += [p for p in people if p not in out]
        return out

    def notices(self, case_id: str, workflow_id: str, breach: Any,
                data: Mapping[str, Any] | None = None) -> list[Notice]:
        name = case_name(data)
        if breach.item and self.escalations is not None:
            s = self.slo(workflow_id, breach.task)
            if s is not None and breach.alert < s.alert * HOUR - 1.0:
                return self._escalated(case_id, workflow_id, breach, name)
        what = ("the case's time in " + workflow_id if breach.item == 0
                else f"task {breach.task} (work item {breach.item})")
        subject = f"SLA breached: {breach.task} on {_named(case_id, name)}"
        body = (f"{what} of case {_named(case_id, name)} passed its alert threshold of "
                f"{breach.alert / HOUR:g} h (target {breach.target / HOUR:g} h).")
        payload = _payload(case_id, name, workflow_id, breach)
        key = f"sla:{case_id}:{breach.item}:{breach.at!r}"
        return self._fan_out(key, "sla.breached", subject, body, case_id, payload)

    def _escalated(self, case_id: str, workflow_id: str, breach: Any,
                   name: str | None) -> list[Notice]:
        """An alert raised early by an escalation: the role that can act hears it first,
        and the usual recipients with it (they would have heard at the SLO's threshold,
        which this item no longer reaches with an alert of its own)."""
        assert self.escalations is not None
        rule = self.escalations.escalation(workflow_id, breach.task)  # rolled back: None
        people = [] if rule is None else self.directory.people_with_role(rule.to_role)
        people += [p for p in self.recipients() if p not in people]
        subject = f"At risk: {breach.task} on {_named(case_id, name)} is still open"
        body = (f"task {breach.task} (work item {breach.item}) of case "
                f"{_named(case_id, name)} is still "
                f"open after {breach.alert / HOUR:g} h; its target is "
                f"{breach.target / HOUR:g} h."
                + ("" if rule is None else f" Escalated to {rule.to_role} "
                   f"(policy version {rule.version})."))
        payload = {**_payload(case_id, name, workflow_id, breach),
                   "escalated_to": None if rule is None else rule.to_role,
                   "policy_version": None if rule is None else rule.version}
        key = f"esc:{case_id}:{breach.item}:{breach.at!r}"
        return self._fan_out(key, "sla.escalated", subject, body, case_id, payload, people)

    def policy_notices(self, rec: Any, note: str) -> list[Notice]:
        """The MAPE-K loop rolled a policy back: the same people hear of it."""
        subject = f"Policy rolled back: {rec.id} on {rec.task or rec.workflow_id}"
        body = f"{rec.description} -- rolled back: {note}."
        payload = {"recommendation": rec.id, "workflow_id": rec.workflow_id,
                   "task": rec.task, "verification": rec.verification}
        return self._fan_out(f"policy:{rec.id}:{rec.updated_at!r}", "policy.rolled_back",
                             subject, body, "", payload)

    def _fan_out(self, key: str, topic: str, subject: str, body: str, case_id: str,
                 payload: dict[str, Any], people: list[str] | None = None) -> list[Notice]:
        n = self.slos.notifications
        people = self.recipients() if people is None else people
        out = []
        for ch in self.channels:
            if ch == "email":
                out += [Notice(f"{key}:email:{p}", "email", p, topic, subject, body,
                               case_id, payload) for p in people]
            else:
                names = ", ".join((self.directory.people[p].name or p)
                                  if p in self.directory.people else p for p in people)
                target = n.slack_channel if ch == "slack" else n.webhook_channel
                out.append(Notice(f"{key}:{ch}", ch, target, topic, subject,
                                  body + (f" For: {names}." if names else ""), case_id,
                                  payload))
        return out


def case_name(data: Mapping[str, Any] | None) -> str | None:
    """What the people told of a case call it: the deal's name (with its customer when
    the name does not say it), else the lead's company; None when the data names
    neither. A case id such as `case_8891f3be3a6ba6e9` tells the CFO nothing."""
    if not data:
        return None
    deal, customer, company = (_one_line(data.get(k)) for k in
                               ("deal_name", "customer_name", "company_name"))
    if deal:
        return deal if not customer or customer.lower() in deal.lower() else _one_line(
            f"{deal} ({customer})")
    return customer or company or None


NAME_LIMIT = 80  # characters of a name in a subject line


def _one_line(value: Any) -> str:
    """A name as a subject line can carry it: what an SDR typed may hold line breaks
    (an e-mail header refuses them: the alert would never be sent) or run to pages."""
    text = " ".join(value.split()) if isinstance(value, str) else ""
    return text if len(text) <= NAME_LIMIT else text[:NAME_LIMIT - 1].rstrip() + "…"


def _payload(case_id: str, name: str | None, workflow_id: str, breach: Any,
             ) -> dict[str, Any]:
    """What a receiver's program reads of a breach, alerted at its threshold or early."""
    return {"case_id": case_id, "case_name": name, "workflow_id": workflow_id,
            "item": breach.item, "task": breach.task, "target_hours": breach.target / HOUR,
            "alert_hours": breach.alert / HOUR, "breached_at": breach.at}


def _named(case_id: str, name: str | None) -> str:
    return case_id if name is None else f"{name} [{case_id}]"
