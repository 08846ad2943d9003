"""The live dashboard in a real browser, against a real `caseloop serve` over a store
filled by `caseloop simulate` (the session's `simulated_db`, copied):

- every page loads without a console error or a page error, and its charts are drawn
  (each canvas has painted pixels);
- Apply on a recommendation, refused for an SDR with the API's 403 text in the page,
  then done as a director: the status changes in the page and in the API; Roll back
  likewise;
- a case page's timeline shows exactly the events of the case's history (API);
- a completion made through the API appears on an open case page by itself (server-sent
  events), without a reload.

Screenshots go to tests/artifacts/screenshots/ (gitignored). Debian's /usr/bin/chromium
through Playwright (never a downloaded browser); skipped with the reason when either is
missing. One server and one browser for the module.
"""

from __future__ import annotations

import pathlib
import shutil
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

CHROMIUM = pathlib.Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
ROOT = pathlib.Path(__file__).resolve().parents[2]
SHOTS = ROOT / "tests" / "artifacts" / "screenshots"
SDR = "sarah.chen@acme.com"
DIRECTOR = "olivia.bennett@acme.com"
LEGAL = "priya.patel@acme.com"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason=f"no browser: {CHROMIUM} is not installed "
                                       "(apt-get install chromium)")
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="the playwright package is not installed (pip install "
                                      "-e '.[dev]'); its browser download is not needed")

sys.path.insert(0, str(ROOT / "tests" / "adapters"))
from http_kit import Server, make_tokens, serving  # noqa: E402
from test_live import wait_for_quiet_log  # noqa: E402

# Per canvas: how many pixels are painted (a chart drawn, not an empty box).
PAINTED = """() => Array.from(document.querySelectorAll('#page canvas')).map(c => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) n++;
  return n;
})"""
RENDERS = "() => Number(document.getElementById('page').dataset.rendered || 0)"


@pytest.fixture(scope="module")
def server(simulated_db: pathlib.Path, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("dashboard")
    db = pathlib.Path(shutil.copy(simulated_db, work / "pipeline.db"))
    with serving(work, db=db) as srv:
        # The loop's first cycle over the history (seconds) done once here, so the
        # recommendations page answers at page speed -- after the start's own appends
        # (automatic tasks the simulation left running finish within seconds), which
        # would otherwise make the next page's request analyse again.
        wait_for_quiet_log(srv.url)
        r = httpx.get(srv.url + "/api/v1/workflows/contract-processing/mape-k/"
                      "recommendations", timeout=120.0)
        assert r.status_code == 200, r.text
        yield srv


@pytest.fixture(scope="module")
def api(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url + "/api/v1", timeout=60.0) as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


class Tab:
    """One page of the dashboard, with every console error and page error it caused."""

    def __init__(self, page: Any, base: str) -> None:
        self.page = page
        self.base = base
        self.problems: list[str] = []
        self.allowed: list[str] = []  # substrings of problems a test expects
        page.on("console", lambda m: self.problems.append(
            f"console {m.type}: {m.text} ({m.location.get('url', '')})")
            if m.type == "error" else None)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))

    def open(self, hash_: str) -> None:
        self.page.goto(f"{self.base}/{hash_}")
        self.wait_render(0)

    def renders(self) -> int:
        return int(self.page.evaluate(RENDERS))

    def wait_render(self, after: int, timeout: float = 60_000) -> None:
        self.page.wait_for_function(
            f"() => Number(document.getElementById('page').dataset.rendered || 0) > {after}"
            " || document.querySelector('#page > .error') !== null", timeout=timeout)
        errors = self.page.locator("#page > .error")
        assert errors.count() == 0, errors.first.inner_text()

    def act_as(self, person: str) -> None:
        before = self.renders()
        self.page.select_option("#acting-as", person)
        self.wait_render(before)

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def assert_clean(self) -> None:
        unexpected = [p for p in self.problems if not any(a in p for a in self.allowed)]
        assert unexpected == [], "\n".join(unexpected)

    def painted(self) -> list[int]:
        return list(self.page.evaluate(PAINTED))


@pytest.fixture
def tab(browser: Any, server: Server) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        t = Tab(context.new_page(), server.url)
        yield t
        t.assert_clean()
    finally:
        context.close()


PAGES = [  # (name, address, at least this many charts, a selector that must match)
    ("overview", "#/", 9, ".kpi"),
    ("slo", "#/slo", 2, "table tbody tr"),
    ("bottlenecks", "#/bottlenecks", 1, ".finding"),
    ("approvers", "#/approvers", 1, "table tbody tr"),
    ("recommendations", "#/recommendations", 0, ".rec"),
    ("today", f"#/today/{LEGAL}", 0, "table.today tbody tr"),
    ("cases", "#/cases", 0, "table tbody tr a[href^='#/case/']"),
]


