"""Request and response bodies of the HTTP API, as msgspec Structs.

The same Structs decode requests (decode and validate in one step) and generate the
OpenAPI document (`openapi.py`), so the document cannot drift from the code.
Timestamps at the API are ISO 8601 strings in UTC; inside, time is float seconds.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct

CaseId = Annotated[str, Meta(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:@-]+$",
                             description="letters, digits and _ . : @ -")]


class _Body(Struct, forbid_unknown_fields=True, omit_defaults=True):
    pass


class _Out(Struct, omit_defaults=False):
    pass


# ------------------------------------------------------------------------- requests
class CreateCase(_Body):
    """`POST /workflows/{id}/cases`: start a case; the server names it if you do not."""

    data: dict[str, Any] = {}
    case_id: CaseId | None = None


class CompleteTask(_Body):
    """`POST /cases/{case_id}/tasks/{task}/complete`."""

    result: str | None = None
    output_data: dict[str, Any] = {}
    completed_by: str | None = None  # open mode: the person acting (X-Caseloop-User too)
    checklist: dict[str, bool] = {}  # required checklist items confirmed


class StartTask(_Body):
    """`POST /cases/{case_id}/tasks/{task}/start`: claim a work item."""

    started_by: str | None = None


class CaseSignal(_Body):
    """`POST /cases/{case_id}/signals/{name}`: what the other system reports."""

    result: str | None = None
    output_data: dict[str, Any] = {}


class CancelCase(_Body):
    reason: str = "cancelled"


class RetryIncident(_Body):
    pass


# ------------------------------------------------------------------------ responses
class ErrorDetail(_Out):
    field: str
    problem: str


class Error(_Out):
    code: int
    message: str
    details: list[ErrorDetail] = []


class ErrorBody(_Out):
    error: Error


class WorkItemView(_Out):
    item: int
    task: str
    kind: str  # human | automatic | composite
    state: str  # enabled | started | failed
    role: str | None
    assignee: str | None
    enabled_at: str
    due: str | None


class CaseView(_Out):
    case_id: str
    workflow_id: str
    workflow_version: int
    state: str  # active | completed | cancelled | failed
    enabled_tasks: list[str]
    work_items: list[WorkItemView]
    created_at: str
    closed_at: str | None
    data: dict[str, Any]


class CaseSummary(_Out):
    case_id: str
    workflow_id: str
    workflow_version: int
    state: str
    created_at: str
    updated_at: str
    closed_at: str | None


class CaseList(_Out):
    cases: list[CaseSummary]
    next_cursor: str | None


class HistoryEvent(_Out):
    seq: int
    type: str  # CaseCreated, TaskEnabled, TaskStarted, TaskCompleted, ...
    at: str
    task: str | None = None
    item: int | None = None
    workflow_id: str | None = None
    result: str | None = None
    by: str | None = None
    data: dict[str, Any] | None = None
    reason: str | None = None
    due: str | None = None


class History(_Out):
    case_id: str
    workflow_id: str
    events: list[HistoryEvent]


class WorkflowVersion(_Out):
    version: int
    digest: str
    registered_at: str


class WorkflowSummary(_Out):
    workflow_id: str
    name: str | None
    version: int
    description: str | None
    tasks: list[str]


class WorkflowList(_Out):
    workflows: list[WorkflowSummary]


class WorkflowDetail(_Out):
    workflow_id: str
    name: str | None
    version: int
    versions: list[WorkflowVersion]
    spec: dict[str, Any]


class Registered(_Out):
    workflow_id: str
    version: int
    created: bool  # false: new cases already take this exact spec (idempotent)
    digest: str
    warnings: list[str]


class WorklistItem(_Out):
    case_id: str
    workflow_id: str
    item: int
    task: str
    role: str | None
    state: str
    assignee: str | None
    enabled_at: str
    due: str | None


class Worklist(_Out):
    items: list[WorklistItem]  # oldest first
    truncated: bool = False  # more open items than WORKLIST_LIMIT: the oldest are shown


class IncidentView(_Out):
    case_id: str
    item: int
    task: str
    action: str
    attempts: int
    error: str
    at: str


class Incidents(_Out):
    incidents: list[IncidentView]


class Metrics(_Out):
    cases_created: int
    cases_completed: int
    cases_failed: int
    cases_cancelled: int
    cases_active: int
    avg_duration_hours: float | None
    p95_duration_hours: float | None
    slo_target_hours: float | None
    slo_compliance_percent: float | None


class WorkflowMetrics(_Out):
    workflow_id: str
    time_range: str
    metrics: Metrics
    tasks: list[TaskCompliance] = []  # per task with an SLO: compliance and breaches


class Recommendation(_Out):
    id: str
    type: str
    description: str
    confidence: float
    estimated_improvement: str
    status: str
    task: str | None = None
    estimated_improvement_hours: float | None = None
    evidence: dict[str, Any] = {}
    change: dict[str, Any] = {}
    verification: dict[str, Any] | None = None  # realized against estimated, once measured
    policy_version: int | None = None  # the policy version applying it made
    created_at: str | None = None
    updated_at: str | None = None


class Recommendations(_Out):
    workflow_id: str
    recommendations: list[Recommendation]
    # False: the history grew and the cycle over it outlasted the request (it goes on):
    # these are the recommendations of the cycle that ended at `analysed_at`.
    current: bool = True
    analysed_at: str | None = None


class Health(_Out):
    status: str  # ok | unavailable
    checks: dict[str, str] = {}


def schema_components(types: list[Any]) -> tuple[tuple[dict[str, Any], ...], dict[str, Any]]:
    return msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")


# ---------------------------------------------------------------------------- clock
class AdvanceClock(_Body):
    """`POST /clock/advance`: exactly one of `by` ("25h", "3d") or `to` (ISO 8601)."""

    by: str | None = None
    to: str | None = None


class ClockView(_Out):
    now: str
    virtual: bool


# ---------------------------------------------------------------- today and stats
class TodayItem(_Out):
    case_id: str
    workflow_id: str
    item: int
    task: str
    state: str
    assignee: str | None
    enabled_at: str
    deadline: str | None  # the earliest of the SLO target and the task's own timer
    alert_at: str | None  # when the SLA breach is (or was) raised
    status: str  # on_track | at_risk (past its target) | breached (past its alert)


class Today(_Out):
    user: str
    now: str
    items: list[TodayItem]  # every open item of theirs, earliest deadline first
    at_risk: list[TodayItem]
    breaches: list[TodayItem]
    truncated: bool = False  # more open items than TODAY_LIMIT: the oldest were ranked


class WorkflowCounts(_Out):
    workflow_id: str
    active: int
    completed: int
    cancelled: int
    failed: int


class Conversion(_Out):
    leads: int
    leads_qualified: int  # assigned to an SDR
    deals: int
    deals_approved: int
    deals_booked: int  # revenue booked
    booked_acv: float
    lead_to_deal_percent: float | None
    deal_to_booked_percent: float | None


class Stats(_Out):
    workflows: list[WorkflowCounts]
    conversion: Conversion


class TaskCompliance(_Out):
    task: str
    target_hours: float
    alert_hours: float
    compliance_target_percent: float
    completed: int
    within_target: int
    compliance_percent: float | None  # None until something completed
    p95_hours: float | None
    open: int
    open_past_target: int
    breaches: int


# ---------------------------------------------------------------- the dashboard
class StageCount(_Out):
    """Open work of one task, over the cases whose current workflow it belongs to."""

    workflow_id: str
    task: str
    kind: str  # human | automatic | composite
    items: int  # open work items of the task
    cases: int  # cases waiting on it


class Stages(_Out):
    stages: list[StageCount]  # by workflow, then most items first


class PersonView(_Out):
    person: str
    name: str | None
    role: str
    team: str | None
    time_zone: str
    permissions: list[str]  # of their role and the roles it acts as


class People(_Out):
    mode: str  # open | token
    you: str  # the person this request acts as ("operator": open mode, nobody named)
    people: list[PersonView]


class RecommendationStatus(_Out):
    id: str
    workflow_id: str
    status: str


class LiveEvent(_Out):
    """The JSON `data` of one server-sent event; its `event:` field repeats `kind`."""

    kind: str  # hello | log (the event log grew) | recommendations (a status changed)
    pos: int  # the event log's append position (also the SSE `id`)
    at: str
    recommendations: list[RecommendationStatus] = []  # hello: all; else those changed
