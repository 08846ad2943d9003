"""Who may change what every case runs, as against working a case: registering a
workflow needs `manage_workflows`, moving a virtual clock `advance_clock` (roles.yaml),
and a spec posted is the spec new cases take -- an older version's too.

The real app (create_app, its lifespan, a SQLite file under tmp_path, the shipped specs
and roles.yaml) in-process through httpx.ASGITransport, in open mode; the token-mode
case is the reported one, against a real `caseloop serve` with bearer tokens.
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from http_kit import SPECS, Server, in_process, make_tokens

pytestmark = pytest.mark.anyio

API = "/api/v1"
GATE = "deal-approval-gate"
SDR = "sarah.chen@acme.com"
DIRECTOR = "olivia.bennett@acme.com"  # manage_policies, not manage_workflows
CFO = "lisa.wong@acme.com"  # manage_workflows
CEO = "ceo@acme.com"  # acts as the cfo
ONE_TASK = {"id": GATE, "tasks": [{"id": "A"}],  # the gate with every approval cut out
            "flows": [{"from": "start", "to": "A"}, {"from": "A", "to": "end"}]}
DEAL = {"deal_name": "TechCorp", "customer_name": "TechCorp", "deal_acv": 120000,
        "discount_percent": 0}
START = dt.datetime(2025, 11, 17, 9, tzinfo=dt.UTC).timestamp()


@pytest.fixture
async def api(tmp_path: pathlib.Path) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(tmp_path) as client:
        yield client


def as_user(user: str) -> dict[str, str]:
    return {"X-Caseloop-User": user}


def refused(r: httpx.Response, field: str) -> None:
    """The 403 every permission refusal answers with: code 3002, located."""
    assert r.status_code == 403, r.text
    err = r.json()["error"]
    assert err["code"] == 3002, err
    assert [d["field"] for d in err["details"]] == [field], err


async def new_deal(api: httpx.AsyncClient, case_id: str,
                   headers: dict[str, str] | None = None) -> dict[str, Any]:
    r = await api.post(f"{API}/workflows/{GATE}/cases", json={"case_id": case_id,
                                                             "data": DEAL}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


# ------------------------------------------------------------ registering a workflow
async def test_registering_a_workflow_needs_manage_workflows(api: httpx.AsyncClient) -> None:
    for user in (SDR, DIRECTOR):
        r = await api.post(f"{API}/workflows", json=ONE_TASK, headers=as_user(user))
        refused(r, "X-Caseloop-User")
        assert "manage_workflows" in r.json()["error"]["message"]
    detail = (await api.get(f"{API}/workflows/{GATE}")).json()
    assert [v["version"] for v in detail["versions"]] == [1]
    case = await new_deal(api, "d1")
    assert case["workflow_version"] == 1 and "A" not in case["enabled_tasks"]
    for user, version in ((CFO, 2), (CEO, 3)):  # the cfo, and the ceo acting as one
        spec = {**ONE_TASK, "description": f"cut by {user}"}
        r = await api.post(f"{API}/workflows", json=spec, headers=as_user(user))
        assert r.status_code == 201, r.text
        assert r.json()["version"] == version


async def test_the_local_operator_of_open_mode_may_register(api: httpx.AsyncClient) -> None:
    r = await api.post(f"{API}/workflows", json=ONE_TASK)
    assert (r.status_code, r.json()["version"]) == (201, 2), r.text


def test_a_token_without_the_permission_cannot_replace_the_gate(
        tmp_path: pathlib.Path) -> None:
    """The report: an SDR's bearer token posted a one-task gate and got 201; new deals
    then skipped every approval."""
    tokens, token = make_tokens(tmp_path, SDR, CFO)
    srv = Server(tmp_path)
    srv.start("--tokens", str(tokens))
    try:
        sdr = {"Authorization": f"Bearer {token[SDR]}"}
        r = httpx.post(f"{srv.url}{API}/workflows", json=ONE_TASK, headers=sdr, timeout=10)
        refused(r, "Authorization")  # the person came from the token
        r = httpx.post(f"{srv.url}{API}/workflows/{GATE}/cases", headers=sdr, timeout=10,
                       json={"case_id": "d1", "data": DEAL})
        assert r.status_code == 201, r.text
        assert r.json()["workflow_version"] == 1
        assert "SendToFinance" in r.json()["enabled_tasks"]
        cfo = {"Authorization": f"Bearer {token[CFO]}"}
        r = httpx.post(f"{srv.url}{API}/workflows", json=ONE_TASK, headers=cfo, timeout=10)
        assert (r.status_code, r.json()["version"]) == (201, 2), r.text
    finally:
        srv.stop()


# ------------------------------------------------------- the spec posted is the spec run
async def test_posting_the_original_spec_again_makes_it_current(
        api: httpx.AsyncClient) -> None:
    original = (SPECS / f"{GATE}.json").read_text(encoding="utf-8")
    r = await api.post(f"{API}/workflows", json=ONE_TASK)
    assert (r.status_code, r.json()["version"]) == (201, 2), r.text
    on_v2 = await new_deal(api, "on-v2")
    assert (on_v2["workflow_version"], on_v2["enabled_tasks"]) == (2, ["A"])

    r = await api.post(f"{API}/workflows", content=original.encode())
    assert r.status_code == 201, r.text
    back = r.json()
    assert (back["version"], back["created"]) == (3, True)
    on_v3 = await new_deal(api, "on-v3")
    assert on_v3["workflow_version"] == 3 and "SendToFinance" in on_v3["enabled_tasks"]
    assert (await api.get(f"{API}/cases/on-v2")).json()["workflow_version"] == 2

    r = await api.post(f"{API}/workflows", content=original.encode())  # now current
    assert (r.status_code, r.json()["version"], r.json()["created"]) == (200, 3, False)
    detail = (await api.get(f"{API}/workflows/{GATE}")).json()
    digests = {v["version"]: v["digest"] for v in detail["versions"]}
    assert sorted(digests) == [1, 2, 3] and digests[3] == digests[1] == back["digest"]
    assert detail["version"] == 3
    assert [t["id"] for t in detail["spec"]["tasks"]] == [
        t["id"] for t in json.loads(original)["tasks"]]


async def test_a_restart_keeps_the_version_registered_since(tmp_path: pathlib.Path) -> None:
    """The spec directory registered at start is not a post: its unchanged files must not
    take back a version registered over HTTP."""
    async with in_process(tmp_path) as api:
        r = await api.post(f"{API}/workflows", json=ONE_TASK)
        assert (r.status_code, r.json()["version"]) == (201, 2), r.text
    async with in_process(tmp_path) as api:
        detail = (await api.get(f"{API}/workflows/{GATE}")).json()
        assert (detail["version"], len(detail["versions"])) == (2, 2)
        assert (await new_deal(api, "after-restart"))["workflow_version"] == 2


# ------------------------------------------------------------------- the virtual clock
async def test_moving_the_virtual_clock_needs_advance_clock(tmp_path: pathlib.Path) -> None:
    async with in_process(tmp_path, virtual_clock=START) as api:
        before = (await api.get(f"{API}/clock")).json()
        for user in (SDR, CEO):  # no role of roles.yaml has it
            r = await api.post(f"{API}/clock/advance", json={"by": "30d"},
                               headers=as_user(user))
            refused(r, "X-Caseloop-User")
        assert (await api.get(f"{API}/clock")).json() == before
        r = await api.post(f"{API}/clock/advance", json={"by": "1h"})  # the operator
        assert r.status_code == 200, r.text
        assert r.json()["now"] != before["now"]
