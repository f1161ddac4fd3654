"""Closes, at the door, every LLM route of the proxy whose rule does not let calls through.

Many LiteLLM routes never call the pre-call hook (provider pass-through, files, batches,
assistants, realtime …), so a rule checked only there would leave them open. The guard
wraps the proxy's router: a request whose path is an LLM route (`route_rules.route_of_path`)
with no rule that opens it gets the same readable 403 the hook gives, before LiteLLM
reads its body; every other request (admin API, UI, health, /solaris) passes untouched.

Mount it once, with `install(app, lambda: service.settings)`, from the routes module.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from solaris_hooks import messages
from solaris_hooks.exceptions import RouteClosed
from solaris_hooks.quota.route_rules import check_route, route_of_path
from solaris_hooks.settings import Settings

# A WebSocket close reason must fit in a control frame (123 bytes).
close_reason_bytes_max = 120
policy_violation_close_code = 1008


class RouteGuard:
    """ASGI middleware: answers 403 for LLM routes that no rule opens."""

    def __init__(self, app: ASGIApp, settings: Callable[[], Settings]) -> None:
        self.app = app
        self._settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            route = route_of_path(_method(scope), _path(scope))
            if route is not None:
                settings = self._settings()
                try:
                    check_route(route, settings.routes)
                except RouteClosed as refusal:
                    await _refuse(scope, send, refusal, settings)
                    return
        await self.app(scope, receive, send)


def _method(scope: Scope) -> str:
    return str(scope.get("method") or "GET") if scope["type"] == "http" else "WEBSOCKET"


def _path(scope: Scope) -> str:
    """The path as the proxy's routes see it, without the server's root path."""
    path = str(scope.get("path") or "/")
    root = str(scope.get("root_path") or "").rstrip("/")
    if root and path.startswith(root + "/"):
        path = path[len(root) :]
    return path


def refusal_body(refusal: RouteClosed, locale: str) -> dict:
    text = messages.render(refusal.message_key, locale, **refusal.params)
    return {"error": {"message": text, "type": refusal.error_type, "param": None, "code": refusal.message_key}}


async def _refuse(scope: Scope, send: Send, refusal: RouteClosed, settings: Settings) -> None:
    body = json.dumps(refusal_body(refusal, settings.locale)).encode("utf-8")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-should-retry", b"false"),
    ]
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": refusal.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    elif "websocket.http.response" in (scope.get("extensions") or {}):
        await send({"type": "websocket.http.response.start", "status": refusal.status_code, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        reason = body.decode("utf-8").encode("utf-8")[:close_reason_bytes_max].decode("utf-8", "ignore")
        await send({"type": "websocket.close", "code": policy_violation_close_code, "reason": reason})


def install(app: Starlette, settings: Callable[[], Settings]) -> None:
    """Wrap the app's router with the guard (once, however often it is called)."""
    router = app.router
    if isinstance(router.middleware_stack, RouteGuard):
        return
    router.middleware_stack = RouteGuard(router.middleware_stack, settings)
