"""Lead intake: a signal (a lead from a form, an e-mail, another system) is normalized,
deduplicated against recent signals, scored against the ICP profile, and starts a
lead-qualification case when its score reaches the intake threshold.

Every signal is kept in the `signals` table with its outcome:
- `case_started`: a new lead at or above the threshold; its case is `lead_<signal id>`;
- `below_threshold`: a new lead under it (kept, listed, no case);
- `duplicate`: the same e-mail or company domain as an earlier signal received within
  the dedupe window. It is merged into that earlier signal (fields the earlier one
  lacked are filled in, `merged_count` bumped, the merged lead re-scored) and starts
  nothing itself.

Dedupe decides in ONE store transaction (look for the earlier signal, insert or
merge), so two identical signals at once cannot both be new. The case is started
after that commit under an id derived from the signal's, so a retry or the start-up
sweep (`recover`) meets the case instead of making a second one.

Settings come from the `intake:` section of icp.yaml (`load_intake`).
"""

from __future__ import annotations

import contextlib
import pathlib
import re
import secrets
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import msgspec
import yaml

from actors import CaseExists, Runtime
from actors.icp import Profile, load_profile, score
from engine import DataInvalid, parse_duration

WORKFLOW = "lead-qualification"
CASE_STARTED, DUPLICATE, BELOW_THRESHOLD = "case_started", "duplicate", "below_threshold"
OUTCOMES = (CASE_STARTED, DUPLICATE, BELOW_THRESHOLD)
SOURCES = ("form", "email", "api", "import", "referral", "event", "other")

# The lead-qualification data names a signal's fields map to (specs/lead-qualification
# .json), and the shorter names forms tend to use for some of them.
TEXT_FIELDS = ("company_name", "contact_name", "contact_email", "contact_phone", "industry",
               "location", "use_case", "lead_source")
OTHER_FIELDS = ("company_size", "budget_known", "email_valid", "phone_valid",
                "company_verified")
ALIASES = {"email": "contact_email", "company": "company_name", "name": "contact_name",
           "phone": "contact_phone"}

# Addresses anyone can have: their domain says nothing about the company, so it
# neither names the company's domain nor makes two people of it duplicates.
FREE_MAIL = frozenset({
    "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "ymail.com", "outlook.com",
    "hotmail.com", "hotmail.co.uk", "live.com", "msn.com", "icloud.com", "me.com",
    "mac.com", "aol.com", "proton.me", "protonmail.com", "pm.me", "gmx.com", "gmx.de",
    "gmx.net", "web.de", "mail.com", "yandex.com", "yandex.ru", "zoho.com", "qq.com",
    "163.com", "126.com", "fastmail.com", "hey.com", "tutanota.com"})

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})+$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@(?P<domain>[^@\s]+)$")
_SPACES = re.compile(r"\s+")


# ------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class IntakeSettings:
    # 30: contact validation adds at most 10 points later in the case, so a lead under
    # 30 here could not reach the 40 of a manual review (PIPELINE.md table 1) anyway.
    threshold: int = 30
    dedupe_window: float = 30 * 86400.0  # seconds


