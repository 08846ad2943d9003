"""The dashboard's side of the server, on a real `caseloop serve`: the page at `/` and
its static files (local only, the vendored Chart.js unchanged, a CSP that forbids
anything else), and the data endpoints the pages draw (`/api/v1/insights/...`,
`/api/v1/people`): shapes, a case moving the numbers, bad parameters answered 400/404,
token mode asking for a token. /docs, /health and /openapi.json stay where they were.
"""

from __future__ import annotations

import hashlib
import pathlib
import re
from typing import Any

import httpx
import pytest
from http_kit import ROOT, Server
from test_pipeline_http import Api

STATIC = ROOT / "adapters" / "http" / "static"
LEAD = {"company_name": "TechCorp", "contact_name": "John Smith",
        "contact_email": "john.smith@techcorp.com", "company_size": 5000,
        "industry": "IT Consulting", "location": "San Francisco, CA",
        "use_case": "Enterprise Analytics"}
SDR = "sarah.chen@acme.com"


@pytest.fixture(scope="module")
def api(module_server: Server) -> Any:
    a = Api(module_server)
    yield a
    a.close()


def _modules(http: httpx.Client, entry: str) -> dict[str, httpx.Response]:
    """Every ES module reachable from `entry` by its static imports."""
    seen: dict[str, httpx.Response] = {}
    todo = [entry]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        r = seen[path] = http.get(path)
        base = path.rsplit("/", 1)[0]
        for rel in re.findall(r'^import\s[^;]*?from\s+"(\.{1,2}/[^"]+)"', r.text, re.M):
            parts = (base + "/" + rel).split("/")
            out: list[str] = []
            for p in parts:
                if p == "..":
                    out.pop()
                elif p != ".":
                    out.append(p)
            todo.append("/".join(out))
    return seen


def test_page_and_assets_are_local(module_server: Server) -> None:
    with httpx.Client(base_url=module_server.url, timeout=10.0) as http:
        page = http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "unsafe" not in csp
        refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        local = [r for r in refs if r.startswith("/static/")]
        assert len(local) >= 4, refs
        assert not [r for r in refs if re.match(r"^(?:[a-z]+:)?//", r)], refs
        for ref in local:
            r = http.get(ref)
            assert r.status_code == 200, ref
            assert r.headers["cache-control"] == "no-cache", ref
        modules = _modules(http, "/static/dashboard/app.js")
        assert len(modules) >= 10, sorted(modules)  # shell, api, dom, charts and the pages
        for path, r in modules.items():
            assert r.status_code == 200, path
            assert "javascript" in r.headers["content-type"], path
            assert not re.search(r"https?://", r.text), path  # no CDN, no remote call
            assert "innerHTML" not in r.text and "eval(" not in r.text, path
        chart = http.get("/static/vendor/chartjs/chart.umd.min.js")
        assert chart.status_code == 200
        vendor = (STATIC / "vendor" / "chartjs" / "VENDOR.md").read_text()
        assert hashlib.sha256(chart.content).hexdigest() in vendor  # unchanged, as recorded
        assert "4.6.1" in vendor
        assert http.get("/static/vendor/chartjs/LICENSE.md").status_code == 200
        # Nothing but the package's static directory is served.
        for bad in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/dashboard/nope.js"):
            assert http.get(bad).status_code == 404, bad


def test_the_rest_of_the_server_is_unchanged(module_server: Server) -> None:
    with httpx.Client(base_url=module_server.url, timeout=10.0) as http:
        assert http.get("/health").json()["status"] == "ok"
        assert http.get("/docs").status_code == 200
        assert http.get("/docs/docs.js").status_code == 200
        doc = http.get("/openapi.json").json()
        paths = doc["paths"]
        for p in ("/api/v1/insights/flow", "/api/v1/insights/cycle-times",
                  "/api/v1/insights/approvers", "/api/v1/insights/stages", "/api/v1/people",
                  "/api/v1/events/stream", "/api/v1/stats", "/health"):
            assert p in paths, p
        stream = paths["/api/v1/events/stream"]["get"]["responses"]["200"]["content"]
        assert list(stream) == ["text/event-stream"]
        assert "/" not in paths and not [p for p in paths if p.startswith("/static")]
        assert http.get("/api/v1/nope").status_code == 404  # the API's 404, not the page


