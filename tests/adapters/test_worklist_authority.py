"""A person's worklist and day offer only work they could complete.

Authority is checked when work is claimed or completed (adapters.people.authorize);
these tests hold the worklist (`GET /worklist?user=`) and the day (`GET /today`) to the
same rule, against the real app (create_app, its lifespan, a SQLite file under
tmp_path, the shipped specs and roles.yaml) called in-process through
httpx.ASGITransport on a virtual clock.
"""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from http_kit import in_process

from adapters.http import today as today_module
from adapters.http import work as work_module

pytestmark = pytest.mark.anyio

API = "/api/v1"
MONDAY = 1763370000.0  # 2025-11-17T09:00:00Z

MARCUS = "marcus.thompson@acme.com"  # sales_manager: deals up to 250K ACV
OLIVIA = "olivia.bennett@acme.com"  # director, acts as sales manager: up to 1M
PRIYA = "priya.patel@acme.com"  # legal_counsel: contracts up to 5M
CFO = "lisa.wong@acme.com"  # unlimited, acts as every approver


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def api(tmp_path: pathlib.Path) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(tmp_path, virtual_clock=MONDAY) as client:
        yield client


async def create_deal(api: httpx.AsyncClient, case_id: str, acv: float,
                      **more: Any) -> dict[str, Any]:
    r = await api.post(f"{API}/workflows/deal-approval-gate/cases", json={
        "case_id": case_id, "data": {"deal_name": f"Deal {case_id}", "customer_name": "Co",
                                     "deal_acv": acv, "discount_percent": 0, **more}})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def settle(api: httpx.AsyncClient) -> None:
    """The virtual clock answers once the automatic work (the approvals' merge, the
    hand-over to contract processing) is done."""
    r = await api.post(f"{API}/clock/advance", json={"by": "0s"})
    assert r.status_code == 200, r.text


