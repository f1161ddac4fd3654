"""Mounts every `/solaris` router on the proxy's own FastAPI app, with the context its
handlers ask for (web.context)."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from solaris_hooks.litellm_proxy import proxy_app
from solaris_hooks.quota import refusal_edge, route_guard
from solaris_hooks.quota.service import QuotaService
from solaris_hooks.web.api import admin as api_admin
from solaris_hooks.web.api import alerts as api_alerts
from solaris_hooks.web.api import bulk as api_bulk
from solaris_hooks.web.api import credits as api_credits
from solaris_hooks.web.api import ledger as api_ledger
from solaris_hooks.web.api import merges as api_merges
from solaris_hooks.web.api import profile as api_profile
from solaris_hooks.web.api import reports as api_reports
from solaris_hooks.web.api import users as api_users
from solaris_hooks.web.context import WebContext, install, installed
from solaris_hooks.web.pages import (
    admin_alerts,
    admin_audit,
    admin_credits,
    admin_exports,
    admin_overview,
    admin_profile,
    admin_user_detail,
    admin_users,
    login,
    me,
)

# In this order: a request is routed to the first route whose path matches, and a 405 names
# the methods of that route's path. `api_profile` ({user_id} alone) must follow every other
# `/solaris/users/...` route.
routers: tuple[APIRouter, ...] = (
    api_admin.router,
    api_users.router,
    api_bulk.router,
    api_credits.router,
    api_merges.router,
    api_ledger.router,
    api_profile.router,
    api_alerts.router,
    api_reports.router,
    login.router,
    admin_overview.router,
    admin_users.router,
    admin_credits.router,
    admin_user_detail.router,
    admin_profile.router,
    admin_exports.router,
    admin_audit.router,
    admin_alerts.router,
    me.router,
)


def include_routes(app: FastAPI, context: WebContext) -> None:
    """Every `/solaris` route on app, its handlers working with context."""
    install(app, context)
    for router in routers:
        app.include_router(router)


def service_context(service: QuotaService) -> WebContext:
    """What the routes see of the proxy's service: its database, settings, reload and metrics."""
    return WebContext(
        database=service.database,
        current_settings=lambda: service.settings,
        reload=service.reload,
        metrics=service.metrics,
    )


def mount_routes(service: QuotaService) -> None:
    app = proxy_app()
    # The callback module may be loaded twice (LiteLLM imports it from a file path when
    # the config sits next to it); mounting twice would duplicate every route.
    if installed(app):
        return
    include_routes(app, service_context(service))
    # Our refusals keep their code, or become an assistant message (refusal_style: message).
    refusal_edge.install(app)
    # Routes whose handlers never call the pre-call hook (pass-through, files, realtime…)
    # are closed at the door unless `routes` opens them.
    route_guard.install(app, lambda: service.settings)
    # The API schema is cached on first use; make sure ours is in it.
    app.openapi_schema = None