def test_insights_follow_the_cases(api: Api) -> None:
    before = api.ok(api.get("/insights/flow"))
    assert before["bucket_seconds"] == 86400.0
    api.create("lead-qualification", "dash-lead-1", LEAD)
    api.ok(api.complete("dash-lead-1", "ReceiveMarketingLead", SDR))

    flow = api.ok(api.get("/insights/flow", bucket="hour"))
    assert flow["bucket_seconds"] == 3600.0
    lead = {s["workflow_id"]: s for s in flow["workflows"]}["lead-qualification"]
    assert sum(lead["arrivals"]) >= 1
    assert len(lead["starts"]) == len(lead["arrivals"]) == len(lead["completions"])
    assert api.ok(api.get("/insights/flow", days=7))["workflows"]

    cycles = api.ok(api.get("/insights/cycle-times", bins=10))
    lq = {w["workflow_id"]: w for w in cycles["workflows"]}["lead-qualification"]
    assert lq["open"] >= 1 and lq["slo_hours"] == 1.0
    assert cycles["slo_goals"]["lead-qualification"] == 95.0

    people = {a["person"]: a for a in api.ok(api.get("/insights/approvers"))["approvers"]}
    assert people[SDR]["completed"] >= 1 and people[SDR]["role"] == "sdr"
    assert people[SDR]["tasks"]["ReceiveMarketingLead"] >= 1
    scoped = api.ok(api.get("/insights/approvers", workflow="deal-approval-gate"))
    assert scoped["workflow_id"] == "deal-approval-gate"
    assert SDR not in {a["person"] for a in scoped["approvers"]}

    stages = api.ok(api.get("/insights/stages"))["stages"]
    waiting = [s for s in stages if s["workflow_id"] == "lead-qualification"]
    assert waiting and all(s["items"] >= 1 and s["cases"] >= 1 for s in waiting)
    assert "ReceiveMarketingLead" not in {s["task"] for s in waiting}  # done: not waiting


def test_people_say_who_asks(api: Api) -> None:
    everyone = api.ok(api.get("/people"))
    assert everyone["mode"] == "open" and everyone["you"] == "operator"
    by = {p["person"]: p for p in everyone["people"]}
    assert "manage_policies" in by["olivia.bennett@acme.com"]["permissions"]
    assert "manage_policies" in by["lisa.wong@acme.com"]["permissions"]
    assert "manage_policies" not in by[SDR]["permissions"]
    r = api.http.get("/people", headers={"X-Caseloop-User": SDR})
    assert api.ok(r)["you"] == SDR


@pytest.mark.parametrize(("path", "params", "status", "field"), [
    ("/insights/flow", {"bucket": "minute"}, 400, "bucket"),
    ("/insights/flow", {"days": "0"}, 400, "days"),
    ("/insights/flow", {"days": "many"}, 400, "days"),
    ("/insights/cycle-times", {"bins": "1"}, 400, "bins"),
    # The query parameter is `workflow`: a client locating the error by field found
    # `workflow_id`, a name it never sent (an exploratory test).
    ("/insights/approvers", {"workflow": "no-such-flow"}, 404, "workflow"),
    ("/insights/flow", {"workflow": "no-such-flow"}, 404, "workflow"),
    ("/cases", {"workflow": "no-such-flow"}, 404, "workflow"),
])
def test_bad_parameters_are_located(api: Api, path: str, params: dict[str, str],
                                    status: int, field: str | None) -> None:
    err = api.error(api.get(path, **params), status)
    if field is not None:
        assert err["details"][0]["field"] == field


def test_token_mode_keeps_the_page_public_and_the_data_private(
        server_factory: Any, tmp_path: pathlib.Path) -> None:
    from http_kit import make_tokens

    tokens, minted = make_tokens(tmp_path, "olivia.bennett@acme.com")
    srv = server_factory("--tokens", str(tokens))
    with httpx.Client(base_url=srv.url, timeout=10.0) as http:
        assert http.get("/").status_code == 200
        assert http.get("/static/dashboard/app.js").status_code == 200
        assert http.get("/api/v1/people").status_code == 401
        assert http.get("/api/v1/insights/flow").status_code == 401
        assert http.get("/api/v1/events/stream").status_code == 401
        auth = {"Authorization": f"Bearer {minted['olivia.bennett@acme.com']}"}
        me = http.get("/api/v1/people", headers=auth).json()
        assert me["mode"] == "token" and me["you"] == "olivia.bennett@acme.com"
