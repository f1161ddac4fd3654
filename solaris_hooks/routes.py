"""The `/solaris` admin routes, mounted on the proxy's own FastAPI app.

Every route needs an admin key as `Authorization: Bearer …` (the proxy's master key).
Every error is JSON `{"error": {"message", "code"}}` with a 4xx/5xx status, never a
traceback: request validation errors included, through ApiRoute.
"""

from __future__ import annotations

import hmac
import os
import sys
from datetime import datetime
from typing import Callable, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.responses import Response

from solaris_hooks import ledger, outbox
from solaris_hooks.exceptions import DatabaseUnavailable
from solaris_hooks.identity import identity_length_max
from solaris_hooks.logs import log_event
from solaris_hooks.quota import QuotaService

prefix = "/solaris"
credit_tokens_max = 1_000_000_000


class ApiError(Exception):
    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status_code, self.code, self.message = status_code, code, message


def _error_response(status_code: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "code": code}}, status_code=status_code)


def _describe(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item.get("loc", ()) if part not in ("body",)) or "body"
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


class ApiRoute(APIRoute):
    """Turns our errors and FastAPI's validation errors into readable JSON answers."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as error:
                return _error_response(422, "invalid_request", _describe(error))
            except ApiError as error:
                return _error_response(error.status_code, error.code, error.message)
            except DatabaseUnavailable:
                return _error_response(503, "database_unavailable", "the ledger database is unreachable; try again shortly")

        return handle


def _master_key() -> str | None:
    proxy_server = sys.modules.get("litellm.proxy.proxy_server")
    return getattr(proxy_server, "master_key", None) or os.environ.get("LITELLM_MASTER_KEY") or None


def require_admin(request: Request) -> str:
    """The caller's actor name for the ledger; raises 401 unless the key is an admin key."""
    authorization = request.headers.get("authorization", "")
    scheme, _, presented = authorization.partition(" ")
    master_key = _master_key()
    if scheme.lower() != "bearer" or not presented.strip():
        raise ApiError(401, "unauthorized", "missing admin key: send `Authorization: Bearer <master key>`")
    if not master_key or not hmac.compare_digest(presented.strip().encode(), master_key.encode()):
        raise ApiError(401, "unauthorized", "invalid admin key")
    return "master_key"


class AccountOut(BaseModel):
    user_id: str
    status: str
    credited_tokens: int
    used_tokens: int
    reserved_tokens: int
    remaining_tokens: int


class AddTokensIn(BaseModel):
    tokens: int = Field(gt=0, le=credit_tokens_max, description="Platform tokens to add.")
    reason: str = Field(min_length=1, max_length=500, description="Why, for the ledger.")


class AlertOut(BaseModel):
    id: int
    user_id: str
    kind: Literal["usage", "credit"]
    threshold: float | None = Field(description="Usage fraction that raised it; 1.0 is the block notice.")
    status: Literal[outbox.statuses]  # type: ignore[valid-type]
    attempts: int
    last_error: str | None
    recipients: str | None
    credited_tokens: int
    used_tokens: int
    tokens: int | None = Field(description="Tokens credited, for a credit receipt.")
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None


class AlertPage(BaseModel):
    alerts: list[AlertOut]
    total: int
    limit: int
    offset: int


class HealthOut(BaseModel):
    status: str
    database: str


def _check_user_id(user_id: str) -> str:
    if not user_id.strip() or len(user_id) > identity_length_max:
        raise ApiError(422, "invalid_user_id", f"user_id must be 1 to {identity_length_max} characters")
    return user_id


def build_router(service: QuotaService) -> APIRouter:
    router = APIRouter(prefix=prefix, tags=["solaris"], route_class=ApiRoute, dependencies=[Depends(require_admin)])

    @router.get("/health", response_model=HealthOut)
    async def health() -> HealthOut | JSONResponse:
        try:
            async with service.connection() as connection:
                await connection.execute("SELECT 1")
        except DatabaseUnavailable:
            return JSONResponse({"status": "degraded", "database": "unreachable"}, status_code=503)
        return HealthOut(status="ok", database="ok")

    @router.get("/users/{user_id}", response_model=AccountOut)
    async def get_user(user_id: str) -> AccountOut:
        async with service.connection() as connection:
            found = await ledger.balance(connection, _check_user_id(user_id))
        if found is None:
            raise ApiError(404, "user_not_found", f"no user {user_id!r}: users appear after their first call or credit")
        return AccountOut(**found.as_dict())

    @router.post("/users/{user_id}/add-tokens", response_model=AccountOut)
    async def add_tokens(user_id: str, body: AddTokensIn, actor: str = Depends(require_admin)) -> AccountOut:
        async with service.connection() as connection:
            updated = await ledger.credit(
                connection,
                user_id=_check_user_id(user_id),
                tokens=body.tokens,
                default_tokens=service.settings.default_tokens_per_user,
                actor=actor,
                reason=body.reason,
                thresholds=service.settings.alert_thresholds,
            )
        log_event("credited", user_id=user_id, tokens=body.tokens, actor=actor)
        return AccountOut(**updated.as_dict())

    @router.get("/alerts", response_model=AlertPage)
    async def alerts(
        status: Literal[outbox.statuses] | None = None,  # type: ignore[valid-type]
        user_id: str | None = Query(None, min_length=1, max_length=identity_length_max),
        limit: int = Query(50, ge=1, le=500),
        offset: int = Query(0, ge=0, le=10_000_000),
    ) -> AlertPage:
        async with service.connection() as connection:
            rows, total = await outbox.list_alerts(connection, status=status, user_id=user_id, limit=limit,
                                                   offset=offset)
        return AlertPage(alerts=[AlertOut(**row) for row in rows], total=total, limit=limit, offset=offset)

    @router.post("/alerts/{alert_id}/retry", response_model=AlertOut)
    async def retry_alert(alert_id: int = Path(ge=1, le=2**63 - 1), actor: str = Depends(require_admin)) -> AlertOut:
        async with service.connection() as connection:
            row, previous = await outbox.retry_dead(connection, alert_id)
        if row is None:
            raise ApiError(404, "alert_not_found", f"no alert with id {alert_id}")
        if previous != "dead":
            raise ApiError(409, "alert_not_dead", f"only dead alerts can be retried; alert {alert_id} is {previous}")
        log_event("alert_requeued", alert_id=alert_id, user_id=row["user_id"], actor=actor)
        return AlertOut(**row)

    return router


def mount_routes(service: QuotaService) -> None:
    from litellm.proxy.proxy_server import app

    # The callback module may be loaded twice (LiteLLM imports it from a file path when
    # the config sits next to it); the second mount would shadow nothing but duplicates.
    if any(getattr(route, "path", None) == f"{prefix}/health" for route in app.routes):
        return
    app.include_router(build_router(service))