def load_settings(text: str, source: str = "icp profile") -> IntakeSettings:
    """The `intake:` section of icp.yaml (absent: the defaults); a bad value raises a
    ValueError naming the file and the field."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"{source}: not valid YAML: {e}") from e
    section = raw.get("intake") if isinstance(raw, dict) else None
    if section is None:
        return IntakeSettings()
    if not isinstance(section, dict):
        raise ValueError(f"{source}: intake: must be a mapping such as "
                         "{threshold: 30, dedupe_window: 30d}")
    unknown = sorted(set(section) - {"threshold", "dedupe_window"})
    if unknown:
        raise ValueError(f"{source}: intake.{unknown[0]}: unknown setting (known: "
                         "threshold, dedupe_window)")
    out = IntakeSettings()
    threshold = section.get("threshold", out.threshold)
    if isinstance(threshold, bool) or not isinstance(threshold, int) \
            or not 0 <= threshold <= 100:
        raise ValueError(f"{source}: intake.threshold: must be an integer 0-100, "
                         f"not {threshold!r}")
    window = section.get("dedupe_window", out.dedupe_window)
    try:
        seconds = parse_duration(window)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{source}: intake.dedupe_window: {e}") from None
    return IntakeSettings(threshold, seconds)


def load_intake(path: pathlib.Path) -> tuple[Profile, IntakeSettings]:
    """Profile and intake settings from one icp.yaml (ValueErrors name the file)."""
    text = path.read_text(encoding="utf-8")
    return load_profile(text, str(path)), load_settings(text, str(path))


# ---------------------------------------------------------------------- normalizing
@dataclass(frozen=True)
class Lead:
    source: str
    email: str
    domain: str | None  # the company's domain; None for free-mail without a website
    company: str
    fields: dict[str, Any]  # lead-qualification data names -> values (no Nones)


def _text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise DataInvalid(f"field {name!r} must be a string", field=name, code=1001)
    return value.strip() or None


def _domain(name: str, value: str) -> str:
    # A website may come as "https://www.TechCorp.com/about"; a domain as "techcorp.com".
    try:
        host = urlsplit(value if "://" in value else "//" + value).hostname or ""
    except ValueError:  # "http://[abc": a bracketed host that is no IPv6 address
        host = ""
    host = host.rstrip(".").removeprefix("www.")
    if not _DOMAIN.match(host):
        raise DataInvalid(f"field {name!r} names no domain: {value!r}", field=name,
                          code=1001)
    return host


def normalize(signal: Mapping[str, Any]) -> Lead:
    """Trim every text, lowercase the e-mail, collapse the company's whitespace, map
    short names to the workflow's, and find the company's domain: an explicit
    company_domain or website, else the e-mail's domain unless it is free mail."""
    fields: dict[str, Any] = {}
    for name in TEXT_FIELDS:
        v = _text(name, signal.get(name))
        if v is not None:
            fields[name] = v
    for alias, name in ALIASES.items():
        v = _text(alias, signal.get(alias))
        if v is None:
            continue
        if name in fields and _same(name, fields[name], v):
            continue
        if name in fields:
            raise DataInvalid(f"fields {alias!r} and {name!r} differ; send one", field=alias,
                              code=1001)
        fields[name] = v
    for name in OTHER_FIELDS:
        if signal.get(name) is not None:
            fields[name] = signal[name]
    source = _text("source", signal.get("source")) or "api"
    if source not in SOURCES:
        raise DataInvalid(f"field 'source' must be one of {', '.join(SOURCES)}",
                          field="source", code=1001)
    fields.setdefault("lead_source", source)
    if "company_name" in fields:
        fields["company_name"] = _SPACES.sub(" ", fields["company_name"])
    if "contact_name" in fields:
        fields["contact_name"] = _SPACES.sub(" ", fields["contact_name"])
    email = fields.get("contact_email")
    if email is None:
        raise DataInvalid("missing required field 'contact_email'", field="contact_email",
                          code=1002)
    if fields.get("company_name") is None:
        raise DataInvalid("missing required field 'company_name'", field="company_name",
                          code=1002)
    email = fields["contact_email"] = email.lower()
    m = _EMAIL.match(email)
    if m is None or len(email) > 254 or not _DOMAIN.match(m["domain"]):
        raise DataInvalid(f"field 'contact_email' is not an e-mail address: {email!r}",
                          field="contact_email", code=1001)
    domain = None
    for name in ("company_domain", "website"):
        v = _text(name, signal.get(name))
        if v is not None:
            domain = _domain(name, v.lower())
            break
    else:
        domain = m["domain"]
    if domain in FREE_MAIL:
        domain = None
    return Lead(source, email, domain, fields["company_name"], fields)


def _same(name: str, a: str, b: str) -> bool:
    return a.lower() == b.lower() if name == "contact_email" else a == b


# -------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Outcome:
    """What happened to one signal (for a duplicate: the earlier signal's case)."""
    signal_id: str
    outcome: str
    score: int
    breakdown: list[dict[str, Any]]
    case_id: str | None
    duplicate_of: str | None
    received_at: float


@dataclass(frozen=True)
class SignalRow:
    signal_id: str
    received_at: float
    source: str
    email: str
    domain: str | None
    company: str
    lead: dict[str, Any]
    score: int
    breakdown: list[dict[str, Any]]
    outcome: str
    case_id: str | None  # a duplicate's: the earlier signal's case
    duplicate_of: str | None
    merged_count: int


