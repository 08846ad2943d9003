"""Every refusal of the HTTP API, one test each: status, machine-readable code and the
located `details[].field` of the error body

    {"error": {"code": ..., "message": ..., "details": [{"field": ..., "problem": ...}]}}

Each test runs the real app (create_app, its lifespan, a real SQLite file under
tmp_path, the shipped specs and roles.yaml) in-process through httpx.ASGITransport;
only the CLI refusal to serve without tokens on 0.0.0.0 starts a subprocess.
"""

from __future__ import annotations

import inspect
import itertools
import json
import os
import pathlib
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
import yaml
from http_kit import in_process

from adapters.cli import main as cli_main
from adapters.http import today as today_module
from adapters.http import work as work_module
from adapters.http.codec import MAX_BODY
from engine import compile_document, replay
from engine.events import decode_events, encode_events

pytestmark = pytest.mark.anyio

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
API = "/api/v1"

SDR = "sarah.chen@acme.com"
MANAGER = "marcus.thompson@acme.com"  # sales_manager: may cancel cases
FINANCE = "james.rodriguez@acme.com"  # finance_manager: discount limit 0.15
CFO = "lisa.wong@acme.com"  # cfo: unlimited

GUARDED = {  # completing Check decides a guard that reads a field nobody set
    "id": "guarded-split",
    "tasks": [{"id": "Check", "role": "sdr", "split": "xor"},
              {"id": "Yes", "role": "sdr"}, {"id": "No", "role": "sdr"}],
    "flows": [{"from": "start", "to": "Check"},
              {"from": "Check", "to": "Yes", "when": "missing_field > 1"},
              {"from": "Check", "to": "No"},
              {"from": "Yes", "to": "end"}, {"from": "No", "to": "end"}],
}
AUTOMATIC = {  # an automatic task whose action no one registered: it stays the system's
    "id": "automatic-only",
    "tasks": [{"id": "Run", "kind": "automatic", "action": "no_such_action"}],
    "flows": [{"from": "start", "to": "Run"}, {"from": "Run", "to": "end"}],
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def api(tmp_path: pathlib.Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app in open mode."""
    async with in_process(tmp_path) as client:
        yield client


def deal(acv: float = 40000, discount: float = 0.0, **more: Any) -> dict[str, Any]:
    return {"deal_name": "TechCorp expansion", "customer_name": "TechCorp",
            "deal_acv": acv, "discount_percent": discount, **more}


async def create_deal(client: httpx.AsyncClient, case_id: str, **kw: Any) -> dict[str, Any]:
    r = await client.post(f"{API}/workflows/deal-approval-gate/cases",
                          json={"case_id": case_id, "data": deal(**kw)})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def register(client: httpx.AsyncClient, spec: dict[str, Any]) -> None:
    r = await client.post(f"{API}/workflows", json=spec)
    assert r.status_code in (200, 201), r.text


def complete_url(case_id: str, task: str) -> str:
    return f"{API}/cases/{case_id}/tasks/{task}/complete"


def as_user(user: str) -> dict[str, str]:
    return {"X-Caseloop-User": user}


def error(r: httpx.Response, status: int, code: int) -> dict[str, Any]:
    """Assert the status and the code of an error answer; return its `error` object."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"]
    assert all(set(d) == {"field", "problem"} for d in err["details"]), err
    return err  # type: ignore[no-any-return]


def fields(err: dict[str, Any]) -> list[str]:
    return [d["field"] for d in err["details"]]


async def snapshot(client: httpx.AsyncClient, case_id: str) -> tuple[Any, ...]:
    case = (await client.get(f"{API}/cases/{case_id}")).json()
    history = (await client.get(f"{API}/cases/{case_id}/history")).json()
    assert "events" in history, history
    return (case["state"], case["enabled_tasks"], case["work_items"], case["data"],
            len(history["events"]))


# ============================================================== 400: malformed requests
async def test_body_not_json_is_400(api: httpx.AsyncClient) -> None:
    await create_deal(api, "d1")
    r = await api.post(complete_url("d1", "SendToFinance"), content=b'{"result": ')
    err = error(r, 400, 1000)
    assert fields(err) == ["body"]
    # The hint names this request's fields, not another route's body
    assert "result" in err["message"] and "output_data" in err["message"], err
    r = await api.post(f"{API}/workflows/deal-approval-gate/cases", content=b"{case_id")
    err = error(r, 400, 1000)
    assert "case_id" in err["message"] and "result" not in err["message"], err


async def test_a_case_another_writer_changed_meanwhile_is_409_and_a_retry_works(
        api: httpx.AsyncClient, tmp_path: pathlib.Path) -> None:
    """Another process appends to a case this server holds (a CLI tool writing into a
    served file): the command meets an append conflict -- a 409 that says to send it
    again, not a 500 -- and sent again it works on the case as the log has it."""
    await create_deal(api, "d1", acv=600000)
    db = sqlite3.connect(tmp_path / "t.db")
    with db:
        bodies = [r[0] for r in db.execute(
            "SELECT body FROM events WHERE case_id = 'd1' ORDER BY first_seq")]
        net = compile_document(json.loads((SPECS / "deal-approval-gate.json").read_text()))
        case = replay([e for b in bodies for e in decode_events(b)], net)
        foreign = case.complete("SendToLegal", case.created_at + 1, "approved")
        db.execute("INSERT INTO events (case_id, first_seq, last_seq, at, body)"
                   " VALUES (?, ?, ?, ?, ?)", ("d1", case.version - len(foreign) + 1,
                                               case.version, case.created_at + 1,
                                               encode_events(foreign)))
    db.close()
    r = await api.post(complete_url("d1", "SendToFinance"), json={"result": "approved"})
    err = error(r, 409, 2003)
    assert fields(err) == ["case_id"] and "send the command again" in err["message"]
    r = await api.post(complete_url("d1", "SendToFinance"), json={"result": "approved"})
    assert r.status_code == 200, r.text
    history = (await api.get(f"{API}/cases/d1/history")).json()["events"]
    done = [e["task"] for e in history if e["type"] == "TaskCompleted"]
    assert done == ["SendToLegal", "SendToFinance"], done


async def test_body_of_wrong_shape_is_400_naming_the_field(api: httpx.AsyncClient) -> None:
    await create_deal(api, "d1")
    r = await api.post(complete_url("d1", "SendToFinance"), json={"result": 5})
    assert fields(error(r, 400, 1000)) == ["result"]


async def test_body_with_unknown_field_is_400(api: httpx.AsyncClient) -> None:
    await create_deal(api, "d1")
    r = await api.post(complete_url("d1", "SendToFinance"), json={"bogus": 5})
    err = error(r, 400, 1000)
    assert "bogus" in err["details"][0]["problem"]


async def test_body_with_unknown_field_names_it_in_details(api: httpx.AsyncClient) -> None:
    await create_deal(api, "d1")
    r = await api.post(complete_url("d1", "SendToFinance"), json={"bogus": 5})
    assert fields(error(r, 400, 1000)) == ["bogus"]


async def test_case_data_not_an_object_is_400(api: httpx.AsyncClient) -> None:
    r = await api.post(f"{API}/workflows/deal-approval-gate/cases", json={"data": [1, 2]})
    assert fields(error(r, 400, 1000)) == ["data"]


@pytest.mark.parametrize("query, field", [
    ("limit=abc", "limit"), ("limit=0", "limit"), ("limit=100000", "limit"),
    ("state=bogus", "state"), ("created_after=notatime", "created_after"),
    ("created_before=yesterday", "created_before"), ("cursor=garbage", "cursor"),
    ("cursor=W10=", "cursor"),  # base64 of "[]": decodes, but is no cursor
])
async def test_bad_query_parameter_on_list_is_400(api: httpx.AsyncClient, query: str,
                                                  field: str) -> None:
    r = await api.get(f"{API}/cases?{query}")
    assert fields(error(r, 400, 1000)) == [field]


async def test_bad_time_range_on_metrics_is_400(api: httpx.AsyncClient) -> None:
    r = await api.get(f"{API}/workflows/deal-approval-gate/metrics?time_range=xyz")
    assert fields(error(r, 400, 1000)) == ["time_range"]


# ================================================================= 404: unknown things
async def test_unknown_workflow_on_create_is_404(api: httpx.AsyncClient) -> None:
    r = await api.post(f"{API}/workflows/no-such-workflow/cases", json={"data": deal()})
    assert fields(error(r, 404, 2001)) == ["workflow_id"]


async def test_unknown_workflow_on_metrics_is_404(api: httpx.AsyncClient) -> None:
    r = await api.get(f"{API}/workflows/no-such-workflow/metrics")
    assert fields(error(r, 404, 2001)) == ["workflow_id"]


@pytest.mark.parametrize("method, path", [
    ("GET", "/cases/no_such_case"),
    ("GET", "/cases/no_such_case/history"),
    ("POST", "/cases/no_such_case/tasks/SendToFinance/complete"),
])
async def test_unknown_case_is_404(api: httpx.AsyncClient, method: str, path: str) -> None:
    r = await api.request(method, API + path, json={} if method == "POST" else None)
    assert fields(error(r, 404, 2003)) == ["case_id"]


async def test_unknown_task_on_complete_is_404(api: httpx.AsyncClient) -> None:
    await create_deal(api, "d1")
    r = await api.post(complete_url("d1", "NoSuchTask"), json={})
    assert fields(error(r, 404, 2003)) == ["task"]


# ======================================================== 409: conflicts with the state
async def test_duplicate_case_id_is_409(api: httpx.AsyncClient) -> None:
    await create_deal(api, "d1")
    r = await api.post(f"{API}/workflows/deal-approval-gate/cases",
                       json={"case_id": "d1", "data": deal()})
    assert fields(error(r, 409, 2002)) == ["case_id"]


async def test_task_not_enabled_is_409(api: httpx.AsyncClient) -> None:
    await create_deal(api, "d1")
    before = await snapshot(api, "d1")
    r = await api.post(complete_url("d1", "AllApprovalsComplete"), json={})
    error(r, 409, 2003)
    assert await snapshot(api, "d1") == before


async def test_task_already_completed_is_409(api: httpx.AsyncClient) -> None:
    await create_deal(api, "d1")
    approve = {"result": "approved"}
    assert (await api.post(complete_url("d1", "SendToFinance"), json=approve)).status_code == 200
    r = await api.post(complete_url("d1", "SendToFinance"), json=approve)
    error(r, 409, 3004)


async def test_today_in_open_mode_asks_whose_day(api: httpx.AsyncClient) -> None:
    err = error(await api.get(f"{API}/today"), 400, 1000)
    assert fields(err) == ["user"] and "?user=" in err["message"]
    r = await api.get(f"{API}/today", params={"user": FINANCE})
    assert r.status_code == 200, r.text


async def test_a_day_or_worklist_cut_short_says_so(api: httpx.AsyncClient,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Each deal offers the finance manager one SendToFinance item.
    for n in range(3):
        await create_deal(api, f"d{n}")
    r = await api.get(f"{API}/today", params={"user": FINANCE})
    assert r.json()["truncated"] is False and len(r.json()["items"]) == 3, r.text
    r = await api.get(f"{API}/worklist", params={"user": FINANCE})
    assert r.json()["truncated"] is False and len(r.json()["items"]) == 3, r.text
    monkeypatch.setattr(today_module, "TODAY_LIMIT", 3)  # exactly as many: not cut
    monkeypatch.setattr(work_module, "WORKLIST_LIMIT", 3)
    r = await api.get(f"{API}/today", params={"user": FINANCE})
    assert r.json()["truncated"] is False and len(r.json()["items"]) == 3, r.text
    r = await api.get(f"{API}/worklist", params={"user": FINANCE})
    assert r.json()["truncated"] is False and len(r.json()["items"]) == 3, r.text
    monkeypatch.setattr(today_module, "TODAY_LIMIT", 2)
    monkeypatch.setattr(work_module, "WORKLIST_LIMIT", 2)
    r = await api.get(f"{API}/today", params={"user": FINANCE})
    assert r.json()["truncated"] is True and len(r.json()["items"]) == 2, r.text
    r = await api.get(f"{API}/worklist", params={"user": FINANCE})
    assert r.json()["truncated"] is True and len(r.json()["items"]) == 2, r.text


async def test_completing_a_task_of_a_workflow_the_case_has_left_is_409(
        api: httpx.AsyncClient) -> None:
    # A retried approval that raced the hand-on: "no such task" (404) would tell the
    # client its URL is wrong.
    await create_deal(api, "d1")
    approve = {"result": "approved"}
    for task in ("SendToSalesManager", "SendToFinance"):  # what a 40K deal needs
        assert (await api.post(complete_url("d1", task), json=approve)).status_code == 200
    with anyio.fail_after(10):  # the merge is an automatic task: it runs on its own
        while (await api.get(f"{API}/cases/d1")).json()["workflow_id"] == \
                "deal-approval-gate":
            await anyio.sleep(0.02)
    for action in ("complete", "start"):
        r = await api.post(f"{API}/cases/d1/tasks/SendToFinance/{action}", json={})
        err = error(r, 409, 3004)
        assert fields(err) == ["task"] and "deal-approval-gate" in err["message"]
    # A task the case never had is still unknown.
    error(await api.post(complete_url("d1", "NoSuchTask"), json=approve), 404, 2003)


@pytest.mark.parametrize("task, code", [("AllApprovalsComplete", 2003),
                                        ("SendToFinance", 3004)])
async def test_conflict_details_name_the_task(api: httpx.AsyncClient, task: str,
                                              code: int) -> None:
    await create_deal(api, "d1")
    approve = {"result": "approved"}
    assert (await api.post(complete_url("d1", "SendToFinance"), json=approve)).status_code == 200
    r = await api.post(complete_url("d1", task), json=approve)
    assert fields(error(r, 409, code)) == ["task"]


# ========================================================= 422: invalid data and specs
async def test_missing_required_case_field_is_422(api: httpx.AsyncClient) -> None:
    data = deal()
    del data["deal_acv"]
    r = await api.post(f"{API}/workflows/deal-approval-gate/cases", json={"data": data})
    assert fields(error(r, 422, 1002)) == ["deal_acv"]


@pytest.mark.parametrize(("workflow", "data", "field"), [
    ("deal-approval-gate", deal(deal_name=""), "deal_name"),
    ("deal-approval-gate", deal(deal_name="  \t "), "deal_name"),
    ("deal-approval-gate", deal(customer_name=" "), "customer_name"),
    ("lead-qualification", {"company_name": " ", "contact_email": "a@b.example"},
     "company_name"),
    ("lead-qualification", {"company_name": "B Co", "contact_email": ""}, "contact_email"),
])
async def test_a_blank_required_name_is_422_as_missing(
        api: httpx.AsyncClient, workflow: str, data: dict[str, Any], field: str) -> None:
    r = await api.post(f"{API}/workflows/{workflow}/cases", json={"case_id": "c1", "data": data})
    err = error(r, 422, 1002)
    assert fields(err) == [field] and "blank" in err["message"], err
    assert (await api.get(f"{API}/cases/c1")).status_code == 404  # nothing was created


@pytest.mark.parametrize("acv", [0, -5000])
async def test_acv_not_positive_is_422(api: httpx.AsyncClient, acv: float) -> None:
    r = await api.post(f"{API}/workflows/deal-approval-gate/cases",
                       json={"case_id": "d1", "data": deal(acv=acv)})
    assert fields(error(r, 422, 1003)) == ["deal_acv"]
    assert (await api.get(f"{API}/cases/d1")).status_code == 404  # nothing was created


async def test_spec_with_unknown_task_in_a_flow_is_422_located(api: httpx.AsyncClient) -> None:
    spec = {"id": "broken-flow", "tasks": [{"id": "A", "role": "sdr"}],
            "flows": [{"from": "start", "to": "A"}, {"from": "A", "to": "Nope"}]}
    err = error(await api.post(f"{API}/workflows", json=spec), 422, 2000)
    assert "/flows/1/to" in fields(err)
    assert "Nope" in dict(zip(fields(err), (d["problem"] for d in err["details"]),
                              strict=True))["/flows/1/to"]


async def test_spec_with_guard_that_does_not_parse_is_422_located(
        api: httpx.AsyncClient) -> None:
    spec = json.loads(json.dumps(GUARDED))
    spec["id"] = "broken-guard"
    spec["flows"][1]["when"] = "deal_acv >>> ("
    err = error(await api.post(f"{API}/workflows", json=spec), 422, 2000)
    assert fields(err) == ["/flows/1/when"]


@pytest.mark.parametrize("body, field", [
    (b'{"hello": 1}', "/"),  # JSON, but no spec
    (b"[1, 2, 3]", "body"),  # not a mapping
    (b"just: [yaml", "body"),  # not even YAML
])
async def test_not_a_spec_is_422(api: httpx.AsyncClient, body: bytes, field: str) -> None:
    err = error(await api.post(f"{API}/workflows", content=body), 422, 2000)
    assert fields(err) == [field]


@pytest.mark.parametrize("wid", ["../../etc", "deal approval", "", "-x", "a/b", "x" * 129])
async def test_a_workflow_id_no_url_could_name_is_422(api: httpx.AsyncClient,
                                                      wid: str) -> None:
    spec = {"id": wid, "tasks": [{"id": "A"}],
            "flows": [{"from": "start", "to": "A"}, {"from": "A", "to": "end"}]}
    assert fields(error(await api.post(f"{API}/workflows", json=spec), 422, 2000)) == ["/id"]
    await register(api, {**spec, "id": "deal-approval_v2.1"})


BILLION_LAUGHS = b"""id: laughs
metadata:
  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]
  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
  d: [*c, *c, *c, *c, *c, *c, *c, *c, *c]
tasks: [{id: A, role: sdr}]
flows: [{from: start, to: A}, {from: A, to: end}]
"""


async def test_yaml_spec_with_aliases_is_422_located(api: httpx.AsyncClient) -> None:
    """Aliases are how a few hundred bytes of YAML expand to gigabytes ("billion
    laughs"); a spec never needs them, so the first one is refused where it stands."""
    err = error(await api.post(f"{API}/workflows", content=BILLION_LAUGHS), 422, 2000)
    assert fields(err) == ["/metadata/b/0"]
    assert "alias" in err["details"][0]["problem"]
    assert (await api.get(f"{API}/workflows/laughs")).status_code == 404  # nothing stored
    anchored = (b"id: anchored\nmetadata: {a: &a [lol]}\ntasks: [{id: A, role: sdr}]\n"
                b"flows: [{from: start, to: A}, {from: A, to: end}]\n")
    r = await api.post(f"{API}/workflows", content=anchored)  # an anchor alone repeats nothing
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("depth", [65, 900])
async def test_a_yaml_spec_nested_too_deeply_is_422_before_the_recursion_limit(
        api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, depth: int) -> None:
    """PyYAML composes a level in a few frames: refused at 64 levels, the parse never
    comes near the recursion limit (where a finalizer run by the collector would have
    no stack left for its own errors)."""
    deepest: list[int] = []
    real = yaml.composer.Composer.compose_node

    def compose_node(self: Any, parent: Any, index: Any) -> Any:
        deepest.append(len(inspect.stack(0)))
        return real(self, parent, index)

    monkeypatch.setattr(yaml.composer.Composer, "compose_node", compose_node)
    body = b"id: deep\nmetadata: " + b"[" * depth + b"]" * depth + b"\n"
    err = error(await api.post(f"{API}/workflows", content=body), 422, 2000)
    assert fields(err) == ["/metadata" + "/0" * 63]
    assert "nested deeper than 64 levels" in err["details"][0]["problem"]
    assert max(deepest) < sys.getrecursionlimit() // 2
    assert (await api.get(f"{API}/workflows/deep")).status_code == 404


def wide(n: int) -> dict[str, Any]:
    """One AND-split into n tasks joined again: 2**n markings, each n firings wide."""
    names = [f"T{i}" for i in range(n)]
    return {"id": f"wide-{n}", "tasks": [{"id": "Fork", "role": "sdr", "split": "and"},
                                         {"id": "Join", "role": "sdr", "join": "and"}]
            + [{"id": t, "role": "sdr"} for t in names],
            "flows": [{"from": "start", "to": "Fork"}, {"from": "Join", "to": "end"}]
            + [{"from": "Fork", "to": t} for t in names]
            + [{"from": t, "to": "Join"} for t in names]}


async def test_a_wide_spec_registers_in_bounded_time_without_stalling_the_server(
        api: httpx.AsyncClient) -> None:
    """100 parallel tasks (9 KB) held the server for 31 s while their soundness was
    checked: the check now gives up past a work bound, on a worker thread, so other
    requests are answered meanwhile."""
    answered: list[float] = []  # when each /health answer arrived
    done = anyio.Event()

    async def register_wide() -> httpx.Response:
        try:
            return await api.post(f"{API}/workflows", json=wide(100))
        finally:
            done.set()

    async def poll_health() -> None:
        while not done.is_set():
            assert (await api.get("/health")).status_code == 200
            answered.append(time.monotonic())
            await anyio.sleep(0.01)

    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(poll_health)
        r = await register_wide()
    took = time.monotonic() - started
    assert r.status_code == 201, r.text
    assert "steps of work" in r.json()["warnings"][0]
    assert took < 20, f"registration took {took:.1f} s"
    # Blocking the event loop for the check would leave a gap as long as the check.
    gaps = [b - a for a, b in itertools.pairwise([started, *answered])]
    assert len(answered) >= 3 and max(gaps) < took / 2, (took, gaps)
    more = error(await api.post(f"{API}/workflows", json=wide(200)), 422, 2000)
    assert fields(more) == ["/tasks"]  # 602 tasks and conditions: refused unchecked


async def test_a_hand_over_to_an_unregistered_workflow_is_a_warning(
        api: httpx.AsyncClient) -> None:
    spec = {"id": "t8", "on_complete": [{"workflow": "nope"}], "tasks": [{"id": "A"}],
            "flows": [{"from": "start", "to": "A"}, {"from": "A", "to": "end"}]}
    r = await api.post(f"{API}/workflows", json=spec)
    assert r.status_code == 201, r.text
    assert [w for w in r.json()["warnings"] if "'nope'" in w], r.json()
    r = await api.post(f"{API}/workflows", json={**spec, "id": "t9",
                                                  "on_complete": [{"workflow": "t8"}]})
    assert r.json()["warnings"] == [], r.json()


async def test_guard_failed_is_422_and_leaves_the_case(api: httpx.AsyncClient) -> None:
    await register(api, GUARDED)
    r = await api.post(f"{API}/workflows/guarded-split/cases", json={"case_id": "g1"})
    assert r.status_code == 201, r.text
    before = await snapshot(api, "g1")
    r = await api.post(complete_url("g1", "Check"), json={})
    assert fields(error(r, 422, 2004)) == ["missing_field"]
    assert await snapshot(api, "g1") == before


@pytest.mark.parametrize("result", ["Rejected", "REJECT", "approve", None])
async def test_a_result_the_task_does_not_take_is_422_and_changes_nothing(
        api: httpx.AsyncClient, result: str | None) -> None:
    # The gate's routes send anything but 'rejected' to approval: a misspelt rejection
    # must not approve the deal.
    await create_deal(api, "d1")
    before = await snapshot(api, "d1")
    r = await api.post(complete_url("d1", "SendToFinance"),
                       json={} if result is None else {"result": result})
    err = error(r, 422, 2003)
    assert fields(err) == ["result"]
    assert "'approved' or 'rejected'" in err["message"]
    assert await snapshot(api, "d1") == before
    r = await api.post(complete_url("d1", "SendToFinance"), json={"result": "rejected"})
    assert r.status_code == 200, r.text
    assert (await api.get(f"{API}/cases/d1")).json()["data"]["approval_status"] == "rejected"


async def test_an_approval_that_would_rewrite_the_deal_figures_is_422(
        api: httpx.AsyncClient) -> None:
    # Found by an audit: legal counsel raised the ACV and discount the other approvers had
    # signed off, the executive approval was never asked for, and the deal went on.
    await create_deal(api, "d1", acv=200000, discount=0.10)
    before = await snapshot(api, "d1")
    r = await api.post(complete_url("d1", "SendToLegal"), json={
        "result": "approved", "output_data": {"deal_acv": 5000000, "discount_percent": 0.9}})
    err = error(r, 422, 2003)
    assert fields(err) in (["output_data.deal_acv"], ["output_data.discount_percent"])
    assert await snapshot(api, "d1") == before


# ========================================================= 403: authority (open mode)
async def test_person_without_the_role_is_403(api: httpx.AsyncClient) -> None:
    await create_deal(api, "d1")
    before = await snapshot(api, "d1")
    r = await api.post(complete_url("d1", "SendToFinance"), json={"result": "approved"},
                       headers=as_user(SDR))
    assert fields(error(r, 403, 3002)) == ["completed_by"]
    assert await snapshot(api, "d1") == before


async def test_completed_by_without_the_role_is_403(api: httpx.AsyncClient) -> None:
    await create_deal(api, "d1")
    r = await api.post(complete_url("d1", "SendToFinance"),
                       json={"result": "approved", "completed_by": SDR})
    assert fields(error(r, 403, 3002)) == ["completed_by"]


async def test_discount_above_the_persons_limit_is_403_and_changes_nothing(
        api: httpx.AsyncClient) -> None:
    await create_deal(api, "d1", discount=0.2)
    before = await snapshot(api, "d1")
    r = await api.post(complete_url("d1", "SendToFinance"), json={"result": "approved"},
                       headers=as_user(FINANCE))
    err = error(r, 403, 3002)
    assert fields(err) == ["authority.discount"]
    assert "0.15" in err["message"] and "0.2" in err["message"]
    assert await snapshot(api, "d1") == before
    assert "SendToFinance" in before[1]


async def test_discount_within_the_persons_limit_is_allowed(api: httpx.AsyncClient) -> None:
    await create_deal(api, "d1", discount=0.1)
    r = await api.post(complete_url("d1", "SendToFinance"), json={"result": "approved"},
                       headers=as_user(FINANCE))
    assert r.status_code == 200, r.text
    assert "SendToFinance" not in r.json()["enabled_tasks"]


async def test_unlimited_person_may_complete_above_any_limit(api: httpx.AsyncClient) -> None:
    await create_deal(api, "d1", discount=0.2)
    r = await api.post(complete_url("d1", "SendToFinance"), json={"result": "approved"},
                       headers=as_user(CFO))
    assert r.status_code == 200, r.text
    assert "SendToFinance" not in r.json()["enabled_tasks"]
    events = (await api.get(f"{API}/cases/d1/history")).json()["events"]
    done = [e for e in events if e["type"] == "TaskCompleted" and e["task"] == "SendToFinance"]
    assert [e["by"] for e in done] == [CFO]


async def test_claim_without_the_role_names_started_by(api: httpx.AsyncClient) -> None:
    await create_deal(api, "d1")
    r = await api.post(f"{API}/cases/d1/tasks/SendToFinance/start", json={"started_by": SDR})
    assert fields(error(r, 403, 3002)) == ["started_by"]


async def test_unknown_person_is_403(api: httpx.AsyncClient) -> None:
    await create_deal(api, "d1")
    r = await api.post(complete_url("d1", "SendToFinance"), json={},
                       headers=as_user("mallory@evil.example"))
    assert fields(error(r, 403, 3002)) == ["completed_by"]


async def test_person_completing_an_automatic_task_is_403(api: httpx.AsyncClient) -> None:
    await register(api, AUTOMATIC)
    r = await api.post(f"{API}/workflows/automatic-only/cases", json={"case_id": "a1"})
    assert r.status_code == 201, r.text
    r = await api.post(complete_url("a1", "Run"), json={}, headers=as_user(CFO))
    assert fields(error(r, 403, 3002)) == ["task"]


async def test_a_workflow_entered_by_hand_over_is_not_started_directly(
        api: httpx.AsyncClient) -> None:
    # Found by an audit: an SDR started contract-processing with approval_status
    # 'approved', and the deal skipped its approvals.
    deal_data = {**deal(), "approval_status": "approved"}
    url = f"{API}/workflows/contract-processing/cases"
    r = await api.post(url, json={"case_id": "c1", "data": deal_data}, headers=as_user(SDR))
    err = error(r, 403, 3002)
    assert fields(err) == ["workflow_id"] and "hand-over" in err["message"]
    assert (await api.get(f"{API}/cases/c1")).status_code == 404
    for who in (as_user(CFO), {}):  # manage_workflows; open mode's operator has it too
        r = await api.post(url, json={"data": deal_data}, headers=who)
        assert r.status_code == 201, r.text


async def test_cancel_needs_the_permission(api: httpx.AsyncClient) -> None:
    await create_deal(api, "d1")
    before = await snapshot(api, "d1")
    r = await api.post(f"{API}/cases/d1/cancel", json={"reason": "lost"},
                       headers=as_user(SDR))
    assert fields(error(r, 403, 3002)) == ["X-Caseloop-User"]
    assert await snapshot(api, "d1") == before
    r = await api.post(f"{API}/cases/d1/cancel", json={"reason": "lost"},
                       headers=as_user(MANAGER))
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "cancelled"


# ============================================================= 401/403: token mode
@pytest.fixture
def tokens(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """Tokens minted by `caseloop token create` for an sdr, james and lisa."""
    path = tmp_path / "tokens.yaml"
    out: dict[str, Any] = {"file": str(path)}
    for user in (SDR, FINANCE, CFO):
        assert cli_main(["token", "create", user, "--tokens", str(path),
                         "--roles", str(SPECS / "roles.yaml")]) == 0
        out[user] = capsys.readouterr().out.split()[0]
    assert all(t not in path.read_text() for t in out.values() if t != out["file"])
    return out


@pytest.fixture
async def secured(tmp_path: pathlib.Path,
                  tokens: dict[str, Any]) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(tmp_path, tokens=tokens["file"]) as client:
        r = await client.post(f"{API}/workflows/deal-approval-gate/cases",
                              json={"case_id": "d1", "data": deal()},
                              headers=bearer(tokens[SDR]))
        assert r.status_code == 201, r.text
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_token_mode_without_a_token_is_401(secured: httpx.AsyncClient) -> None:
    r = await secured.post(complete_url("d1", "SendToFinance"), json={})
    assert fields(error(r, 401, 3001)) == ["Authorization"]
    assert r.headers["WWW-Authenticate"].lower().startswith("bearer")
    assert (await secured.get(f"{API}/cases")).status_code == 401


async def test_token_mode_ignores_the_open_mode_user_header(
        secured: httpx.AsyncClient) -> None:
    r = await secured.post(complete_url("d1", "SendToFinance"), json={},
                           headers=as_user(FINANCE))
    error(r, 401, 3001)


@pytest.mark.parametrize("auth", ["Bearer cl_not-a-token", "Bearer ", "Basic Zm9vOmJhcg==",
                                  "cl_not-a-token"])
async def test_token_mode_with_a_wrong_token_is_401(secured: httpx.AsyncClient,
                                                    auth: str) -> None:
    r = await secured.post(complete_url("d1", "SendToFinance"), json={},
                           headers={"Authorization": auth})
    assert fields(error(r, 401, 3001)) == ["Authorization"]
    assert "WWW-Authenticate" in r.headers


async def test_token_of_a_person_without_the_role_is_403(secured: httpx.AsyncClient,
                                                         tokens: dict[str, Any]) -> None:
    r = await secured.post(complete_url("d1", "SendToFinance"), json={},
                           headers=bearer(tokens[SDR]))
    assert fields(error(r, 403, 3002)) == ["completed_by"]


async def test_a_permission_refused_in_token_mode_names_the_token(
        secured: httpx.AsyncClient, tokens: dict[str, Any]) -> None:
    # The person came from the token, not from an X-Caseloop-User header (open mode's).
    r = await secured.post(f"{API}/cases/d1/cancel", json={}, headers=bearer(tokens[SDR]))
    assert fields(error(r, 403, 3002)) == ["Authorization"]
    assert (await secured.get(f"{API}/cases/d1", headers=bearer(tokens[SDR]))
            ).json()["state"] == "active"


async def test_token_of_the_finance_manager_may_complete(secured: httpx.AsyncClient,
                                                         tokens: dict[str, Any]) -> None:
    r = await secured.post(complete_url("d1", "SendToFinance"), json={"result": "approved"},
                           headers=bearer(tokens[FINANCE]))
    assert r.status_code == 200, r.text
    events = (await secured.get(f"{API}/cases/d1/history",
                                headers=bearer(tokens[FINANCE]))).json()["events"]
    assert [e["by"] for e in events if e["type"] == "TaskCompleted"] == [FINANCE]


async def test_token_cannot_act_as_someone_else(secured: httpx.AsyncClient,
                                                tokens: dict[str, Any]) -> None:
    r = await secured.post(complete_url("d1", "SendToFinance"),
                           json={"result": "approved", "completed_by": CFO},
                           headers=bearer(tokens[FINANCE]))
    assert fields(error(r, 403, 3002)) == ["completed_by"]
    case = (await secured.get(f"{API}/cases/d1", headers=bearer(tokens[FINANCE]))).json()
    assert "SendToFinance" in case["enabled_tasks"]


@pytest.mark.parametrize("path", ["/health", "/healthz", "/health/ready"])
async def test_health_stays_open_in_token_mode(secured: httpx.AsyncClient, path: str) -> None:
    r = await secured.get(path)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ok"


# ==================================================================== Idempotency-Key
async def test_idempotent_create_replays_the_answer(api: httpx.AsyncClient) -> None:
    url = f"{API}/workflows/deal-approval-gate/cases"
    body = {"data": deal()}  # no case_id: without the key, a second case would be created
    first = await api.post(url, json=body, headers={"Idempotency-Key": "create-1"})
    second = await api.post(url, json=body, headers={"Idempotency-Key": "create-1"})
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    assert (second.status_code, second.content) == (first.status_code, first.content)
    assert second.headers["Idempotent-Replayed"] == "true"
    cases = (await api.get(f"{API}/cases?workflow=deal-approval-gate")).json()["cases"]
    assert [c["case_id"] for c in cases] == [first.json()["case_id"]]


async def test_idempotency_key_with_another_body_is_422(api: httpx.AsyncClient) -> None:
    url = f"{API}/workflows/deal-approval-gate/cases"
    r = await api.post(url, json={"data": deal()}, headers={"Idempotency-Key": "k"})
    assert r.status_code == 201, r.text
    r = await api.post(url, json={"data": deal(acv=99)}, headers={"Idempotency-Key": "k"})
    assert fields(error(r, 422, 1004)) == ["Idempotency-Key"]
    cases = (await api.get(f"{API}/cases")).json()["cases"]
    assert len(cases) == 1


async def test_idempotent_complete_replays_200_not_3004(api: httpx.AsyncClient) -> None:
    await create_deal(api, "d1")
    headers = {"Idempotency-Key": "complete-1"}
    first = await api.post(complete_url("d1", "SendToFinance"), json={"result": "approved"},
                           headers=headers)
    assert first.status_code == 200, first.text
    events = len((await api.get(f"{API}/cases/d1/history")).json()["events"])
    again = await api.post(complete_url("d1", "SendToFinance"), json={"result": "approved"},
                           headers=headers)
    assert (again.status_code, again.content) == (200, first.content)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len((await api.get(f"{API}/cases/d1/history")).json()["events"]) == events
    # without the key the same request is a second completion: refused
    r = await api.post(complete_url("d1", "SendToFinance"), json={"result": "approved"})
    error(r, 409, 3004)


async def test_concurrent_requests_with_one_key_create_one_case(
        api: httpx.AsyncClient) -> None:
    url = f"{API}/workflows/deal-approval-gate/cases"
    answers: list[httpx.Response] = []

    async def post() -> None:
        answers.append(await api.post(url, json={"data": deal()},
                                      headers={"Idempotency-Key": "burst"}))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(post)
    assert len(answers) == 5
    assert {(a.status_code, a.content) for a in answers} == {(201, answers[0].content)}
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 4
    cases = (await api.get(f"{API}/cases")).json()["cases"]
    assert [c["case_id"] for c in cases] == [answers[0].json()["case_id"]]


# ========================================================== the virtual clock's limits
MONDAY = 1_741_000_000.0  # 2025-03-03, a Monday


@pytest.fixture
async def virtual(tmp_path: pathlib.Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app in open mode on a virtual clock (`serve --virtual-clock`)."""
    async with in_process(tmp_path, virtual_clock=MONDAY) as client:
        yield client


@pytest.mark.parametrize("body, field", [
    ({"by": "999999999999w"}, "by"),  # once moved the clock past year 9999, for good
    ({"by": "9" * 400}, "by"),  # infinitely many seconds
    ({"by": "5300w"}, "by"),  # a little over a century
    ({"to": "9999-12-31T00:00:00Z"}, "to"),
])
async def test_advancing_the_clock_too_far_is_422_and_leaves_it(
        virtual: httpx.AsyncClient, body: dict[str, str], field: str) -> None:
    before = (await virtual.get(f"{API}/clock")).json()["now"]
    err = error(await virtual.post(f"{API}/clock/advance", json=body), 422, 1000)
    assert fields(err) == [field]
    r = await virtual.get(f"{API}/clock")  # answered 500 forever once the date overflowed
    assert r.status_code == 200 and r.json()["now"] == before, r.text
    await create_deal(virtual, "after")
    r = await virtual.post(f"{API}/clock/advance", json={"by": "5200w"})  # 99.7 years
    assert r.status_code == 200 and r.json()["now"].startswith("2124-"), r.text
    assert (await virtual.get(f"{API}/cases/after")).status_code == 200


async def test_advancing_the_clock_needs_the_advance_clock_permission(
        virtual: httpx.AsyncClient) -> None:
    r = await virtual.post(f"{API}/clock/advance", json={"by": "1h"}, headers=as_user(SDR))
    assert fields(error(r, 403, 3002)) == ["X-Caseloop-User"]
    r = await virtual.post(f"{API}/clock/advance", json={"by": "1h"},
                           headers=as_user(CFO))  # manage_policies and more, not this
    assert fields(error(r, 403, 3002)) == ["X-Caseloop-User"]
    r = await virtual.post(f"{API}/clock/advance", json={"by": "1h"})  # the local operator
    assert r.status_code == 200, r.text


async def test_advancing_the_system_clock_is_404_not_an_unknown_workflow(
        api: httpx.AsyncClient) -> None:
    err = error(await api.post(f"{API}/clock/advance", json={"by": "1h"}), 404, 1000)
    assert fields(err) == ["clock"]


async def test_empty_idempotency_key_is_400(api: httpx.AsyncClient) -> None:
    r = await api.post(f"{API}/workflows/deal-approval-gate/cases", json={"data": deal()},
                       headers={"Idempotency-Key": ""})
    assert fields(error(r, 400, 1000)) == ["Idempotency-Key"]


# ====================================================== bad input is never answered 500
@pytest.mark.parametrize("path", ["/workflows/deal-approval-gate/cases", "/workflows",
                                  "/cases/d1/tasks/SendToFinance/complete"])
async def test_huge_body_is_413(api: httpx.AsyncClient, path: str) -> None:
    await create_deal(api, "d1")
    huge = b'{"data": {"deal_name": "' + b"x" * (2 << 20) + b'"}}'
    r = await api.post(API + path, content=huge)
    assert fields(error(r, 413, 1000)) == ["body"]


@pytest.mark.parametrize("path", ["/workflows/deal-approval-gate/cases", "/workflows"])
@pytest.mark.parametrize("key", [None, "chunked-1"])  # the Idempotency-Key wrapper reads too
async def test_huge_chunked_body_is_413_before_it_is_all_read(
        api: httpx.AsyncClient, path: str, key: str | None) -> None:
    """A body without Content-Length is refused as soon as it passes MAX_BODY, not after
    the server has held all of it (a 1.5 GB chunked upload once took 3.1 GB of memory)."""
    chunk, sent = b" " * (64 << 10), 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(256):  # 16 MiB, 16 times the limit
            sent += len(chunk)
            yield chunk

    headers = {"Idempotency-Key": key} if key else {}
    r = await api.post(API + path, content=endless(), headers=headers)
    assert "content-length" not in r.request.headers
    assert fields(error(r, 413, 1000)) == ["body"]
    assert sent <= MAX_BODY + 2 * len(chunk), f"read {sent} bytes before refusing"


async def test_invalid_utf8_workflow_registration_is_400(api: httpx.AsyncClient) -> None:
    r = await api.post(f"{API}/workflows", content=b'{"id": "caf\xe9", "tasks": []}')
    assert fields(error(r, 400, 1000)) == ["body"]


async def test_invalid_utf8_json_body_is_400(api: httpx.AsyncClient) -> None:
    r = await api.post(f"{API}/workflows/deal-approval-gate/cases",
                       content=b'{"data": {"deal_name": "caf\xe9"}}')
    assert fields(error(r, 400, 1000)) == ["body"]


@pytest.mark.parametrize("case_id", ["has spaces", "x" * 300, "", "slash/inside",
                                     "tab\tinside", "ünïcode"])
async def test_case_id_breaking_the_pattern_is_400(api: httpx.AsyncClient,
                                                   case_id: str) -> None:
    r = await api.post(f"{API}/workflows/deal-approval-gate/cases",
                       json={"case_id": case_id, "data": deal()})
    assert fields(error(r, 400, 1000)) == ["case_id"]


@pytest.mark.parametrize("body", [b"null", b"[]", b"42", b'"text"', b"{}{}", b"\x00\x01"])
async def test_body_not_an_object_is_400(api: httpx.AsyncClient, body: bytes) -> None:
    r = await api.post(f"{API}/workflows/deal-approval-gate/cases", content=body)
    error(r, 400, 1000)


@pytest.mark.parametrize("path, body", [
    ("/workflows/deal-approval-gate/cases",
     b'{"data": {"deal_name": "x", "customer_name": "y", "deal_acv": 1000, "deep": '
     + b"[" * 2000 + b"]" * 2000 + b"}}"),
    ("/workflows", b"[" * 1000 + b"]" * 1000),  # JSON
    ("/workflows", b"a: " + b"[" * 1000),  # YAML, unclosed
], ids=["case-data", "spec-json", "spec-yaml"])
async def test_deeply_nested_body_is_4xx(api: httpx.AsyncClient, path: str,
                                         body: bytes) -> None:
    r = await api.post(API + path, content=body)
    assert r.status_code in (400, 422), r.text
    assert fields(error(r, r.status_code, r.json()["error"]["code"])) != []


async def test_unknown_route_is_404_json(api: httpx.AsyncClient) -> None:
    r = await api.get(f"{API}/no/such/route")
    assert fields(error(r, 404, 1000)) == ["path"]


# ================================================= the CLI will not serve open to all
def test_serve_on_all_interfaces_without_tokens_exits_2(tmp_path: pathlib.Path) -> None:
    # A tokens file given but missing is refused on any address: test_serve_tokens.py
    env = {k: v for k, v in os.environ.items() if k != "CASELOOP_TOKENS"}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "adapters.cli", "serve", "--host", "0.0.0.0", "--port", "0",
         "--db", str(tmp_path / "t.db"), "--specs", str(SPECS)],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=20)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "pass --tokens FILE" in proc.stderr
    assert "0.0.0.0" in proc.stderr
    assert time.monotonic() - started < 20
    assert not (tmp_path / "t.db").exists()  # refused before opening anything


# ====================================================== found in review: hardening tests
async def test_an_approver_cannot_lower_or_blank_the_figure_they_approve(
        api: httpx.AsyncClient) -> None:
    await create_deal(api, "d_disc", discount=0.3)
    before = await snapshot(api, "d_disc")
    james = as_user("james.rodriguez@acme.com")  # finance_manager: discount limit 0.15
    for output in ({"discount_percent": 0.01}, {"discount_percent": None},
                   {"discount_percent": "0.01"}):
        r = await api.post(complete_url("d_disc", "SendToFinance"), headers=james,
                           json={"result": "approved", "output_data": output})
        assert r.status_code in (403, 422), (output, r.text)
    assert await snapshot(api, "d_disc") == before
    # ... and cannot approve the old figure while writing a larger one
    await create_deal(api, "d_small", discount=0.05)
    r = await api.post(complete_url("d_small", "SendToFinance"), headers=james,
                       json={"result": "approved", "output_data": {"discount_percent": 0.4}})
    assert "authority.discount" in fields(error(r, 403, 3002))


async def test_output_that_breaks_the_data_schema_is_refused(api: httpx.AsyncClient) -> None:
    await create_deal(api, "d_schema")
    before = await snapshot(api, "d_schema")
    r = await api.post(complete_url("d_schema", "SendToFinance"),
                       json={"result": "approved", "output_data": {"margin_percent": "lots"}})
    assert fields(error(r, 422, 1001)) == ["margin_percent"]
    assert await snapshot(api, "d_schema") == before


async def test_integer_beyond_64_bits_is_400_and_the_store_keeps_writing(
        api: httpx.AsyncClient) -> None:
    r = await api.post(f"{API}/workflows/deal-approval-gate/cases",
                       content=b'{"case_id": "d_big", "data": {"deal_name": "x", '
                               b'"customer_name": "y", "deal_acv": 5, "n": {"k": '
                               + str(2**70).encode() + b"}}}")
    assert fields(error(r, 400, 1000)) == ["data.n.k"]
    await create_deal(api, "d_after")
    assert (await api.get("/health/ready")).status_code == 200


async def test_announced_oversized_body_is_refused_before_it_is_read(
        api: httpx.AsyncClient) -> None:
    r = await api.post(f"{API}/workflows", content=b"{}",
                       headers={"Content-Length": str(10**9)})
    assert fields(error(r, 413, 1000)) == ["body"]


async def test_open_mode_refuses_cross_site_and_foreign_host_requests(
        api: httpx.AsyncClient) -> None:
    await create_deal(api, "d_csrf")
    before = await snapshot(api, "d_csrf")
    url = complete_url("d_csrf", "SendToFinance")
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Host": "evil.example"}):
        r = await api.post(url, headers=headers, content=b'{"result": "approved"}')
        error(r, 403, 3002)
    assert await snapshot(api, "d_csrf") == before
    r = await api.post(url, headers={"Origin": "http://127.0.0.1:8080"},
                       content=b'{"result": "approved"}')
    assert r.status_code == 200, r.text


async def test_open_mode_refuses_an_unreadable_origin_with_403_not_500(
        api: httpx.AsyncClient) -> None:
    # urlsplit raises on an unclosed IPv6 bracket: every request carrying such an
    # Origin was a 500 with a traceback in the log.
    await create_deal(api, "d_origin")
    before = await snapshot(api, "d_origin")
    url = complete_url("d_origin", "SendToFinance")
    for origin in ("http://[abc", "http://[::1"):
        r = await api.post(url, headers={"Origin": origin}, content=b'{"result": "approved"}')
        assert fields(error(r, 403, 3002)) == ["Origin"]
        error(await api.get(f"{API}/cases", headers={"Origin": origin}), 403, 3002)
    assert await snapshot(api, "d_origin") == before


async def test_a_case_id_of_dots_is_refused_as_no_url_can_reach_it(
        api: httpx.AsyncClient) -> None:
    for case_id in (".", "..", "..."):
        r = await api.post(f"{API}/workflows/deal-approval-gate/cases",
                           json={"case_id": case_id, "data": deal()})
        assert fields(error(r, 400, 1000)) == ["case_id"]
    assert (await api.get(f"{API}/cases")).json()["cases"] == []
    # Why: httpx (the client's transport), as curl and browsers, resolves the dots.
    assert httpx.URL("http://127.0.0.1/api/v1/cases/../tasks/T/complete").path == \
        "/api/v1/tasks/T/complete"
    r = await api.post(f"{API}/workflows/deal-approval-gate/cases",
                       json={"case_id": "a..b", "data": deal()})
    assert r.status_code == 201, r.text


async def test_spec_version_beyond_range_is_422_not_500(api: httpx.AsyncClient) -> None:
    r = await api.post(f"{API}/workflows", json={**GUARDED, "version": 2**63})
    assert fields(error(r, 422, 2000)) == ["/version"]


async def test_retrying_failed_work_needs_the_permission(api: httpx.AsyncClient) -> None:
    r = await api.post(f"{API}/incidents/d1/1/retry", headers=as_user("sarah.chen@acme.com"))
    error(r, 403, 3002)
    r = await api.post(f"{API}/incidents/d1/1/retry",
                       headers=as_user("james.rodriguez@acme.com"))
    error(r, 404, 2003)  # allowed to retry; there is just nothing to retry


def test_a_token_for_the_operator_or_a_stranger_is_refused(tmp_path: pathlib.Path) -> None:
    from adapters.people import OPERATOR, load_directory, load_tokens, token_digest

    directory = load_directory(SPECS / "roles.yaml")
    for who in (OPERATOR, "mallory@example.com"):
        f = tmp_path / f"{who}.yaml"
        f.write_text(f"tokens: {{{token_digest('t')}: {who}}}\n", encoding="utf-8")
        with pytest.raises(ValueError, match="not a person"):
            load_tokens(f, directory)
