"""The MAPE-K loop over HTTP, end to end on a real server (virtual clock, SQLite file):
history with a known timing effect is imported; the loop recommends the window with
high confidence and a twin estimate; applying it writes policy version 1, which the
runtime consults for the next deal (its legal review is held out of the worklist and
refused until 2pm PT, then offered); rolling back restores the default; everything
survives a restart; only people with `manage_policies` may change policies.

The history comes from bench/mapek_eval.py's world (business hours in Pacific time,
work dispatched 2pm-4pm answered four times faster), with completion = enabled +
the world's response, so the test needs no twin to build its input."""

from __future__ import annotations

import datetime as dt

import httpx
import numpy as np
import pytest
from http_kit import Server
from test_pipeline_http import Api, when

WF = "deal-approval-gate"
TASK = "SendToLegal"
LEGAL = "priya.patel@acme.com"
SDR = "sarah.chen@acme.com"
MONDAY_10AM_PT = "2026-06-01T17:00:00Z"
DEAL = {"deal_name": "Acme Analytics", "customer_name": "Acme", "deal_acv": 600000,
        "deal_value_3yr": 1800000, "discount_percent": 0}


def history_csv(ev, scenario: str, n: int = 1600, seed: int = 3) -> str:
    world = ev.world(scenario)
    respond = ev.true_responder(world, seed)
    rows = ["case_id,task,event,timestamp,deal_acv"]
    for i, t in enumerate(ev.arrivals(np.random.default_rng(seed), n, 56, ev.START)):
        done = t + respond(i, t)
        for event, at in (("enabled", t), ("completed", done)):
            stamp = dt.datetime.fromtimestamp(at, dt.UTC).isoformat()
            rows.append(f"h{i},{TASK},{event},{stamp},{100000 + i}")
    return "\n".join(rows) + "\n"


def import_history(api: Api, text: str) -> dict:
    r = api.http.post(f"/workflows/{WF}/history/import", content=text.encode(),
                      headers={"Content-Type": "text/csv"})
    assert r.status_code in (200, 201), r.text
    return r.json()


def recs(api: Api) -> list[dict]:
    body = api.ok(api.get(f"/workflows/{WF}/mape-k/recommendations"))
    # These histories are analysed well within the request's wait: never stale here.
    assert body["current"] is True and body["analysed_at"], body
    return body["recommendations"]


def act(api: Api, rid: str, action: str, user: str | None = None) -> httpx.Response:
    return api.post(f"/workflows/{WF}/mape-k/recommendations/{rid}/{action}", {}, user)


@pytest.fixture
def api(server_factory) -> Api:
    srv = server_factory("--virtual-clock", MONDAY_10AM_PT)
    a = Api(srv)
    yield a
    a.close()


