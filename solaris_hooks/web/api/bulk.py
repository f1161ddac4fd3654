"""`/solaris/users/bulk-grant` and `/solaris/users/import`: many accounts in one request."""

from __future__ import annotations

from fastapi import Body, Depends
from pydantic import BaseModel, Field

from solaris_hooks.admin import credits, csv_import
from solaris_hooks.exceptions import InvalidInput
from solaris_hooks.logs import log_event
from solaris_hooks.web.api.base import authorize, body_errors, body_limit, errors, new_router
from solaris_hooks.web.api.user_fields import Reason, Strict, Tokens, UserId
from solaris_hooks.web.auth import Actor
from solaris_hooks.web.context import Context

import_body_bytes_max = 2 * 1024 * 1024


class BulkGrantIn(Strict):
    tokens: Tokens
    reason: Reason
    user_ids: list[UserId] | None = Field(None, description="These users only; every active user when left out.")


class BulkGrantOut(BaseModel):
    credited_users: int


class ImportOut(BaseModel):
    created: int
    updated: int


router = new_router()


@router.post(
    "/users/bulk-grant",
    response_model=BulkGrantOut,
    summary="Credit every active user, or a list",
    responses={**body_errors, **errors(404)},
)
async def bulk_grant(context: Context, body: BulkGrantIn, actor: Actor = Depends(authorize)) -> BulkGrantOut:
    settings = context.settings
    async with context.database.connection() as connection:
        count = await credits.bulk_credit(
            connection,
            user_ids=body.user_ids,
            tokens=body.tokens,
            reason=body.reason,
            actor=actor.name,
            thresholds=settings.alert_thresholds,
            local_part_case=settings.identity_local_part_case,
        )
    log_event("bulk_credited", users=count, tokens=body.tokens, actor=actor.name)
    return BulkGrantOut(credited_users=count)


@router.post(
    "/users/import",
    response_model=ImportOut,
    summary="Create or update users from CSV",
    responses=body_errors,
    openapi_extra={
        "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}},
        **body_limit(import_body_bytes_max),
    },
)
async def import_users(
    context: Context, body: bytes = Body(..., media_type="text/csv"), actor: Actor = Depends(authorize)
) -> ImportOut:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput("the CSV must be UTF-8 text") from None
    settings = context.settings
    async with context.database.connection() as connection:
        report = await csv_import.import_csv(
            connection,
            text,
            actor=actor.name,
            default_tokens=settings.default_tokens_per_user,
            local_part_case=settings.identity_local_part_case,
            group_default_tokens=settings.group_default_tokens(),
        )
    return ImportOut(created=report.created, updated=report.updated)