@dataclass(frozen=True)
class _Recorded:
    outcome: Outcome
    start: tuple[str, dict[str, Any]] | None  # (case id, data) of a case that should exist


_COLUMNS = ("s.id, s.received_at, s.source, s.email, s.domain, s.company, s.payload,"
            " s.score, s.breakdown, s.outcome, COALESCE(s.case_id, p.case_id),"
            " s.duplicate_of, s.merged_count")
_FROM = " FROM signals s LEFT JOIN signals p ON p.id = s.duplicate_of"
# The earlier signal a new one would be merged into: a non-duplicate within the
# window, the e-mail match before the domain match (the same person beats a colleague).
_EARLIER = ("SELECT id, payload, outcome, case_id, domain FROM signals WHERE {col} = ?"
            " AND received_at > ? AND duplicate_of IS NULL"
            " ORDER BY received_at DESC, id DESC LIMIT 1")
_INSERT = ("INSERT INTO signals (id, received_at, source, email, domain, company, payload,"
           " score, breakdown, outcome, case_id, duplicate_of) VALUES"
           " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_MERGE = ("UPDATE signals SET payload = ?, score = ?, breakdown = ?, outcome = ?,"
          " case_id = ?, domain = COALESCE(domain, ?), merged_count = merged_count + 1"
          " WHERE id = ?")
_encode = msgspec.json.encode
_decode = msgspec.json.decode


def _case_id(signal_id: str) -> str:
    return f"lead_{signal_id}"


def _case_data(signal_id: str, lead: dict[str, Any], domain: str | None) -> dict[str, Any]:
    # The signal's id and domain ride along so the case can be traced back to it.
    return {**lead, "signal_id": signal_id, **({"company_domain": domain} if domain else {})}


