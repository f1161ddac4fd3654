"""`/solaris/users/{id}`: one user's balance and profile, and changes to the profile.

Mounted after every other `/solaris/users/…` route: `{user_id:solaris_user}` takes any id,
so the routes below a user and the bulk ones must be tried first.
"""

from __future__ import annotations

from typing import Literal

from fastapi import Depends
from pydantic import Field

from solaris_hooks.admin import accounts
from solaris_hooks.web.api.base import authorize, body_errors, errors, new_router
from solaris_hooks.web.api.user_fields import AccountOut, Strict, Text, UserId
from solaris_hooks.web.auth import Actor
from solaris_hooks.web.context import Context


class UpdateUserIn(Strict):
    email: Text | None = Field(None, description="An empty string clears it.")
    name: Text | None = None
    # Left out: unchanged. Not nullable: a user always has a status, and a locale once set.
    locale: Literal["pt-BR", "en"] = None  # type: ignore[assignment]
    status: Literal["active", "blocked", "disabled"] = None  # type: ignore[assignment]
    group: str | None = Field(
        None,
        max_length=64,
        description="One of solaris_settings.groups; null or an empty string: none (calls' group header may set it).",
    )


router = new_router()


@router.get(
    "/users/{user_id:solaris_user}",
    response_model=AccountOut,
    summary="One user's balance and profile",
    responses=errors(404),
)
async def get_user(context: Context, user_id: UserId) -> dict:
    async with context.database.connection() as connection:
        return await accounts.find(connection, user_id, context.settings.identity_local_part_case)


@router.patch(
    "/users/{user_id:solaris_user}",
    response_model=AccountOut,
    summary="Change e-mail, name, locale, status or group",
    responses={**body_errors, **errors(404)},
)
async def update_user(context: Context, user_id: UserId, body: UpdateUserIn, actor: Actor = Depends(authorize)) -> dict:
    changes = body.model_dump(exclude_unset=True)
    async with context.database.connection() as connection:
        return await accounts.update(
            connection,
            user_id,
            changes,
            actor.name,
            local_part_case=context.settings.identity_local_part_case,
            groups=context.settings.groups,
        )