@pytest.mark.parametrize(("name", "address", "charts", "content"), PAGES,
                         ids=[p[0] for p in PAGES])
def test_page_loads_and_draws(tab: Tab, name: str, address: str, charts: int,
                              content: str) -> None:
    tab.open(address)
    tab.page.wait_for_selector("#live.on", timeout=10_000)  # the live stream is connected
    assert tab.page.locator(content).count() > 0, f"{name}: nothing matches {content}"
    painted = tab.painted()
    tab.shot(name)
    assert len(painted) >= charts, f"{name}: {len(painted)} charts, expected {charts}"
    assert all(n > 500 for n in painted), f"{name}: blank or near-blank canvases {painted}"
    nav = tab.page.locator("#nav a[aria-current='page']")
    assert nav.count() == 1


def test_the_api_reference_renders_every_operation(tab: Tab, server: Server) -> None:
    """/docs lists every operation of /openapi.json, including those that answer CSV,
    XES or an event stream (its script once assumed JSON everywhere and stopped)."""
    paths = httpx.get(server.url + "/openapi.json", timeout=30.0).json()["paths"]
    operations = sum(len(methods) for methods in paths.values())
    tab.page.goto(f"{tab.base}/docs")
    tab.page.wait_for_function(f"() => document.querySelectorAll('details.op').length "
                               f">= {operations}", timeout=20_000)
    assert "Could not load" not in tab.page.inner_text("#ops")
    tab.shot("docs")


def _rec_status(api: httpx.Client, rid: str) -> str:
    r = api.get(f"/workflows/contract-processing/mape-k/recommendations/{rid}")
    assert r.status_code == 200, r.text
    return str(r.json()["status"])


def test_apply_and_roll_back_from_the_page(tab: Tab, api: httpx.Client) -> None:
    tab.open("#/recommendations")
    page = tab.page
    ready = page.locator(".rec", has=page.locator("button", has_text="Apply"))
    assert ready.count() > 0, "no recommendation ready to apply"
    rid = ready.first.get_attribute("data-rec-id")
    assert rid and _rec_status(api, rid) == "ready_to_apply"
    card = page.locator(f".rec[data-rec-id='{rid}']")

    # An SDR may not change policies: the API's refusal is shown in the card.
    tab.act_as(SDR)
    assert "manage_policies" in card.locator(".actions .hint").inner_text()
    tab.allowed.append("status of 403")  # the browser logs the refused request itself
    card.locator("button", has_text="Apply").click()
    refusal = card.locator(".rec-note .error")
    refusal.wait_for(timeout=10_000)
    assert "manage_policies" in refusal.inner_text()
    assert "403" in refusal.inner_text()
    assert _rec_status(api, rid) == "ready_to_apply"
    tab.shot("recommendations-refused")

    # A director may: applied in the page and in the API, then rolled back.
    tab.act_as(DIRECTOR)
    card.locator("button", has_text="Apply").click()
    card.locator(".status[data-status='applied']").wait_for(timeout=20_000)
    assert _rec_status(api, rid) == "applied"
    tab.shot("recommendations-applied")
    card.locator("button", has_text="Roll back").click()
    card.locator(".status[data-status='rolled_back']").wait_for(timeout=20_000)
    assert _rec_status(api, rid) == "rolled_back"
    assert card.locator("button").count() == 0  # nothing more to do with it
    tab.shot("recommendations-rolled-back")


def test_advice_offers_no_apply_and_says_why(tab: Tab, api: httpx.Client, mapek_eval) -> None:
    """Capacity advice (no policy adds a person) carries no change: its card once had an
    Apply button that only ever got the API's 409, and every card said its saving was
    the digital twin's, which only a timing saving is."""
    from test_mapek_kinds_http import csv_of

    queue, _ = mapek_eval.queue_world(6)  # two lawyers work a queue: capacity advice
    r = api.post("/workflows/deal-approval-gate/history/import", content=csv_of(queue),
                 headers={"Content-Type": "text/csv"})
    assert r.status_code in (200, 201), r.text
    # Asked again while the cycle over the import outlasts a request's wait (10 s; a
    # busy machine): `current` says when the answer is over the history as it is.
    deadline = time.monotonic() + 120
    while not (found := api.get("/workflows/deal-approval-gate/mape-k/recommendations"
                                ).json())["current"] and time.monotonic() < deadline:
        time.sleep(1)
    advice = [x for x in found["recommendations"]
              if x["status"] == "ready_to_apply" and not x["change"]]
    assert any(x["type"] == "capacity" for x in advice), found

    tab.open("#/recommendations")
    for rec in advice:
        card = tab.page.locator(f".rec[data-rec-id='{rec['id']}']")
        assert card.count() == 1
        assert card.locator("button").count() == 0
        assert "nothing to apply" in card.locator(".actions").inner_text()
        assert "digital twin" not in card.inner_text()
    tab.shot("recommendations-advice")


