"""`/solaris` health, metrics, audit trail and settings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import Depends, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from solaris_hooks.admin.doctor import overspend_summary
from solaris_hooks.db import audit
from solaris_hooks.db.queries import sql
from solaris_hooks.exceptions import DatabaseUnavailable, InvalidInput, SettingsError
from solaris_hooks.logs import log_event
from solaris_hooks.quota import metrics
from solaris_hooks.quota.identity import identity_length_max
from solaris_hooks.settings import describe_settings, load_settings
from solaris_hooks.web.api.base import authorize, line_pattern, new_router
from solaris_hooks.web.auth import Actor
from solaris_hooks.web.context import Context

page_size_max = 500


# Accounts over their allowance that /solaris/health names, and calls it names for each.
health_overspend_examples_max = 3
health_overspend_calls_max = 3


class OverspentCallOut(BaseModel):
    ledger_id: int
    kind: str
    call_id: str | None
    model: str | None
    raw_tokens: int | None
    charged_tokens: int
    credited_delta: int
    reason: str | None  # e.g. "unmetered call: the database was unreachable (fail_mode: open)"
    at: datetime


class OverspentAccountOut(BaseModel):
    user_id: str
    credited_tokens: int
    used_tokens: int
    over_tokens: int
    calls_over: int = Field(description="Ledger rows of the current overspend; `calls` lists the first ones")
    calls: list[OverspentCallOut]


class OverspendOut(BaseModel):
    accounts: int = Field(description="Accounts whose used tokens exceed their credited tokens")
    examples: list[OverspentAccountOut]


class HealthOut(BaseModel):
    status: str
    database: str
    # Only when some account is over: the proxy still serves (status stays "ok"), but an
    # operator must look (`solaris doctor` lists more).
    overspend: OverspendOut | None = None


class AuditRowOut(BaseModel):
    id: int
    actor: str
    action: str
    user_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    details: dict[str, Any] | None
    created_at: datetime


class AuditPage(BaseModel):
    rows: list[AuditRowOut]
    total: int
    limit: int
    offset: int


class SettingOut(BaseModel):
    value: Any
    source: str


class SettingsOut(BaseModel):
    settings: dict[str, SettingOut]


def effective() -> SettingsOut:
    return SettingsOut(
        settings={name: SettingOut.model_validate(described) for name, described in describe_settings().items()}
    )


router = new_router()


# A 503 here is the health answer itself (status "degraded"), not an error.
@router.get(
    "/health",
    response_model=HealthOut,
    response_model_exclude_unset=True,
    summary="Is the ledger database reachable? Has any account used more than it was credited?",
    responses={503: {"model": HealthOut, "description": "The ledger database is unreachable"}},
)
async def health(context: Context) -> HealthOut | JSONResponse:
    try:
        async with context.database.connection() as connection:
            await connection.execute(sql("web/health_check"))
            accounts, examples = await overspend_summary(
                connection, health_overspend_examples_max, health_overspend_calls_max
            )
    except DatabaseUnavailable:
        return JSONResponse({"status": "degraded", "database": "unreachable"}, status_code=503)
    if not accounts:
        return HealthOut(status="ok", database="ok")
    overspend = OverspendOut(
        accounts=accounts,
        examples=[
            OverspentAccountOut(
                user_id=example.user_id,
                credited_tokens=example.credited_tokens,
                used_tokens=example.used_tokens,
                over_tokens=example.over_tokens,
                calls_over=example.calls_over,
                calls=[OverspentCallOut.model_validate(call) for call in example.calls],
            )
            for example in examples
        ],
    )
    return HealthOut(status="ok", database="ok", overspend=overspend)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def prometheus_metrics(context: Context) -> Response:
    async with context.database.connection() as connection:
        body = await context.metrics.render(connection)
    return Response(body, media_type=metrics.content_type)


@router.get("/audit", response_model=AuditPage, summary="Admin actions, newest first")
async def audit_trail(
    context: Context,
    user_id: str | None = Query(None, min_length=1, max_length=identity_length_max, pattern=line_pattern),
    action: str | None = Query(None, min_length=1, max_length=50, pattern=line_pattern),
    limit: int = Query(50, ge=1, description=f"Capped at {page_size_max}."),
    offset: int = Query(0, ge=0, le=10**9),
) -> AuditPage:
    limit = min(limit, page_size_max)
    async with context.database.connection() as connection:
        rows, total = await audit.page(connection, user_id=user_id, action=action, limit=limit, offset=offset)
    return AuditPage(rows=[AuditRowOut.model_validate(row) for row in rows], total=total, limit=limit, offset=offset)


@router.get("/settings", response_model=SettingsOut, summary="The effective settings and where each came from")
async def effective_settings() -> SettingsOut:
    return effective()


@router.post("/settings/reload", response_model=SettingsOut, summary="Re-read solaris_settings from the YAML")
async def reload_settings(context: Context, actor: Actor = Depends(authorize)) -> SettingsOut:
    try:
        new = load_settings()
    except SettingsError as error:
        raise InvalidInput(f"the settings were not reloaded: {error}", "invalid_settings") from None
    before = context.settings.model_dump(mode="json")
    context.reload(new)
    async with context.database.connection() as connection:
        await audit.record(
            connection, actor=actor.name, action="settings.reload", before=before, after=new.model_dump(mode="json")
        )
    log_event("settings_reloaded", actor=actor.name)
    return effective()
