"""`/solaris/users`: list and search accounts, and create one."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Query
from pydantic import BaseModel, Field

from solaris_hooks.admin import accounts
from solaris_hooks.web.api.base import authorize, body_errors, errors, line_pattern, new_router
from solaris_hooks.web.api.user_fields import AccountOut, Strict, Text, UserId, page_size_max, tokens_max
from solaris_hooks.web.auth import Actor
from solaris_hooks.web.context import Context


class AccountPage(BaseModel):
    users: list[AccountOut]
    total: int
    limit: int
    offset: int


class CreateUserIn(Strict):
    user_id: UserId
    email: Text | None = None
    name: Text | None = None
    locale: Literal["pt-BR", "en"] | None = None
    initial_tokens: Annotated[int, Field(strict=True, ge=0, le=tokens_max)] | None = Field(
        None, description="First grant; the default allowance when left out."
    )


router = new_router()


@router.get("/users", response_model=AccountPage, summary="List and search users")
async def list_users(
    context: Context,
    search: str | None = Query(
        None, max_length=320, pattern=line_pattern, description="Part of the id, e-mail or name."
    ),
    status: Literal["active", "blocked", "disabled"] | None = None,
    # A Literal built from the orders at run time, for the schema's enum; mypy cannot check one.
    sort: Literal[tuple(accounts.sort_orders)] = "created",  # type: ignore[valid-type]
    order: Literal["asc", "desc"] = "desc",
    limit: int = Query(50, ge=1, description=f"Capped at {page_size_max}."),
    offset: int = Query(0, ge=0, le=10**9),
) -> AccountPage:
    limit = min(limit, page_size_max)
    async with context.database.connection() as connection:
        rows, total = await accounts.page(
            connection, search=search, status=status, sort=sort, order=order, limit=limit, offset=offset
        )
    return AccountPage(users=[AccountOut.model_validate(row) for row in rows], total=total, limit=limit, offset=offset)


@router.post(
    "/users",
    response_model=AccountOut,
    status_code=201,
    summary="Create a user",
    responses={**body_errors, **errors(409)},
)
async def create_user(context: Context, body: CreateUserIn, actor: Actor = Depends(authorize)) -> dict:
    settings = context.settings
    tokens = settings.default_tokens_per_user if body.initial_tokens is None else body.initial_tokens
    async with context.database.connection() as connection:
        return await accounts.create(
            connection,
            user_id=body.user_id,
            tokens=tokens,
            email=body.email,
            name=body.name,
            locale=body.locale,
            actor=actor.name,
            local_part_case=settings.identity_local_part_case,
        )