def test_a_timing_effect_is_recommended_applied_used_and_rolled_back(api: Api, mapek_eval) -> None:
    import_history(api, history_csv(mapek_eval, "clear_effect"))
    found = [r for r in recs(api) if r["type"] == "timing_optimization"]
    assert len(found) == 1, found
    rec = found[0]
    assert rec["task"] == TASK and rec["status"] == "ready_to_apply"
    assert rec["confidence"] >= 0.8
    assert "2pm PT" in rec["description"], rec["description"]
    assert rec["estimated_improvement_hours"] > 1.0
    assert rec["change"]["kind"] == "dispatch_window"
    assert rec["change"]["window"]["start_hour"] == 14
    ev = rec["evidence"]
    assert ev["sample_size"] >= 1000 and ev["measuring_half"] > 300
    lo, hi = ev["saving_interval_90"]
    assert 0 < lo <= ev["saving_hours_measured"] <= hi
    assert ev["twin"]["current_hours"] > ev["twin"]["proposed_hours"]

    err = api.error(act(api, rec["id"], "apply", SDR), 403, 3002)
    assert err["details"][0]["field"] == "X-Caseloop-User"
    applied = api.ok(act(api, rec["id"], "apply"))
    assert applied["status"] == "applied" and applied["policy_version"] == 1
    api.error(act(api, rec["id"], "apply"), 409, 2003)
    policies = api.ok(api.get("/policies"))
    assert policies["current_version"] == 1
    assert [(t["task"], t["dispatch"]["start_hour"]) for t in policies["current"]["tasks"]] \
        == [(TASK, 14)]

    # The next deal, created at 10am PT: its legal review waits for 2pm.
    api.create(WF, "deal-held", DEAL)
    api.settle()
    assert TASK not in [i["task"] for i in api.worklist(LEGAL) if i["case_id"] == "deal-held"]
    api.error(api.complete("deal-held", TASK, LEGAL, "approved"), 409, 2003)
    now = api.advance("4h")
    assert now == when("2026-06-01T21:00:00Z")
    assert TASK in [i["task"] for i in api.worklist(LEGAL) if i["case_id"] == "deal-held"]
    api.ok(api.complete("deal-held", TASK, LEGAL, "approved"))

    rolled = api.ok(act(api, rec["id"], "rollback"))
    assert rolled["status"] == "rolled_back"
    policies = api.ok(api.get("/policies"))
    assert policies["current_version"] == 2 and policies["current"]["tasks"] == []
    assert [v["based_on"] for v in policies["history"]] == [0, 0, 0]
    api.create(WF, "deal-free", DEAL)  # 2pm now, but no policy: offered at once anyway
    api.settle()
    assert TASK in [i["task"] for i in api.worklist(LEGAL) if i["case_id"] == "deal-free"]

    # Knowledge survives a restart: the same recommendation, status and policy history.
    srv: Server = api.srv
    srv.restart("--virtual-clock", MONDAY_10AM_PT)
    api = Api(srv)  # the restarted server listens on a new port
    again = {r["id"]: r for r in recs(api)}
    assert again[rec["id"]]["status"] == "rolled_back"
    assert len(api.ok(api.get("/policies"))["history"]) == 3
    # A rolled-back change is not proposed again.
    assert [r for r in again.values() if r["status"] == "ready_to_apply"] == []
    api.close()


def test_the_analysis_shows_the_imported_task_with_sample_sizes(api: Api, mapek_eval) -> None:
    import_history(api, history_csv(mapek_eval, "clear_effect", n=600))
    a = api.ok(api.get(f"/workflows/{WF}/mape-k/analysis"))
    assert set(a) >= {"stamp", "slo", "bottlenecks", "dispatch", "assignees", "breach_risk"}
    (legal,) = [t for t in a["slo"] if t["task"] == TASK]
    assert (legal["closed"], legal["target_hours"]) == (600, 4.0)  # slos.yaml's target
    c = legal["compliance"]
    assert c["n"] == 600 and c["low"] <= c["value"] <= c["high"]
    assert a["stamp"]["observations"] == 600


def test_business_hours_alone_yield_no_confident_timing_recommendation(
        api: Api, mapek_eval) -> None:
    import_history(api, history_csv(mapek_eval, "business_hours"))
    assert [r for r in recs(api) if r["confidence"] >= 0.8] == []


def test_unknown_recommendations_and_workflows_are_404(api: Api) -> None:
    api.error(act(api, "rec_999", "apply"), 404, 2003)
    api.error(api.get("/workflows/no-such/mape-k/recommendations"), 404, 2001)
    api.error(act(api, "rec_1", "reject"), 404, 2003)


def test_an_imported_task_the_workflow_lacks_is_advice_not_a_policy(api: Api, mapek_eval,
                                                                   ) -> None:
    """History from another system may name a task this workflow does not have. Its
    timing effect was recommended ready to apply, and applying it wrote a policy version
    for that task: 200 'applied', a policy no work item would ever consult, never
    verified. It is advice now, which apply refuses (409, field `change`)."""
    legacy = "LegacyLegalCheck"
    import_history(api, history_csv(mapek_eval, "clear_effect").replace(TASK, legacy))
    (rec,) = [r for r in recs(api) if r["task"] == legacy]
    assert rec["type"] == "timing_optimization" and rec["status"] == "ready_to_apply"
    assert rec["change"] == {}
    assert f"no task '{WF}/{legacy}'" in rec["description"], rec["description"]
    err = api.error(act(api, rec["id"], "apply"), 409, 2003)
    assert err["details"][0]["field"] == "change"
    assert api.ok(api.get("/policies"))["current_version"] == 0
