"""Mounts every `/solaris` router on the proxy's own FastAPI app."""

from __future__ import annotations

from solaris_hooks import route_guard, routes_admin, routes_alerts, routes_reports, routes_users, web_admin, web_me
from solaris_hooks.api import prefix
from solaris_hooks.quota import QuotaService


def mount_routes(service: QuotaService) -> None:
    from litellm.proxy.proxy_server import app

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
