"""Actions that hand work to another system: e-signature, invoicing, billing set-up.

With a webhook configured, the action POSTs the work item to it (JSON, with an
`Idempotency-Key` of case and item, so a retried or re-run POST is recognisable) and
the work item waits: the other system calls back with
`POST /api/v1/cases/{case_id}/signals/{task}` (result and output data), which
completes it. A failed POST (connection error, non-2xx) is retried by the runtime's
retry policy and ends as an incident. Each POST is made once per work item in the
normal run; after a crash between the POST and the runtime recording the hand-over it
is made again with the same key (at least once).

Without a webhook (local mode, the tutorial) the action completes itself after
`local_delay` on the runtime's clock, with `local_result`, so the pipeline still runs
through on its own.

    # integrations.yaml
    callback_base: http://127.0.0.1:8080
    actions:
      e_signature: {webhook_env: CASELOOP_ESIGN_WEBHOOK, local_delay: 10s, local_result: signed}
      send_invoice: {webhook: https://billing.example/invoices, local_delay: 5s}
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import httpx
import msgspec

from actors import ActionRegistry
from actors.actions import AWAIT_CALLBACK, ActionContext, Handler
from adapters.config import load_yaml
from engine import parse_duration


class Integration(msgspec.Struct, forbid_unknown_fields=True):
    webhook: str | None = None
    webhook_env: str | None = None  # the URL from this environment variable (secrets)
    local_delay: str = "0s"
    local_result: str | None = None
    timeout: float = 10.0  # seconds per POST

    def url(self) -> str | None:
        if self.webhook_env and os.environ.get(self.webhook_env):
            return os.environ[self.webhook_env]
        return self.webhook


class Integrations(msgspec.Struct, forbid_unknown_fields=True):
    callback_base: str = "http://127.0.0.1:8080"
    actions: dict[str, Integration] = {}


def load_integrations(path: str | pathlib.Path) -> Integrations:
    conf = load_yaml(path, Integrations, "integrations")
    for name, i in conf.actions.items():
        try:
            parse_duration(i.local_delay)
        except ValueError as exc:
            raise ValueError(f"{path}: /actions/{name}/local_delay: {exc}") from None
        url = i.url()
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"{path}: /actions/{name}/webhook: not an http(s) URL")
    return conf


def webhook_action(url: str, callback_base: str, timeout: float) -> Handler:
    async def post(ctx: ActionContext) -> Any:
        key = f"{ctx.case_id}:{ctx.item}"
        body = {"key": key, "action": ctx.action, "case_id": ctx.case_id,
                "workflow_id": ctx.workflow_id, "task": ctx.task, "item": ctx.item,
                "data": ctx.data, "attempt": ctx.attempt,
                "callback_url": f"{callback_base.rstrip('/')}/api/v1/cases/{ctx.case_id}"
                                f"/signals/{ctx.task}"}
        async with httpx.AsyncClient(timeout=timeout) as client:
            r = await client.post(url, json=body, headers={"Idempotency-Key": key})
        if not 200 <= r.status_code < 300:
            raise RuntimeError(f"webhook {url} answered {r.status_code}")
        return AWAIT_CALLBACK

    return post


def local_action(result: str | None) -> Handler:
    async def done(ctx: ActionContext) -> dict[str, Any]:
        return {"result": result} if result is not None else {}

    return done


def register_integrations(reg: ActionRegistry, conf: Integrations) -> list[str]:
    """Register each configured action; -> a line per action saying how it runs."""
    said = []
    for name, i in conf.actions.items():
        url = i.url()
        if url is not None:
            reg.register(name, webhook_action(url, conf.callback_base, i.timeout),
                         callback=True)
            said.append(f"{name}: webhook, waits for its callback")
        else:
            reg.register(name, local_action(i.local_result),
                         delay=parse_duration(i.local_delay))
            said.append(f"{name}: local mode, completes itself after {i.local_delay}")
    return said