async def worklist(api: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    r = await api.get(f"{API}/worklist", params=params)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def today(api: httpx.AsyncClient, user: str) -> dict[str, Any]:
    r = await api.get(f"{API}/today", params={"user": user})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def tasks(listing: dict[str, Any], case_id: str | None = None) -> list[tuple[str, str]]:
    return sorted((i["case_id"], i["task"]) for i in listing["items"]
                  if case_id is None or i["case_id"] == case_id)


async def test_a_manager_is_not_offered_approvals_above_his_limit(
        api: httpx.AsyncClient) -> None:
    await create_deal(api, "deal_small", 40_000)
    await create_deal(api, "deal_big", 600_000)  # above Marcus's 250K, within Olivia's 1M
    approval = "SendToSalesManager"

    assert tasks(await worklist(api, user=MARCUS)) == [("deal_small", approval)]
    assert tasks(await worklist(api, user=MARCUS, role="sales_manager")) == [
        ("deal_small", approval)]
    day = await today(api, MARCUS)
    assert tasks(day) == [("deal_small", approval)]
    # Those who can sign the big deal off still see it; so does the role's queue.
    for who in (OLIVIA, CFO):
        assert ("deal_big", approval) in tasks(await worklist(api, user=who)), who
        assert ("deal_big", approval) in tasks(await today(api, who)), who
    assert tasks(await worklist(api, role="sales_manager")) == [
        ("deal_big", approval), ("deal_small", approval)]

    # What the worklist leaves out, Marcus can neither claim nor complete: the engine
    # refuses him (3002) and the item stays offered to those who can.
    for verb, body in (("start", {}), ("complete", {"result": "approved"})):
        r = await api.post(f"{API}/cases/deal_big/tasks/{approval}/{verb}", json=body,
                           headers={"X-Caseloop-User": MARCUS})
        assert r.status_code == 403 and r.json()["error"]["code"] == 3002, r.text
    r = await api.post(f"{API}/cases/deal_big/tasks/{approval}/start", json={},
                       headers={"X-Caseloop-User": OLIVIA})
    assert r.status_code == 200, r.text
    # Olivia's claim is hers: in her worklist, in nobody else's.
    assert ("deal_big", approval) in tasks(await worklist(api, user=OLIVIA))
    assert ("deal_big", approval) not in tasks(await worklist(api, user=CFO))


async def test_work_whose_limit_binds_only_some_results_stays_offered(
        api: httpx.AsyncClient) -> None:
    # Legal's review of a custom contract: approving a 6M contract is above Priya's 5M,
    # asking for amendments (or rejecting) is not; only the result she chooses decides.
    deal = await create_deal(api, "deal_6m", 2_000_000, deal_value_3yr=6_000_000,
                             contract_type="custom")
    # WF2's legal approval has no such condition: beyond her limit whatever she answers.
    assert ("deal_6m", "SendToLegal") not in tasks(await worklist(api, user=PRIYA))
    assert ("deal_6m", "SendToLegal") in tasks(await worklist(api, user=CFO))
    for task in deal["enabled_tasks"]:
        r = await api.post(f"{API}/cases/deal_6m/tasks/{task}/complete",
                           json={"result": "approved"}, headers={"X-Caseloop-User": CFO})
        assert r.status_code == 200, r.text
    await settle(api)

    assert tasks(await worklist(api, user=PRIYA)) == [("deal_6m", "LegalReview")]
    assert tasks(await today(api, PRIYA)) == [("deal_6m", "LegalReview")]
    r = await api.post(f"{API}/cases/deal_6m/tasks/LegalReview/complete",
                       json={"result": "amendments"}, headers={"X-Caseloop-User": PRIYA})
    assert r.status_code == 200, r.text
    assert r.json()["enabled_tasks"] == ["RequestAmendments"]


async def test_left_out_work_does_not_cut_a_worklist_short(
        api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    # The oldest open approvals are beyond Marcus's limit; the limits count what he is
    # offered, and `truncated` says whether more of *his* work is left.
    for n in range(3):
        await create_deal(api, f"big{n}", 600_000)
    for n in range(3):
        await create_deal(api, f"small{n}", 40_000)
    mine = [(f"small{n}", "SendToSalesManager") for n in range(3)]
    for limit, shown, truncated in ((3, mine, False), (2, mine[:2], True)):
        monkeypatch.setattr(work_module, "WORKLIST_LIMIT", limit)
        monkeypatch.setattr(today_module, "TODAY_LIMIT", limit)
        listing = await worklist(api, user=MARCUS)
        assert (tasks(listing), listing["truncated"]) == (shown, truncated), limit
        day = await today(api, MARCUS)
        assert (tasks(day), day["truncated"]) == (shown, truncated), limit
    monkeypatch.setattr(work_module, "WORKLIST_LIMIT", 1)  # one page: the oldest first
    listing = await worklist(api, user=MARCUS)
    assert (tasks(listing), listing["truncated"]) == (mine[:1], True)


def approval_spec(workflow_id: str, authority_when: str) -> dict[str, Any]:
    return {
        "id": workflow_id,
        "data": {"required": ["deal_acv"], "properties": {"deal_acv": {"type": "number"}}},
        "tasks": [{"id": "Approve", "role": "sales_manager", "results": ["approved", "rejected"],
                   "authority": {"acv": "deal_acv"}, "authority_when": authority_when}],
        "flows": [{"from": "start", "to": "Approve"}, {"from": "Approve", "to": "end"}],
    }


@pytest.mark.parametrize(("authority_when", "offered"), [
    ("result == 'approved'", True),  # he may reject it: that is within anyone's authority
    ("result != 'withdrawn'", False),  # binds both results the task takes
    ("amount > 100", True),  # reads output he has yet to write: cannot be ruled out
])
async def test_a_task_listing_its_results_is_offered_if_one_of_them_is_within_reach(
        api: httpx.AsyncClient, authority_when: str, offered: bool) -> None:
    r = await api.post(f"{API}/workflows", json=approval_spec("guarded-approval",
                                                               authority_when))
    assert r.status_code == 201, r.text
    r = await api.post(f"{API}/workflows/guarded-approval/cases",
                       json={"case_id": "g1", "data": {"deal_acv": 600_000}})
    assert r.status_code == 201, r.text
    assert (tasks(await worklist(api, user=MARCUS)) == [("g1", "Approve")]) is offered
    assert (tasks(await today(api, MARCUS)) == [("g1", "Approve")]) is offered
    if offered and authority_when == "result == 'approved'":
        r = await api.post(f"{API}/cases/g1/tasks/Approve/complete",
                           json={"result": "rejected"}, headers={"X-Caseloop-User": MARCUS})
        assert r.status_code == 200, r.text


SARAH, DAVID = "sarah.chen@acme.com", "david.park@acme.com"  # SDRs Marcus manages
CEO = "ceo@acme.com"  # acts as the CFO and the board, and may see all work


async def as_person(api: httpx.AsyncClient, asker: str, path: str,
                    **params: str) -> httpx.Response:
    return await api.get(f"{API}{path}", params=params, headers={"X-Caseloop-User": asker})


def refused(r: httpx.Response, field: str) -> None:
    assert r.status_code == 403, r.text
    err = r.json()["error"]
    assert err["code"] == 3002 and [d["field"] for d in err["details"]] == [field], err


async def test_a_person_sees_only_the_work_they_may_see(api: httpx.AsyncClient) -> None:
    """Someone else's worklist or day is theirs, their manager's (down the line) and
    that of anyone holding or acting as their role; a role's queue is for those who
    hold or act as it. Others are refused (403, 3002, the field named), not shown."""
    await create_deal(api, "deal_small", 40_000)
    await create_deal(api, "deal_big", 600_000)
    seen = {  # asker -> person: allowed?
        (MARCUS, MARCUS): True,
        (OLIVIA, MARCUS): True,  # she manages him
        (OLIVIA, SARAH): True,  # ... and, through him, the SDRs he manages
        (CFO, MARCUS): True,  # she acts as a sales manager
        (MARCUS, SARAH): True,  # he manages her
        (DAVID, SARAH): True,  # the same role: the same queue
        (MARCUS, OLIVIA): False,  # his director's work is not his to see
        (SARAH, MARCUS): False,
        (PRIYA, MARCUS): False,  # legal does not act as a sales manager
        (MARCUS, PRIYA): False,
        (CEO, SARAH): True,  # view_all_work: the CEO acts as no SDR, manages nobody
        (CEO, PRIYA): True,
        (CFO, SARAH): False,  # acting as every approver is not managing the SDRs
    }
    for (asker, user), allowed in seen.items():
        for path in ("/worklist", "/today"):
            r = await as_person(api, asker, path, user=user)
            if allowed:
                assert r.status_code == 200, (asker, user, path, r.text)
            else:
                refused(r, "user")
                assert repr(asker) in r.json()["error"]["message"]
    # A role's queue: Marcus holds sales_manager, the CFO acts as legal counsel.
    r = await as_person(api, MARCUS, "/worklist", role="sales_manager")
    assert tasks(r.json()) == [("deal_big", "SendToSalesManager"),
                               ("deal_small", "SendToSalesManager")]
    refused(await as_person(api, MARCUS, "/worklist", role="legal_counsel"), "role")
    refused(await as_person(api, SARAH, "/worklist", role="sales_manager"), "role")
    r = await as_person(api, OLIVIA, "/worklist", role="sdr")  # her people's (his) queue
    assert r.status_code == 200, r.text
    r = await as_person(api, CFO, "/worklist", role="legal_counsel")
    assert r.status_code == 200 and ("deal_big", "SendToLegal") in tasks(r.json())
    # Unnamed, a person's worklist is their own; the local operator's is everyone's.
    mine = await as_person(api, MARCUS, "/worklist")
    r = await as_person(api, "nobody@acme.com", "/worklist")  # named, unknown: which field
    assert r.status_code == 400 and r.json()["error"]["details"][0]["field"] == (
        "X-Caseloop-User"), r.text
    assert mine.status_code == 200 and tasks(mine.json()) == tasks(
        await worklist(api, user=MARCUS)) == [("deal_small", "SendToSalesManager")]
    queues = [tasks(await worklist(api, role=role)) for role in (  # nothing is claimed
        "sales_manager", "legal_counsel", "finance_manager", "cfo")]
    assert tasks(await worklist(api)) == sorted(t for q in queues for t in q), queues
    # ... and everyone's for whoever may see all work, any queue too.
    r = await as_person(api, CEO, "/worklist")
    assert r.status_code == 200 and tasks(r.json()) == tasks(await worklist(api))
    r = await as_person(api, CEO, "/worklist", role="sdr")
    assert r.status_code == 200, r.text
    assert ("deal_big", "SendToLegal") in queues[1]


async def test_a_token_holder_is_refused_another_teams_day(tmp_path: pathlib.Path) -> None:
    """In token mode the asker is the token's person: the same rule holds for them."""
    from http_kit import make_tokens

    tokens, minted = make_tokens(tmp_path, MARCUS, PRIYA)
    async with in_process(tmp_path, virtual_clock=MONDAY, tokens=str(tokens)) as api:
        def bearer(user: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {minted[user]}"}

        r = await api.get(f"{API}/today", params={"user": MARCUS}, headers=bearer(MARCUS))
        assert r.status_code == 200, r.text
        refused(await api.get(f"{API}/today", params={"user": MARCUS},
                              headers=bearer(PRIYA)), "user")
        refused(await api.get(f"{API}/worklist", params={"role": "sales_manager"},
                              headers=bearer(PRIYA)), "role")
        r = await api.get(f"{API}/worklist", headers=bearer(PRIYA))  # hers, unnamed
        assert r.status_code == 200 and r.json()["items"] == [], r.text
