"""Airtight enforcement, class 3: every route LiteLLM serves has a rule.

LiteLLM's whole route table (its lazily loaded features too), imported in this process and
walked: a new LiteLLM route fails here before it reaches a proxy.
"""

from __future__ import annotations

import importlib
import re

from solaris_hooks.quota.route_rules import route_of_path

# Paths of LiteLLM that are not LLM calls: the admin API, the UI, health, login, settings,
# spend tracking, the MCP servers' admin and OAuth discovery. Anything else must have a route.
admin_prefixes = (
    "/key",
    "/v2/key",
    "/team",
    "/v2/team",
    "/user",
    "/v2/user",
    "/customer",
    "/end_user",
    "/organization",
    "/v2/organization",
    "/spend",
    "/global",
    "/model",
    "/v1/model",
    "/v2/model",
    "/model_group",
    "/model_hub",
    "/model-insights",
    "/models",
    "/v1/models",
    "/ui",
    "/sso",
    "/health",
    "/config",
    "/budget",
    "/tag",
    "/credentials",
    "/guardrails",
    "/v2/guardrails",
    "/apply_guardrail",
    "/policies",
    "/policy",
    "/utils",
    "/v1/mcp/",
    "/access_group",
    "/v1/access_group",
    "/v1/unified_access_group",
    "/jwt",
    "/scim",
    "/cache",
    "/audit",
    "/invitation",
    "/onboarding",
    "/settings",
    "/usage",
    "/prompts",
    "/.well-known",
    "/public",
    "/get",
    "/update",
    "/management",
    "/auto_router",
    "/debug",
    "/vantage",
    "/cloudzero",
    "/search_tools",
    "/project",
    "/claude-code",
    "/telemetry",
    "/schedule",
    "/authorize",
    "/token",
    "/register",
    "/revoke",
    "/introspect",
    "/callback",
    "/oauth",
    "/fallback",
    "/lens",
    "/plugin-proxy",
    "/api/plugins",
    "/v3/login",
    "/v2/login",
    "/login",
    "/router",
    "/reload",
    "/moyai",
    "/gateway",
    "/email",
    "/cost",
    "/coordination_redis",
    "/compliance",
    "/active",
    "/add",
    "/delete",
    "/alerting",
    "/adaptive_router",
    "/test",
    "/upload",
    "/routes",
    "/robots.txt",
    "/redoc",
    "/docs",
    "/openapi.json",
    "/swagger",
    "/_next",
    "/litellm",
    "/lazy",
    "/memory-usage",
    "/liteadmin",
    "/otel-spans",
    "/provider",
    "/session",
    "/v1/logs",
    "/v1/memory",
    "/v1/rust_control_plane",
    "/v1/tool",
    "/v1/traces",
    "/v1/vector_store/",
    "/v1/workflows",
    "/vector_store/",
    "/{mcp_server_name}/authorize",
    "/{mcp_server_name}/register",
    "/{mcp_server_name}/token",
    "/solaris",
)


class TestEveryRouteHasARule:
    def test_every_litellm_path_is_an_llm_route_or_admin(self):
        """Walk LiteLLM's whole route table (its lazily loaded features too): every path is either
        an LLM route with a name (so a rule) or a known admin path. A new LiteLLM route fails here."""
        from litellm.proxy._lazy_features import LAZY_FEATURES
        from litellm.proxy.proxy_server import app

        paths: set[tuple[str, str]] = set()

        def walk(routes, prefix: str = "") -> None:
            for route in routes:
                if hasattr(route, "original_router"):
                    walk(route.original_router.routes, prefix + (route.include_context.prefix or ""))
                elif hasattr(route, "path"):
                    for method in getattr(route, "methods", None) or {"WEBSOCKET"}:
                        paths.add((method, prefix + route.path))

        walk(app.routes)
        for feature in LAZY_FEATURES:
            module = importlib.import_module(feature.module_path)
            for name in ("router", "claude_code_marketplace_router", "scim_router"):
                router = getattr(module, name, None)
                if router is not None and hasattr(router, "routes"):
                    walk(router.routes)
        unruled = sorted(
            path
            for method, path in paths
            if route_of_path(method, re.sub(r"\{[^}]*\}", "x", path)) is None
            and path != "/"
            and not path.startswith(admin_prefixes)
        )
        assert not unruled, unruled
        assert len(paths) > 500  # the walk saw the real table, lazy features included
