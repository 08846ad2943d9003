// DOM building and number formatting shared by the pages.
// Everything that comes from the API is put into the page as text (textContent via
// el()'s string children, attributes via setAttribute): never parsed as HTML.

export function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

export function card(title, subtitle, ...body) {
  return el("section", { class: "card" },
    el("header", {}, el("h2", {}, title), subtitle ? el("p", { class: "sub" }, subtitle) : null),
    ...body);
}

// `hint` may quote commands between backticks: they are set in code type.
export function empty(message, hint) {
  const parts = hint ? hint.split("`").map((t, i) => (i % 2 ? el("code", {}, t) : t)) : [];
  return el("div", { class: "empty" }, el("p", {}, message), hint ? el("p", { class: "hint" }, parts) : null);
}

export const SIMULATE_HINT =
  "To see the dashboard at work, fill a store with `caseloop simulate --db sim.db` and serve it: " +
  "`caseloop serve --db sim.db`.";

export function errorBox(err) {
  return el("div", { class: "error", role: "alert" }, String(err && err.message ? err.message : err));
}

export function table(headers, rows, opts = {}) {
  const head = el("tr", {}, headers.map((h) => el("th", typeof h === "object" && h.num ? { class: "num" } : {},
    typeof h === "object" ? h.label : h)));
  const body = rows.map((r) => el("tr", r.attrs || {}, r.cells.map((c) =>
    c && c.num !== undefined ? el("td", { class: "num" }, c.num) : el("td", {}, c))));
  return el("div", { class: "table-wrap" }, el("table", opts.class ? { class: opts.class } : {},
    el("thead", {}, head), el("tbody", {}, body)));
}

export const num = (v) => ({ num: v });

export function fmtInt(n) {
  return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US");
}

export function fmtPct(share, digits = 1) {
  // `share` in 0..1
  return share === null || share === undefined ? "–" : `${(100 * share).toFixed(digits)} %`;
}

export function fmtPercent(p, digits = 1) {
  // `p` already in percent
  return p === null || p === undefined ? "–" : `${Number(p).toFixed(digits)} %`;
}

export function fmtHours(h) {
  if (h === null || h === undefined || Number.isNaN(h)) return "–";
  if (h === 0) return "0 h";
  if (h < 1) return `${Math.max(1, Math.round(h * 60))} min`;
  if (h < 48) return `${h < 10 ? h.toFixed(1) : Math.round(h)} h`;
  const d = h / 24;
  return `${d < 10 ? d.toFixed(1) : Math.round(d)} d`;
}

export function fmtMoney(v) {
  if (v === null || v === undefined) return "–";
  if (v >= 1e9) return `$${(v / 1e9).toFixed(1)}B`;
  if (v >= 1e6) return `$${(v / 1e6).toFixed(1)}M`;
  if (v >= 1e3) return `$${(v / 1e3).toFixed(0)}K`;
  return `$${Math.round(v)}`;
}

const dateTime = new Intl.DateTimeFormat(undefined, {
  month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
});
const dateOnly = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
const dayHour = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit" });

export function fmtTime(iso) {
  if (!iso) return "–";
  const t = typeof iso === "number" ? new Date(iso * 1000) : new Date(iso);
  return Number.isNaN(t.getTime()) ? String(iso) : dateTime.format(t);
}

export function fmtDay(epochSeconds, hourly) {
  return (hourly ? dayHour : dateOnly).format(new Date(epochSeconds * 1000));
}

export function fmtRelative(iso, now = Date.now()) {
  if (!iso) return "–";
  const h = (new Date(iso).getTime() - now) / 3.6e6;
  return h >= 0 ? `in ${fmtHours(h)}` : `${fmtHours(-h)} ago`;
}

export function badge(text, kind) {
  return el("span", { class: `badge ${kind || ""}` }, text);
}

export function kpi(label, value, note) {
  return el("div", { class: "kpi" }, el("div", { class: "kpi-value" }, value),
    el("div", { class: "kpi-label" }, label), note ? el("div", { class: "kpi-note" }, note) : null);
}

export function caseLink(caseId) {
  return el("a", { href: `#/case/${encodeURIComponent(caseId)}`, class: "mono" }, caseId);
}

export function words(id) {
  // "deal-approval-gate" -> "Deal approval gate"; "SendToLegal" -> "Send to legal"
  const s = String(id).replace(/[-_]+/g, " ").replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase();
  return s.charAt(0).toUpperCase() + s.slice(1);
}

export function select(options, value, onChange, attrs = {}) {
  const s = el("select", attrs, options.map(([v, label]) => {
    const o = el("option", { value: v }, label);
    if (v === value) o.selected = true;
    return o;
  }));
  s.addEventListener("change", () => onChange(s.value));
  return s;
}
