// The API as the pages use it: JSON in and out, the user's identity on every call
// (open mode: X-Caseloop-User naming a person of roles.yaml, or nobody -- the local
// operator; token mode: Authorization: Bearer), and errors as exceptions whose message
// is the API's own text, for the page to show. Nothing fails silently.

const PREFIX = "/api/v1";
const ACTING_AS = "caseloop.actingAs";
const TOKEN = "caseloop.token";

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export const identity = {
  get actingAs() { return localStorage.getItem(ACTING_AS) || ""; },
  set actingAs(v) { if (v) localStorage.setItem(ACTING_AS, v); else localStorage.removeItem(ACTING_AS); },
  // A token lives for the browser session only: it is a credential.
  get token() { return sessionStorage.getItem(TOKEN) || ""; },
  set token(v) { if (v) sessionStorage.setItem(TOKEN, v); else sessionStorage.removeItem(TOKEN); },
  headers() {
    const h = {};
    if (this.token) h.Authorization = `Bearer ${this.token}`;
    else if (this.actingAs) h["X-Caseloop-User"] = this.actingAs;
    return h;
  },
};

function describe(status, body, fallback) {
  const e = body && body.error;
  if (!e) return `${status} ${fallback}`;
  const details = (e.details || []).filter((d) => d.problem && d.problem !== e.message)
    .map((d) => `${d.field}: ${d.problem}`).join("; ");
  return `${e.message}${details ? ` (${details})` : ""} [${status}, code ${e.code}]`;
}

export async function api(path, { method = "GET", body, query } = {}) {
  let url = PREFIX + path;
  if (query) {
    const q = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined && v !== null && v !== ""));
    if ([...q].length) url += `?${q}`;
  }
  const headers = { Accept: "application/json", ...identity.headers() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let r;
  try {
    r = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new ApiError(0, `Cannot reach the server (${err.message}). Is \`caseloop serve\` running?`);
  }
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!r.ok) throw new ApiError(r.status, describe(r.status, data, r.statusText || "error"), data);
  if (data === null && text) throw new ApiError(r.status, `Not JSON from ${path}: ${text.slice(0, 200)}`);
  return data;
}

// Live updates. Open mode: EventSource (reconnects by itself, sends Last-Event-ID).
// Token mode: EventSource cannot send an Authorization header, so the same stream is
// read through fetch, reconnecting by hand.
export function subscribe(onEvent, onState) {
  if (identity.token) return subscribeWithFetch(onEvent, onState);
  const es = new EventSource(`${PREFIX}/events/stream`);
  es.addEventListener("open", () => onState("live"));
  es.addEventListener("error", () => onState(es.readyState === EventSource.CLOSED ? "closed" : "reconnecting"));
  for (const kind of ["hello", "log", "recommendations"]) {
    es.addEventListener(kind, (e) => onEvent(kind, JSON.parse(e.data)));
  }
  return () => es.close();
}

function subscribeWithFetch(onEvent, onState) {
  const abort = new AbortController();
  let lastId = "";
  let retry = 2000;
  async function once() {
    const headers = { Accept: "text/event-stream", ...identity.headers() };
    if (lastId) headers["Last-Event-ID"] = lastId;
    const r = await fetch(`${PREFIX}/events/stream`, { headers, signal: abort.signal });
    if (!r.ok) throw new ApiError(r.status, `live updates refused: ${r.status}`);
    onState("live");
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let kind = "message";
        let data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) kind = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
          else if (line.startsWith("id: ")) lastId = line.slice(4);
          else if (line.startsWith("retry: ")) retry = Number(line.slice(7)) || retry;
        }
        if (data) onEvent(kind, JSON.parse(data));
      }
    }
  }
  (async () => {
    while (!abort.signal.aborted) {
      let state = "reconnecting";
      try { await once(); } catch (err) {
        if (abort.signal.aborted) return;
        if (err instanceof ApiError) state = `refused (${err.status})`;
      }
      onState(state);
      await new Promise((ok) => setTimeout(ok, retry));
    }
  })();
  return () => abort.abort();
}
