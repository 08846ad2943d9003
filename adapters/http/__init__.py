"""The HTTP adapter: the tutorial's API on Starlette, served by uvicorn.

    from adapters.http import create_app, Settings
    app = create_app(Settings(db="caseloop.db"))

Kept import-light: `adapters.client` imports the body Structs from this package
without loading the server.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(name)
