"""The generated OpenAPI document, checked twice: by reading it (version, every route of
the API, the docs page serves only local assets) and by schemathesis, which generates
requests from it against the real app and must never get a 5xx back.

schemathesis 4 drives the ASGI app in-process and runs its lifespan itself (on its own
event loop thread, for as long as the test runs), so the store, the registry and the
runtime are all up while it fuzzes; the app is the real one with a SQLite file under a
temporary directory and the shipped specs.
"""

from __future__ import annotations

import itertools
import json
import pathlib
import re
from typing import Any

import anyio
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from adapters.http import Settings, create_app

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"

API_PATHS = [
    "/workflows", "/workflows/{workflow_id}", "/workflows/{workflow_id}/cases", "/cases",
    "/cases/{case_id}", "/cases/{case_id}/history", "/cases/{case_id}/tasks/{task}/start",
    "/cases/{case_id}/tasks/{task}/complete", "/cases/{case_id}/cancel", "/worklist",
    "/incidents", "/workflows/{workflow_id}/metrics",
    "/workflows/{workflow_id}/mape-k/recommendations",
]
PUBLIC_PATHS = ["/health", "/healthz", "/health/ready"]


# Random path parameters only ever reach the 404s; steer() swaps some of them for
# workflows, cases and tasks that exist (cases seeded below), and acts as a person of
# roles.yaml now and then, so the generated bodies reach the engine and the authority
# checks too.
KNOWN = {
    "workflow_id": ["deal-approval-gate", "lead-qualification", "wf_deal_approval_gate"],
    "case_id": ["deal-small", "deal-big", "lead-1"],
    "task": ["SendToFinance", "SendToSalesManager", "ExecutiveCheck", "AllApprovalsComplete",
             "ValidateContactInfo", "ReceiveMarketingLead"],
}
USERS = [None, "sarah.chen@acme.com", "james.rodriguez@acme.com", "lisa.wong@acme.com",
         "marcus.thompson@acme.com", "nobody@example.com"]


_sent = itertools.count()
DEAL = {"deal_name": "Fuzzed", "customer_name": "Fuzz Inc", "deal_acv": 1000}
SPEC = {"tasks": [{"id": "Check", "role": "sdr", "split": "xor"},
                  {"id": "Yes", "role": "sdr"}, {"id": "No", "role": "sdr"}],
        "flows": [{"from": "start", "to": "Check"},
                  {"from": "Check", "to": "Yes", "when": "missing_field > 1"},
                  {"from": "Check", "to": "No"},
                  {"from": "Yes", "to": "end"}, {"from": "No", "to": "end"}]}


def steer(case: Any) -> None:
    n = next(_sent)
    params = case.path_parameters or {}
    for name in params:
        options = KNOWN.get(name, [])
        if n % (len(options) + 1) < len(options):
            params[name] = options[n % (len(options) + 1)]
    headers = dict(case.headers or {})
    headers["Host"] = "127.0.0.1"  # open mode answers only to loopback names
    if USERS[n % len(USERS)] is not None:
        headers["X-Caseloop-User"] = USERS[n % len(USERS)]
    key = headers.get("Idempotency-Key")
    if key and n % 4:  # mostly fresh keys: generated ones collide all the time
        headers["Idempotency-Key"] = f"{key[:150]}-{n}"
    case.headers = headers
    if case.method.upper() != "POST":
        return
    if case.operation.path.endswith("/cases") and isinstance(case.body, dict) \
            and isinstance(case.body.get("data"), dict) and n % 2:
        case.body["data"] = {**case.body["data"], **DEAL}  # data the schema requires
    elif case.operation.path.endswith("/workflows") and n % 3:
        # The document declares no request body here (the spec is JSON or YAML text),
        # so schemathesis sends none: give it a spec, its guard on data never set.
        case.body = {"id": f"fuzzed-{n % 3}", **SPEC}
        case.media_type = "application/json"


