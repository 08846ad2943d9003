"""Notification channels: where outbox rows go, and how each kind is delivered.

The outbox stores only *what* to say and to whom (`channel`, `target`); *how* to
reach a channel -- URLs, SMTP hosts, credentials -- lives in one deployment file,
`channels.yaml`, read when the server starts and consulted at delivery time. A Slack
incoming-webhook URL is a secret, so the file may name the environment variable
that holds it (`url_env`) instead of the URL itself; nothing secret reaches a row,
a log line or an API answer (errors have the URL replaced by the channel's name).

    webhook: {url: http://127.0.0.1:9000/hook}     # POST JSON {key, topic, subject, ...}
    slack: {url_env: CASELOOP_SLACK_WEBHOOK}        # Slack-compatible: POST {"text": ...}
    email: {host: 127.0.0.1, port: 8025, sender: caseloop@acme.com}
    outbox: {attempts: 8, base_delay: 60, max_delay: 3600, jitter: 0.2, lease: 300}

A channel that is absent (or whose `url_env` is unset) is not `configured()`: the SLA
policy creates no notices for it. Delivery succeeds or raises `DeliveryFailed` with
a message fit for the outbox's `last_error`.
"""

from __future__ import annotations

import email.message
import os
import pathlib
import re
from typing import Annotated, Any

import aiosmtplib
import httpx
import msgspec
from msgspec import Meta

from adapters.config import load_yaml

Positive = Annotated[float, Meta(gt=0)]


class DeliveryFailed(Exception):
    """This attempt did not deliver; the outbox retries later (message -> last_error),
    unless the receiver refused for good (`permanent`: a webhook's 404 or 410, an SMTP
    server's 5xx), which no retry can change: a dead letter at once, for a person to
    look at (and retry by hand once the address or the receiver is fixed)."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


# A receiver's 4xx says the request itself is wrong (gone, forbidden, malformed): the
# same request will be refused again. These four say "not now" instead.
_TRY_AGAIN = {408, 409, 425, 429}


class WebhookChannel(msgspec.Struct, forbid_unknown_fields=True):
    """An HTTP endpoint, given as `url` or as the environment variable holding it."""

    url: str | None = None
    url_env: str | None = None
    timeout: Positive = 10.0  # seconds for the whole request

    def resolve(self) -> str | None:
        """The URL now (an environment variable may be set or rotated at any time)."""
        if self.url:
            return self.url
        return os.environ.get(self.url_env or "") or None


class EmailChannel(msgspec.Struct, forbid_unknown_fields=True):
    host: str
    sender: str
    port: Annotated[int, Meta(ge=1, le=65535)] = 25
    starttls: bool = False  # upgrade a plain connection (submission port 587)
    tls: bool = False  # implicit TLS from the start (port 465)
    username_env: str | None = None  # credentials are read from the environment only
    password_env: str | None = None
    timeout: Positive = 10.0


class OutboxSettings(msgspec.Struct, forbid_unknown_fields=True):
    """How the worker retries: try `attempts` times, waiting base_delay * 2**(n-1)
    seconds after the n-th failure, capped at max_delay, each wait stretched or shrunk
    by up to `jitter` (a share) so that a receiver's outage does not end in a stampede."""

    attempts: Annotated[int, Meta(ge=1, le=100)] = 8
    base_delay: Positive = 60.0
    max_delay: Positive = 3600.0
    jitter: Annotated[float, Meta(ge=0, lt=1)] = 0.2
    lease: Positive = 300.0  # a claim older than this belongs to a crashed worker
    poll: Positive = 1.0  # look for due rows at least this often (other writers)
    concurrency: Annotated[int, Meta(ge=1, le=256)] = 8  # deliveries in flight at once
    timeout: Positive = 30.0  # the most one delivery may take, whatever the channel


class Message(msgspec.Struct, frozen=True):
    """What the outbox hands a channel: one row's content."""

    key: str
    case_id: str
    topic: str
    channel: str
    target: str
    subject: str
    body: str
    payload: dict[str, Any] = {}


class Channels(msgspec.Struct, forbid_unknown_fields=True):
    webhook: WebhookChannel | None = None
    slack: WebhookChannel | None = None
    email: EmailChannel | None = None
    outbox: OutboxSettings = msgspec.field(default_factory=OutboxSettings)

    def configured(self) -> set[str]:
        """The channels a notice may be created for: present and, for the webhooks,
        with a URL resolvable right now."""
        out = {name for name, ch in (("webhook", self.webhook), ("slack", self.slack))
               if ch is not None and ch.resolve()}
        if self.email is not None:
            out.add("email")
        return out

    async def deliver(self, msg: Message, client: httpx.AsyncClient) -> None:
        """Deliver one message through its channel, or raise DeliveryFailed."""
        if msg.channel == "email":
            if self.email is None:
                raise _unconfigured("email")
            await send_email(self.email, msg)
            return
        if msg.channel not in ("webhook", "slack"):
            raise DeliveryFailed(f"unknown channel {msg.channel!r} (webhook, slack, email)")
        hook = self.webhook if msg.channel == "webhook" else self.slack
        url = hook.resolve() if hook is not None else None
        if hook is None or url is None:
            raise _unconfigured(msg.channel, hook)
        body = (slack_body(msg) if msg.channel == "slack" else webhook_body(msg))
        await post_json(client, url, body, hook.timeout, msg.channel, msg.key)


