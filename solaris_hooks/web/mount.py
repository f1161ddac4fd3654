"""Mounts every `/solaris` router on the proxy's own FastAPI app."""

from __future__ import annotations

from solaris_hooks.litellm_proxy import proxy_app
from solaris_hooks.quota import route_guard
from solaris_hooks.quota.service import QuotaService
from solaris_hooks.web.api import admin as routes_admin
from solaris_hooks.web.api import alerts as routes_alerts
from solaris_hooks.web.api import reports as routes_reports
from solaris_hooks.web.api import users as routes_users
from solaris_hooks.web.api.base import prefix
from solaris_hooks.web.pages import admin as web_admin
from solaris_hooks.web.pages import me as web_me


def mount_routes(service: QuotaService) -> None:
    app = proxy_app()
    # The callback module may be loaded twice (LiteLLM imports it from a file path when
    # the config sits next to it); mounting twice would duplicate every route.
    if any(getattr(route, "path", None) == f"{prefix}/health" for route in app.routes):
        return
    for module in (routes_admin, routes_users, routes_alerts, routes_reports, web_admin, web_me):
        app.include_router(module.build_router(service))
    # Routes whose handlers never call the pre-call hook (pass-through, files, realtime…)
    # are closed at the door unless `routes` opens them.
    route_guard.install(app, lambda: service.settings)
    # The API schema is cached on first use; make sure ours is in it.
    app.openapi_schema = None