def seed(db: pathlib.Path) -> None:
    """Cases for steer() to find; the schemathesis app then starts on the same store."""
    app = create_app(Settings(db=str(db), specs=str(SPECS)))
    deals = {"deal-small": {"deal_acv": 40000, "discount_percent": 0.0},
             "deal-big": {"deal_acv": 300000, "discount_percent": 0.2}}
    lead = json.loads((SPECS / "examples" / "techcorp-lead.json").read_text())

    async def run() -> None:
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app), base_url="http://127.0.0.1") as client:
            for case_id, data in deals.items():
                r = await client.post("/api/v1/workflows/deal-approval-gate/cases", json={
                    "case_id": case_id,
                    "data": {"deal_name": case_id, "customer_name": "TechCorp", **data}})
                assert r.status_code == 201, r.text
            r = await client.post("/api/v1/workflows/lead-qualification/cases",
                                  json={"case_id": "lead-1", "data": lead})
            assert r.status_code == 201, r.text

    anyio.run(run)


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Any:
    db = tmp_path_factory.mktemp("schemathesis") / "t.db"
    seed(db)
    app = create_app(Settings(db=str(db), specs=str(SPECS)))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, httpx.Response]:
    """GET of the document, the docs page and every local asset the page references."""
    db = tmp_path_factory.mktemp("openapi") / "t.db"
    app = create_app(Settings(db=str(db), specs=str(SPECS)))

    async def fetch() -> dict[str, httpx.Response]:
        out: dict[str, httpx.Response] = {}
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app, raise_app_exceptions=False),
                base_url="http://127.0.0.1") as client:
            for path in ("/openapi.json", "/docs"):
                out[path] = await client.get(path)
            for ref in assets(out["/docs"].text):
                if ref.startswith("/"):
                    out[ref] = await client.get(ref)
        return out

    return anyio.run(fetch)


def assets(html: str) -> list[str]:
    """Everything the page loads: <script src>, <link href>, <img src>, CSS @import/url()."""
    refs = re.findall(r"<(?:script|link|img|iframe|source)\b[^>]*?\b(?:src|href)\s*=\s*"
                      r"[\"']?([^\"'\s>]+)", html, re.I)
    refs += re.findall(r"@import\s+(?:url\()?[\"']?([^\"')\s;]+)", html, re.I)
    refs += re.findall(r"url\(\s*[\"']?([^\"')\s]+)", html, re.I)
    return refs


# ------------------------------------------------------------------- the document
def test_openapi_is_3_1(served: dict[str, httpx.Response]) -> None:
    r = served["/openapi.json"]
    assert r.status_code == 200
    assert r.json()["openapi"].startswith("3.1")


def test_openapi_has_every_route(served: dict[str, httpx.Response]) -> None:
    paths = served["/openapi.json"].json()["paths"]
    missing = [p for p in ["/api/v1" + p for p in API_PATHS] + PUBLIC_PATHS if p not in paths]
    assert missing == []
    ops = {(m, p) for p, item in paths.items() for m in item}
    for method, path in [("post", "/workflows"), ("get", "/workflows"),
                         ("post", "/workflows/{workflow_id}/cases"), ("get", "/cases"),
                         ("post", "/cases/{case_id}/tasks/{task}/complete"),
                         ("post", "/cases/{case_id}/cancel")]:
        assert (method, "/api/v1" + path) in ops


def test_openapi_errors_share_one_body(served: dict[str, httpx.Response]) -> None:
    doc = served["/openapi.json"].json()
    err = doc["components"]["schemas"]["ErrorBody"]
    assert err["required"] == ["error"]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for status, resp in op["responses"].items():
                if int(status) >= 400 and int(status) != 503:
                    schema = resp["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, \
                        (method, path, status)


def test_docs_page_uses_only_local_assets(served: dict[str, httpx.Response]) -> None:
    page = served["/docs"]
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    refs = assets(page.text)
    assert refs, "the docs page loads nothing: no script, no stylesheet"
    remote = [r for r in refs if re.match(r"^(?:[a-z][a-z0-9+.-]*:)?//", r, re.I)]
    assert remote == []
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page.text, re.I)
    for ref in refs:
        if ref.startswith("/"):
            assert served[ref].status_code == 200, ref
            # no CDN from assets (an SVG's XML namespace is a name, never fetched)
            assert not re.search(r"https?://(?!www\.w3\.org/2000/svg\b)",
                                 served[ref].text), ref


# ------------------------------------------------------------------ schemathesis
schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_generated_requests_get_no_server_error(case: Any) -> None:
    steer(case)
    response = case.call()
    assert "loopback names" not in response.text, "the request never reached the API"
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}\n"
        f"query={case.query!r} headers={case.headers!r} body={case.body!r}\n"
        f"{response.text[:500]}")
