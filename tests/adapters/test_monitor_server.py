"""The server's Monitor follows the store by itself: what commands commit is folded
within about a second, with no request asking -- by the tail process (the default), or
in the event loop as the store handed it on, nothing read back from the log."""

from __future__ import annotations

import pathlib

import anyio
import pytest
from http_kit import in_process
from test_http_errors import create_deal

from adapters.http import app as http_app

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("place", ["process", "loop"])
async def test_the_servers_monitor_folds_new_cases_without_being_asked(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, place: str) -> None:
    monkeypatch.setattr(http_app, "FOLLOW_EVERY", 0.1)
    async with in_process(tmp_path, monitor=place) as client:
        for i in range(3):
            await create_deal(client, f"d{i}")
        monitor = client._transport.app.state.ctx.monitor  # type: ignore[attr-defined]
        with anyio.fail_after(5):
            while {c for c, _item in monitor.open} != {"d0", "d1", "d2"}:
                await anyio.sleep(0.05)
        observed = (monitor.appends_tailed if place == "process"
                    else monitor.appends_handed_on)
        assert observed == monitor.pos == 3
        assert monitor.appends_read == 0
        assert (monitor.appends_tailed + monitor.appends_handed_on) == 3
        assert {o.task for o in monitor.open.values()} >= {"SendToSalesManager"}
