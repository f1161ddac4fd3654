"""What the `/solaris` routes work with, put on the app once by `web.mount`.

The routers are module-level objects; a handler asks for this context as a FastAPI
dependency (`context: Context`) instead of closing over the QuotaService, so a route sees
the database, the settings, the reload and the metrics, and nothing of the request path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from solaris_hooks.db.database import Database
from solaris_hooks.quota.metrics import Metrics
from solaris_hooks.settings import Settings

_state_name = "solaris_web"


@dataclass(frozen=True)
class WebContext:
    database: Database
    # A function, not a value: a reload replaces the settings while the app runs.
    current_settings: Callable[[], Settings]
    reload: Callable[[Settings], None]
    metrics: Metrics

    @property
    def settings(self) -> Settings:
        return self.current_settings()


def install(app: FastAPI, context: WebContext) -> None:
    setattr(app.state, _state_name, context)


def installed(app: FastAPI) -> bool:
    return hasattr(app.state, _state_name)


def web_context(request: Request) -> WebContext:
    context: WebContext = getattr(request.app.state, _state_name)
    return context


Context = Annotated[WebContext, Depends(web_context)]
