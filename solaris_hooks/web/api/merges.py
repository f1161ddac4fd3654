"""`/solaris/users/{id}/merge`: fold an account calls no longer reach into the one they reach."""

from __future__ import annotations

from fastapi import Depends
from pydantic import BaseModel, Field

from solaris_hooks.admin import merges
from solaris_hooks.web.api.base import authorize, body_errors, errors, new_router
from solaris_hooks.web.api.user_fields import AccountOut, Strict, UserId
from solaris_hooks.web.auth import Actor
from solaris_hooks.web.context import Context


class MergeIn(Strict):
    into: UserId = Field(description="The account that stays: the one calls are charged to (its id normalised).")


class MovedOut(BaseModel):
    ledger_rows: int
    reservations: int = Field(description="All of FROM's reservations; pending ones are also counted below.")
    pending_reservations: int
    alerts: int
    other_rows: int


class MergeOut(BaseModel):
    account: AccountOut = Field(description="INTO after the merge.")
    merged_from: str
    moved: MovedOut


router = new_router()


@router.post(
    "/users/{user_id:solaris_user_part}/merge",
    response_model=MergeOut,
    summary="Merge this account into another one of the same person",
    description="FROM (this account) must be one calls no longer reach, such as one made before "
    "identities were normalised; INTO, one they reach. Ledger rows, reservations and "
    "alerts move to INTO, balances are added, FROM is deleted; one transaction, audited.",
    responses={**body_errors, **errors(404, 409)},
)
async def merge(context: Context, user_id: UserId, body: MergeIn, actor: Actor = Depends(authorize)) -> MergeOut:
    settings = context.settings
    async with context.database.connection() as connection:
        merged = await merges.merge(
            connection,
            from_user_id=user_id,
            into_user_id=body.into,
            actor=actor.name,
            thresholds=settings.alert_thresholds,
            local_part_case=settings.identity_local_part_case,
        )
    return MergeOut(
        account=AccountOut.model_validate(merged.account),
        merged_from=merged.merged_from,
        moved=MovedOut.model_validate(merged.moved),
    )
