// The dashboard shell: a hash router over one module per page, the "acting as"
// selector, and live updates (server-sent events) that refresh the page in view.
//
// A page module exports { title, load(params) -> data, view(root, data, params, ui) }
// and optionally `events` (which live events refresh it; default ["log"]) and
// `minInterval` (ms between two live refreshes: pages whose data is an analysis should
// not recompute it on every append). load() fetches everything first, so a refresh
// swaps the old content for the new in one go, without a blank page in between.

import { api, identity, subscribe } from "./api.js";
import { destroyAll, draw } from "./charts.js";
import { el, empty, errorBox } from "./dom.js";
import approvers from "./pages/approvers.js";
import bottlenecks from "./pages/bottlenecks.js";
import { caseList, casePage } from "./pages/case.js";
import overview from "./pages/overview.js";
import recommendations from "./pages/recommendations.js";
import slo from "./pages/slo.js";
import today from "./pages/today.js";

const PAGES = {
  "": overview, overview, slo, bottlenecks, approvers, recommendations, today,
  cases: caseList, case: casePage,
};

const root = document.getElementById("page");
const banner = document.getElementById("banner");
const updated = document.getElementById("updated");
const liveBadge = document.getElementById("live");

let mode = "open"; // or "token": every API call needs the bearer token typed above
let current = null; // { page, params, lastRefresh }
let generation = 0; // a newer navigation wins over a slower, older load

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, qs] = raw.split("?", 2);
  const [name, ...rest] = path.split("/");
  return { name: decodeURIComponent(name || ""), arg: rest.length ? decodeURIComponent(rest.join("/")) : "",
    query: new URLSearchParams(qs || "") };
}

// Pages change their own URL (filters, the person shown) through go().
export function go(name, arg, query) {
  const q = query && [...new URLSearchParams(query)].length ? `?${new URLSearchParams(query)}` : "";
  location.hash = `#/${name}${arg ? `/${encodeURIComponent(arg)}` : ""}${q}`;
}

function showBanner(text) {
  if (!text) { banner.hidden = true; banner.textContent = ""; return; }
  banner.hidden = false;
  banner.textContent = text;
}

function markNav(page) {
  for (const a of document.querySelectorAll("#nav a")) {
    const on = PAGES[a.dataset.page] === page || (page === casePage && a.dataset.page === "cases");
    if (on) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
}

function paint(page, data, params) {
  const charts = [];
  const ui = {
    chart: (canvas, config) => charts.push([canvas, config]),
    go,
    refresh: () => render(true),
  };
  const y = window.scrollY;
  destroyAll();
  root.replaceChildren();
  page.view(root, data, params, ui);
  for (const [canvas, config] of charts) {
    try { draw(canvas, config); } catch (err) { canvas.parentElement.replaceWith(errorBox(err)); }
  }
  window.scrollTo(0, y);
  updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
  root.dataset.rendered = String(Number(root.dataset.rendered || 0) + 1);
}

async function render(quiet = false) {
  const { name, arg, query } = parseHash();
  const page = PAGES[name];
  const mine = ++generation;
  if (!page) {
    destroyAll();
    root.replaceChildren(errorBox(`No page "${name}". Pick one above.`));
    return;
  }
  const params = { arg, query };
  current = { page, params, lastRefresh: Date.now() };
  markNav(page);
  document.title = `${page.title} · caseloop`;
  if (mode === "token" && !identity.token) {
    destroyAll();
    root.replaceChildren(empty("This server asks who you are: paste your bearer token in the box above.",
      "An administrator makes one with `caseloop token create you@example.com --tokens FILE`."));
    return;
  }
  if (!quiet) {
    destroyAll();
    root.replaceChildren(el("p", { class: "muted loading" }, page.loadingText || "Loading…"));
  }
  root.setAttribute("aria-busy", "true");
  try {
    const data = await page.load(params);
    if (mine !== generation) return;
    paint(page, data, params);
    showBanner("");
  } catch (err) {
    if (mine !== generation) return;
    if (quiet) showBanner(`Refresh failed: ${err.message}`);
    else { destroyAll(); root.replaceChildren(errorBox(err)); }
  } finally {
    if (mine === generation) root.removeAttribute("aria-busy");
  }
}

// ------------------------------------------------------------ live refreshes
let timer = null;
let running = false;
let again = false;

function onLive(kind) {
  if (!current || kind === "hello") return;
  const wanted = current.page.events || ["log"];
  if (!wanted.includes(kind)) return;
  if (timer) return;
  const wait = Math.max(800, (current.page.minInterval || 0) - (Date.now() - current.lastRefresh));
  timer = setTimeout(runRefresh, wait); // debounced: one refresh for a burst of events
}

async function runRefresh() {
  timer = null;
  if (document.hidden) { again = true; return; } // caught up when the tab shows again
  if (running) { again = true; return; }
  running = true;
  try { await render(true); } finally {
    running = false;
    if (again) { again = false; onLive((current.page.events || ["log"])[0]); }
  }
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden && again) { again = false; runRefresh(); }
});

function setLive(state) {
  liveBadge.textContent = state === "live" ? "live" : state;
  liveBadge.className = `live ${state === "live" ? "on" : "off"}`;
}

// ------------------------------------------------------------ who is asking
let unsubscribe = null;

function connect() {
  if (unsubscribe) unsubscribe();
  unsubscribe = null;
  if (mode === "token" && !identity.token) { setLive("no token"); return; }
  setLive("connecting…");
  unsubscribe = subscribe(onLive, setLive);
}

async function setupIdentity() {
  const pick = document.getElementById("acting-as");
  const token = document.getElementById("token");
  try {
    const r = await fetch("/health/ready");
    mode = ((await r.json()).checks || {}).mode || "open";
  } catch { /* the first page load will say what is wrong */ }
  if (mode === "token") {
    pick.hidden = true;
    const label = document.querySelector("label[for='acting-as']");
    label.textContent = "Token";
    label.htmlFor = "token";
    token.hidden = false;
    token.value = identity.token;
    token.addEventListener("change", () => { identity.token = token.value.trim(); connect(); render(); });
    return;
  }
  identity.token = "";
  pick.append(el("option", { value: "" }, "Local operator"));
  try {
    const { people } = await api("/people");
    for (const p of people) {
      const o = el("option", { value: p.person }, `${p.name || p.person} · ${p.role}`);
      if (p.person === identity.actingAs) o.selected = true;
      pick.append(o);
    }
  } catch (err) {
    showBanner(`Could not list people: ${err.message}`);
  }
  if (identity.actingAs && pick.value !== identity.actingAs) identity.actingAs = "";
  pick.addEventListener("change", () => { identity.actingAs = pick.value; render(); });
}

window.addEventListener("hashchange", () => render());
await setupIdentity();
connect();
render();