def webhook_body(msg: Message) -> dict[str, Any]:
    return {"key": msg.key, "topic": msg.topic, "subject": msg.subject, "body": msg.body,
            "case_id": msg.case_id, "target": msg.target, "payload": msg.payload}


def slack_body(msg: Message) -> dict[str, Any]:
    # Incoming webhooks post to the channel they were created for; `text` is the one
    # field every Slack-compatible receiver (Mattermost, Rocket.Chat...) understands.
    return {"text": f"*{msg.subject}*\n{msg.body}"}


async def post_json(client: httpx.AsyncClient, url: str, body: dict[str, Any],
                    timeout: float, name: str, key: str) -> None:
    try:
        # The key lets a receiver drop the duplicate an at-least-once outbox may send.
        r = await client.post(url, json=body, timeout=timeout,
                              headers={"Idempotency-Key": key})
    except httpx.HTTPError as exc:
        raise DeliveryFailed(_redact(f"{name}: {type(exc).__name__}: {exc}", url,
                                     name)) from None
    if not 200 <= r.status_code < 300:
        raise DeliveryFailed(_redact(f"{name}: HTTP {r.status_code} {r.text[:200]!r}",
                                     url, name),
                             permanent=400 <= r.status_code < 500
                             and r.status_code not in _TRY_AGAIN)


async def send_email(cfg: EmailChannel, msg: Message) -> None:
    m = email.message.EmailMessage()
    m["From"] = cfg.sender
    m["To"] = msg.target
    m["Subject"] = msg.subject
    m["Message-ID"] = f"<{re.sub(r'[^A-Za-z0-9._-]', '_', msg.key)}@caseloop>"
    m.set_content(msg.body)
    user = os.environ.get(cfg.username_env) if cfg.username_env else None
    password = os.environ.get(cfg.password_env) if cfg.password_env else None
    try:
        await aiosmtplib.send(m, hostname=cfg.host, port=cfg.port, username=user,
                              password=password, start_tls=cfg.starttls, use_tls=cfg.tls,
                              timeout=cfg.timeout)
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise DeliveryFailed(f"email: {type(exc).__name__}: {exc}",
                             permanent=_refused_for_good(exc)) from None


def _refused_for_good(exc: BaseException) -> bool:
    """An SMTP 5xx reply (no such mailbox, sender refused, bad credentials) is final;
    4xx ones (mailbox busy, greylisting) and lost connections are worth another try."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return bool(exc.recipients) and all(r.code >= 500 for r in exc.recipients)
    return isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code >= 500


def load_channels(path: str | pathlib.Path) -> Channels:
    """Read channels.yaml; a bad entry stops the start with the file and field named."""
    ch = load_yaml(path, Channels, "channels")
    for name, hook in (("webhook", ch.webhook), ("slack", ch.slack)):
        if hook is None:
            continue
        if bool(hook.url) == bool(hook.url_env):
            raise ValueError(f"{path}: /{name}: give exactly one of url and url_env")
        if hook.url and not re.match(r"^https?://", hook.url):
            raise ValueError(f"{path}: /{name}/url: an http:// or https:// URL")
    if ch.email is not None and "@" not in ch.email.sender:
        raise ValueError(f"{path}: /email/sender: an e-mail address")
    if ch.email is not None and ch.email.starttls and ch.email.tls:
        raise ValueError(f"{path}: /email: starttls and tls exclude each other")
    if ch.outbox.max_delay < ch.outbox.base_delay:
        raise ValueError(f"{path}: /outbox/max_delay: must be at least base_delay")
    if ch.outbox.lease <= ch.outbox.timeout:  # else a delivery still running is claimed again
        raise ValueError(f"{path}: /outbox/lease: must be longer than timeout")
    return ch


def _unconfigured(name: str, hook: WebhookChannel | None = None) -> DeliveryFailed:
    if hook is not None and hook.url_env:
        return DeliveryFailed(f"{name}: environment variable {hook.url_env} is not set")
    return DeliveryFailed(f"{name}: channel not configured (channels file, --channels)")


def _redact(text: str, url: str, name: str) -> str:
    # Webhook URLs carry their credential in the path: never let one reach a row.
    return text.replace(url, f"<{name} url>")
