"""`/solaris/users/{id}/add-tokens` and `/solaris/users/{id}/adjust`: one user's allowance."""

from __future__ import annotations

from typing import Literal

from fastapi import Depends, Header, Response
from pydantic import Field

from solaris_hooks.admin import credits
from solaris_hooks.logs import log_event
from solaris_hooks.web.api.base import authorize, body_errors, errors, new_router
from solaris_hooks.web.api.user_fields import AccountOut, Reason, SignedTokens, Strict, Tokens, UserId
from solaris_hooks.web.auth import Actor
from solaris_hooks.web.context import Context


class AddTokensIn(Strict):
    tokens: Tokens = Field(description="Platform tokens to add.")
    reason: Reason = Field(description="Why, for the ledger.")


class AdjustIn(Strict):
    tokens: SignedTokens = Field(description="Signed: positive adds, negative removes.")
    reason: Reason
    target: Literal["credited", "debited"] = Field(
        "credited", description="credited changes the allowance; debited corrects what was used."
    )


router = new_router()


@router.post(
    "/users/{user_id:solaris_user_part}/add-tokens",
    response_model=AccountOut,
    summary="Add tokens (idempotent)",
    responses={**body_errors, **errors(409)},
)
async def add_tokens(
    context: Context,
    user_id: UserId,
    body: AddTokensIn,
    response: Response,
    actor: Actor = Depends(authorize),
    idempotency_key: str | None = Header(
        None,
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Retries with the same key credit once.",
    ),
) -> dict:
    settings = context.settings
    async with context.database.connection() as connection:
        credit = await credits.credit(
            connection,
            user_id=user_id,
            tokens=body.tokens,
            reason=body.reason,
            actor=actor.name,
            default_tokens=settings.default_tokens_per_user,
            thresholds=settings.alert_thresholds,
            local_part_case=settings.identity_local_part_case,
            idempotency_key=idempotency_key,
        )
    if credit.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return credit.account


@router.post(
    "/users/{user_id:solaris_user_part}/adjust",
    response_model=AccountOut,
    summary="Correct a balance, with a reason",
    responses={**body_errors, **errors(404, 409)},
)
async def adjust(context: Context, user_id: UserId, body: AdjustIn, actor: Actor = Depends(authorize)) -> dict:
    settings = context.settings
    async with context.database.connection() as connection:
        adjusted = await credits.adjust(
            connection,
            user_id=user_id,
            tokens=body.tokens,
            target=body.target,
            reason=body.reason,
            actor=actor.name,
            thresholds=settings.alert_thresholds,
            local_part_case=settings.identity_local_part_case,
        )
    log_event("adjusted", user_id=adjusted["user_id"], tokens=body.tokens, target=body.target, actor=actor.name)
    return adjusted
