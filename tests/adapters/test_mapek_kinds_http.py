"""Routing, escalation and capacity recommendations over HTTP, end to end on a real
server (virtual clock, SQLite file). History from bench/mapek_eval.py's worlds is
imported as CSV with the people who did the work (`resource`):

- one SDR takes twice as long to justify discounts: the loop recommends routing new
  leads away from them at the lead assignment (the spec's AssignToSDR, which decides
  who owns the deal); applying it makes the next qualified leads go to the others;
- a fifth of the manager approvals get stuck: the loop recommends alerting the
  director after 2 h; applying it makes the next deal's approval breach at 2 h;
- two lawyers work a queue: capacity advice, which apply refuses (409, field
  `change`)."""

from __future__ import annotations

import datetime as dt

import pytest
from test_pipeline_http import TECHCORP_LEAD, Api, of_type, qualify, small_deal, when

START = "2026-06-01T17:00:00Z"  # after the imported history (March-April 2026)
SLOW = "david.park@acme.com"


def csv_of(observations) -> str:
    rows = ["case_id,task,event,timestamp,resource"]
    for o in observations:
        for event, at, who in (("enabled", o.enabled_at, ""), ("started", o.started_at, ""),
                               ("completed", o.closed_at, o.by or "")):
            if at is not None:
                stamp = dt.datetime.fromtimestamp(at, dt.UTC).isoformat()
                rows.append(f"{o.case_id},{o.task},{event},{stamp},{who}")
    return "\n".join(rows) + "\n"


def import_history(api: Api, workflow: str, text: str) -> None:
    r = api.http.post(f"/workflows/{workflow}/history/import", content=text.encode(),
                      headers={"Content-Type": "text/csv"})
    assert r.status_code in (200, 201), r.text


def recs(api: Api, workflow: str) -> dict[str, dict]:
    found = api.ok(api.get(f"/workflows/{workflow}/mape-k/recommendations"))
    return {r["type"]: r for r in found["recommendations"]}


def act(api: Api, workflow: str, rid: str, action: str):
    return api.post(f"/workflows/{workflow}/mape-k/recommendations/{rid}/{action}", {})


@pytest.fixture
def api(server_factory) -> Api:
    a = Api(server_factory("--virtual-clock", START))
    yield a
    a.close()


def test_routing_recommended_applied_and_used_by_the_lead_assignment(
        api: Api, mapek_eval) -> None:
    obs, _ = mapek_eval.slow_person_world(6)
    import_history(api, "pricing-exception", csv_of(obs))
    rec = recs(api, "pricing-exception")["routing_optimization"]
    assert rec["task"] == "JustifyDiscount" and rec["status"] == "ready_to_apply"
    assert rec["confidence"] >= 0.95
    assert rec["change"] == {"kind": "routing", "workflow_id": "pricing-exception",
                             "task": "JustifyDiscount", "avoid": [SLOW],
                             "assigned_at": "lead-qualification/AssignToSDR"}
    assert "David Park" in rec["description"]
    ev = rec["evidence"]
    assert ev["sample_size"] == 900 and ev["role"] == "sdr"  # the spec's role
    assert ev["saving_interval_95"][0] > 0

    applied = api.ok(act(api, "pricing-exception", rec["id"], "apply"))
    assert applied["status"] == "applied"
    (policy,) = api.ok(api.get("/policies"))["current"]["tasks"]
    assert (policy["task"], policy["avoid"], policy["assigned_at"]) == (
        "JustifyDiscount", [SLOW], "lead-qualification/AssignToSDR")

    owners = [qualify(api, f"lead_{i}", {**TECHCORP_LEAD,
                                          "contact_email": f"buyer{i}@techcorp.com"}
                      )["data"]["assigned_to"] for i in range(4)]
    assert SLOW not in owners and len(set(owners)) == 2, owners

    api.ok(act(api, "pricing-exception", rec["id"], "rollback"))
    owners = [qualify(api, f"lead_b{i}", {**TECHCORP_LEAD,
                                           "contact_email": f"b{i}@techcorp.com"}
                      )["data"]["assigned_to"] for i in range(3)]
    assert SLOW in owners  # round robin again


def test_escalation_and_capacity_over_http(api: Api, mapek_eval) -> None:
    stuck = mapek_eval.approval_world(6, 0.2)
    queue, _ = mapek_eval.queue_world(6)
    import_history(api, "deal-approval-gate", csv_of(stuck + queue))
    found = recs(api, "deal-approval-gate")

    cap = found["capacity"]
    assert cap["change"] == {} and cap["task"] is None
    assert cap["evidence"]["role"] == "legal_counsel" and cap["confidence"] >= 0.95
    err = api.error(act(api, "deal-approval-gate", cap["id"], "apply"), 409, 2003)
    assert err["details"][0]["field"] == "change"

    esc = found["escalation"]
    assert esc["task"] == "SendToSalesManager"
    # Olivia (director) manages Marcus (sales_manager): roles.yaml says who can act.
    assert esc["change"]["escalation"] == {"after_hours": 2.0, "to_role": "director"}
    assert esc["estimated_improvement_hours"] is None
    api.ok(act(api, "deal-approval-gate", esc["id"], "apply"))
    (policy,) = api.ok(api.get("/policies"))["current"]["tasks"]
    assert policy["escalation"] == {"after_hours": 2.0, "to_role": "director"}

    api.create("deal-approval-gate", "deal_esc", small_deal("deal_esc"))
    api.settle()
    api.advance("3h")
    (breach,) = of_type(api.history("deal_esc"), "SlaBreached", "SendToSalesManager")
    assert when(breach["at"]) == when(START) + dt.timedelta(hours=2)