def test_case_timeline_shows_the_history(tab: Tab, api: httpx.Client) -> None:
    cases = api.get("/cases", params={"workflow": "revenue-recognition",
                                      "state": "completed", "limit": 1}).json()["cases"]
    assert cases, "the simulation booked no revenue"
    case_id = cases[0]["case_id"]
    history = api.get(f"/cases/{case_id}/history").json()["events"]
    tab.open(f"#/case/{case_id}")
    rows = ".timeline .tl-event"
    assert tab.page.locator(rows).count() == len(history)
    types = tab.page.eval_on_selector_all(rows, "els => els.map(e => e.dataset.type)")
    assert types == [e["type"] for e in history]
    seqs = tab.page.eval_on_selector_all(rows, "els => els.map(e => +e.dataset.seq)")
    assert seqs == [e["seq"] for e in history]
    completed = [e for e in history if e["type"] == "TaskCompleted"]
    text = tab.page.locator(".timeline").inner_text()
    for e in completed:
        assert e["task"] in text
        if e.get("by"):
            assert e["by"] in text
    # one header per workflow the deal went through, from approval to revenue
    phases = tab.page.locator(".timeline .tl-phase")
    assert phases.count() == sum(e["type"] in ("CaseCreated", "WorkflowEntered") for e in history)
    assert phases.count() >= 3
    tab.shot("case")


def test_a_completion_appears_on_its_own(tab: Tab, api: httpx.Client) -> None:
    items = api.get("/today", params={"user": LEGAL}).json()["items"]
    item = next(i for i in items if i["task"] == "SendToLegal")
    case_id = item["case_id"]
    tab.open(f"#/case/{case_id}")
    page = tab.page
    page.wait_for_selector("#live.on", timeout=10_000)
    page.evaluate("() => { window.sameDocument = true; }")
    before = page.locator(".timeline .tl-event").count()
    renders = tab.renders()
    r = api.post(f"/cases/{case_id}/tasks/SendToLegal/complete",
                 json={"result": "approved", "completed_by": LEGAL})
    assert r.status_code == 200, r.text
    # The live stream says the log grew; the page fetches the case again and redraws.
    tab.wait_render(renders, timeout=20_000)
    page.wait_for_function(
        f"() => document.querySelectorAll('.timeline .tl-event').length > {before}",
        timeout=20_000)
    assert page.evaluate("() => window.sameDocument === true"), "the page was reloaded"
    done = page.locator(".timeline .tl-event[data-type='TaskCompleted']",
                        has_text="SendToLegal")
    assert done.count() == 1
    assert LEGAL in done.inner_text()
    history = api.get(f"/cases/{case_id}/history").json()["events"]
    assert page.locator(".timeline .tl-event").count() == len(history)
    tab.shot("case-live")


def test_token_mode_reads_with_the_token(browser: Any, tmp_path: pathlib.Path) -> None:
    """Token mode: the page asks for the token; with it, data loads and the live stream
    (read through fetch, since EventSource cannot send a header) refreshes the page."""
    tokens, minted = make_tokens(tmp_path, DIRECTOR)
    srv = Server(tmp_path)
    srv.start("--tokens", str(tokens))
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        tab = Tab(context.new_page(), srv.url)
        tab.page.goto(srv.url + "/#/")
        tab.page.wait_for_selector("#page .empty", timeout=10_000)
        assert "token" in tab.page.locator("#page").inner_text()
        assert tab.page.locator("#acting-as").is_hidden()
        tab.page.fill("#token", minted[DIRECTOR])
        tab.page.press("#token", "Enter")  # a change event: the token is used from now on
        tab.wait_render(0)
        tab.page.wait_for_selector("#live.on", timeout=10_000)
        assert "No cases yet" in tab.page.locator("#page").inner_text()  # an empty store
        tab.shot("token-mode-empty")
        renders = tab.renders()
        auth = {"Authorization": f"Bearer {minted[DIRECTOR]}"}
        r = httpx.post(srv.url + "/api/v1/workflows/lead-qualification/cases", headers=auth,
                       json={"case_id": "token-lead", "data": {
                           "company_name": "TechCorp", "contact_email": "j@techcorp.com",
                           "company_size": 5000, "industry": "IT Consulting"}}, timeout=10.0)
        assert r.status_code == 201, r.text
        tab.wait_render(renders, timeout=20_000)  # told by the stream, not reloaded
        tab.page.wait_for_selector(".kpi", timeout=10_000)
        # Her day by default: the token's person, whom the API lets see it.
        renders = tab.renders()
        tab.page.goto(srv.url + "/#/today")
        tab.wait_render(renders)
        assert tab.page.locator("#today-person").input_value() == DIRECTOR
        assert "Olivia Bennett" in tab.page.locator("#page .sub").inner_text()
        tab.assert_clean()
    finally:
        context.close()
        srv.stop()