# --------------------------------------------------------------------------- intake
class Intake:
    def __init__(self, store: Any, runtime: Runtime, profile: Profile,
                 settings: IntakeSettings | None = None) -> None:
        self.store = store
        self.runtime = runtime
        self.profile = profile
        self.settings = settings or IntakeSettings()

    async def receive(self, signal: Mapping[str, Any], signal_id: str | None = None,
                      ) -> Outcome:
        """Take one signal; -> its outcome. A signal id already recorded (a retried
        request) answers with the recorded outcome and records nothing new.
        Raises DataInvalid (located) for a signal that cannot be a lead."""
        lead = normalize(signal)
        # The lead must be valid case data now: a signal recorded as case_started whose
        # case the engine then refused would never get one.
        self.runtime.net(WORKFLOW).validate_data(dict(lead.fields))
        sid = signal_id or secrets.token_hex(8)
        now = self.runtime.clock.now()
        rec = await self.store.write(lambda db: self._record(db, sid, now, lead))
        if rec.start is not None:
            await self._ensure_case(*rec.start)
        return rec.outcome

    def _record(self, db: sqlite3.Connection, sid: str, now: float, lead: Lead) -> _Recorded:
        """The check-and-insert, inside the store's write transaction."""
        old = db.execute(f"SELECT {_COLUMNS}{_FROM} WHERE s.id = ?", (sid,)).fetchone()
        if old is not None:
            return self._replayed(db, _row(old))
        own = score(self.profile, lead.fields)
        breakdown = msgspec.to_builtins(own.breakdown)
        since = now - self.settings.dedupe_window
        earlier = db.execute(_EARLIER.format(col="email"), (lead.email, since)).fetchone()
        if earlier is None and lead.domain is not None:
            earlier = db.execute(_EARLIER.format(col="domain"), (lead.domain, since)
                                 ).fetchone()
        if earlier is None:
            started = own.score >= self.settings.threshold
            case_id = _case_id(sid) if started else None
            db.execute(_INSERT, (sid, now, lead.source, lead.email, lead.domain, lead.company,
                                 _encode(lead.fields).decode(), own.score,
                                 _encode(breakdown).decode(),
                                 CASE_STARTED if started else BELOW_THRESHOLD, case_id, None))
            start = (case_id, _case_data(sid, lead.fields, lead.domain)) if case_id else None
            return _Recorded(Outcome(sid, CASE_STARTED if started else BELOW_THRESHOLD,
                                     own.score, breakdown, case_id, None, now), start)
        # Merge: the earlier signal keeps what it had and gains what it lacked, and is
        # scored again -- the new facts may lift a lead over the threshold.
        pid, payload, p_outcome, p_case, p_domain = earlier
        merged = {**lead.fields, **_decode(payload)}
        rescored = score(self.profile, merged)
        if p_outcome == BELOW_THRESHOLD and rescored.score >= self.settings.threshold:
            p_outcome, p_case = CASE_STARTED, _case_id(pid)
        db.execute(_MERGE, (_encode(merged).decode(), rescored.score,
                            _encode(msgspec.to_builtins(rescored.breakdown)).decode(),
                            p_outcome, p_case, lead.domain, pid))
        db.execute(_INSERT, (sid, now, lead.source, lead.email, lead.domain, lead.company,
                             _encode(lead.fields).decode(), own.score,
                             _encode(breakdown).decode(), DUPLICATE, None, pid))
        start = (p_case, _case_data(pid, merged, p_domain or lead.domain)) if p_case else None
        return _Recorded(Outcome(sid, DUPLICATE, own.score, breakdown, p_case, pid, now),
                         start)

    def _replayed(self, db: sqlite3.Connection, row: SignalRow) -> _Recorded:
        out = Outcome(row.signal_id, row.outcome, row.score, row.breakdown, row.case_id,
                      row.duplicate_of, row.received_at)
        owner = row if row.duplicate_of is None else _row(db.execute(
            f"SELECT {_COLUMNS}{_FROM} WHERE s.id = ?", (row.duplicate_of,)).fetchone())
        if owner.outcome != CASE_STARTED or owner.case_id is None:
            return _Recorded(out, None)
        return _Recorded(out, (owner.case_id, _case_data(owner.signal_id, owner.lead,
                                                         owner.domain)))

    async def _ensure_case(self, case_id: str, data: dict[str, Any]) -> None:
        # Several requests may get here for one case (a lead and its duplicates, a
        # retry): whoever comes first creates it, the others meet CaseExists.
        if await self.store.case_exists(case_id):
            return
        with contextlib.suppress(CaseExists):
            await self.runtime.create(WORKFLOW, case_id, data)

    async def recover(self) -> int:
        """Start the cases of signals recorded as case_started whose case was never
        created (the process died between the two); -> how many."""
        if WORKFLOW not in {n.workflow_id for n in self.runtime.workflows()}:
            return 0  # nothing to start them in (a server without the pipeline)
        rows = await self.store.query(
            f"SELECT {_COLUMNS}{_FROM} WHERE s.outcome = ? AND NOT EXISTS"
            " (SELECT 1 FROM cases c WHERE c.case_id = s.case_id)", (CASE_STARTED,))
        for r in map(_row, rows):
            assert r.case_id is not None
            await self._ensure_case(r.case_id, _case_data(r.signal_id, r.lead, r.domain))
        return len(rows)

    async def signals(self, *, outcome: str | None = None, limit: int = 100,
                      before: tuple[float, str] | None = None) -> list[SignalRow]:
        """Signals newest first, keyset-paginated on (received_at, id) < `before`."""
        where, args = [], []
        if outcome is not None:
            where.append("s.outcome = ?")
            args.append(outcome)
        if before is not None:
            where.append("(s.received_at, s.id) < (?, ?)")
            args += list(before)
        sql = (f"SELECT {_COLUMNS}{_FROM}" + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY s.received_at DESC, s.id DESC LIMIT ?")
        return [_row(r) for r in await self.store.query(sql, (*args, limit))]


async def start_intake(store: Any, runtime: Runtime, icp: pathlib.Path | None,
                       ) -> Intake | None:
    """The server's intake: profile and settings from `icp` (None: no intake), and the
    cases a crash left unstarted, started. A bad icp.yaml raises a located ValueError."""
    if icp is None:
        return None
    intake = Intake(store, runtime, *load_intake(icp))
    await intake.recover()
    return intake


def _row(r: Any) -> SignalRow:
    return SignalRow(r[0], r[1], r[2], r[3], r[4], r[5], _decode(r[6]), r[7], _decode(r[8]),
                     r[9], r[10], r[11], r[12])
