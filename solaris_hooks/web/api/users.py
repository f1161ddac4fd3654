"""`/solaris/users`: accounts, credits, corrections, bulk grants, imports, merges and each user's ledger.

A user id in a path or body names an account as in solaris_hooks.admin.accounts: `Ana@Example.COM`
finds `ana@example.com`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Header, Query, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from starlette.convertors import Convertor, register_url_convertor

from solaris_hooks.admin import accounts
from solaris_hooks.exceptions import InvalidInput
from solaris_hooks.logs import log_event
from solaris_hooks.quota.identity import identity_length_max
from solaris_hooks.quota.service import QuotaService
from solaris_hooks.web.api.base import (
    authorize,
    body_errors,
    body_limit,
    errors,
    line_pattern,
    new_router,
    text_pattern,
)
from solaris_hooks.web.auth import Actor

tokens_max = 10**12
page_size_max = 500
import_body_bytes_max = 2 * 1024 * 1024

# Strict: "10", 10.5 and true are refused rather than coerced into a token amount.
Tokens = Annotated[int, Field(strict=True, gt=0, le=tokens_max)]
SignedTokens = Annotated[int, Field(strict=True, ge=-tokens_max, le=tokens_max)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500, pattern=text_pattern)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=320, pattern=line_pattern)]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=identity_length_max)]


def _iso_only(value: object) -> object:
    """Dates as people write them; pydantic alone would read `to=0.5` as a Unix timestamp."""
    if isinstance(value, str) and not (len(value) >= 10 and value[:4].isdigit() and value[4] == "-"):
        raise ValueError("write YYYY-MM-DD or an ISO datetime such as 2025-01-31T13:45:00Z")
    return value


Bound = Annotated[datetime | date, BeforeValidator(_iso_only)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccountOut(BaseModel):
    user_id: str
    email: str | None = None
    name: str | None = None
    locale: str | None = None
    status: Literal["active", "blocked", "disabled"]
    credited_tokens: int
    used_tokens: int
    reserved_tokens: int
    remaining_tokens: int
    period: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


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


class UpdateUserIn(Strict):
    email: Text | None = Field(None, description="An empty string clears it.")
    name: Text | None = None
    # Left out: unchanged. Not nullable: a user always has a status, and a locale once set.
    locale: Literal["pt-BR", "en"] = None  # type: ignore[assignment]
    status: Literal["active", "blocked", "disabled"] = None  # type: ignore[assignment]


class AddTokensIn(Strict):
    tokens: Tokens = Field(description="Platform tokens to add.")
    reason: Reason = Field(description="Why, for the ledger.")


class AdjustIn(Strict):
    tokens: SignedTokens = Field(description="Signed: positive adds, negative removes.")
    reason: Reason
    target: Literal["credited", "debited"] = Field(
        "credited", description="credited changes the allowance; debited corrects what was used."
    )


class BulkGrantIn(Strict):
    tokens: Tokens
    reason: Reason
    user_ids: list[UserId] | None = Field(None, description="These users only; every active user when left out.")


class BulkGrantOut(BaseModel):
    credited_users: int


class ImportOut(BaseModel):
    created: int
    updated: int


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


class LedgerRowOut(BaseModel):
    id: int
    kind: str
    tokens: int
    credited_delta: int
    debited_delta: int
    reserved_delta: int
    raw_tokens: int | None
    model: str | None
    cost_usd: float | None = Field(description="LiteLLM's response_cost of the call.")
    call_id: str | None
    actor: str | None
    reason: str | None
    created_at: datetime


class LedgerPage(BaseModel):
    rows: list[LedgerRowOut]
    total: int
    limit: int
    offset: int


class UserPartConvertor(Convertor):
    """A user id in a path, whatever it holds: '/' (an e-mail may, and Starlette decodes
    %2F before routing) and new lines too, so validation, not the router, answers."""

    regex = r"(?s:.+)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


class UserPathConvertor(UserPartConvertor):
    """The same as the last part of a path, unless it ends like a route below a user:
    `GET …/ana/ledger` is Ana's ledger and `PATCH …/ana/adjust` a 405."""

    regex = r"(?!(?s:.*)/(?:add-tokens|adjust|ledger|merge)$)(?s:.+)"


register_url_convertor("solaris_user_part", UserPartConvertor())
register_url_convertor("solaris_user", UserPathConvertor())


def as_bound(value: datetime | date | None, end: bool = False) -> datetime | None:
    """A date means the whole day: as `from`, its start; as `to`, the start of the next day."""
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
    day = value + timedelta(days=1) if end else value
    return datetime.combine(day, time(0), tzinfo=UTC)


def build_router(service: QuotaService) -> APIRouter:
    router = new_router()
    settings = lambda: service.settings  # noqa: E731 - reloads replace service.settings
    case = lambda: service.settings.identity_local_part_case  # noqa: E731

    @router.get("/users", response_model=AccountPage, summary="List and search users")
    async def list_users(
        search: str | None = Query(
            None, max_length=320, pattern=line_pattern, description="Part of the id, e-mail or name."
        ),
        status: Literal["active", "blocked", "disabled"] | None = None,
        sort: Literal[tuple(accounts.sort_orders)] = "created",  # type: ignore[valid-type]
        order: Literal["asc", "desc"] = "desc",
        limit: int = Query(50, ge=1, description=f"Capped at {page_size_max}."),
        offset: int = Query(0, ge=0, le=10**9),
    ) -> AccountPage:
        limit = min(limit, page_size_max)
        async with service.connection() as connection:
            rows, total = await accounts.page(
                connection, search=search, status=status, sort=sort, order=order, limit=limit, offset=offset
            )
        return AccountPage(users=rows, total=total, limit=limit, offset=offset)

    @router.post(
        "/users",
        response_model=AccountOut,
        status_code=201,
        summary="Create a user",
        responses={**body_errors, **errors(409)},
    )
    async def create_user(body: CreateUserIn, actor: Actor = Depends(authorize)) -> dict:
        tokens = settings().default_tokens_per_user if body.initial_tokens is None else body.initial_tokens
        async with service.connection() as connection:
            return await accounts.create(
                connection,
                user_id=body.user_id,
                tokens=tokens,
                email=body.email,
                name=body.name,
                locale=body.locale,
                actor=actor.name,
                local_part_case=case(),
            )

    @router.post(
        "/users/bulk-grant",
        response_model=BulkGrantOut,
        summary="Credit every active user, or a list",
        responses={**body_errors, **errors(404)},
    )
    async def bulk_grant(body: BulkGrantIn, actor: Actor = Depends(authorize)) -> BulkGrantOut:
        async with service.connection() as connection:
            count = await accounts.bulk_credit(
                connection,
                user_ids=body.user_ids,
                tokens=body.tokens,
                reason=body.reason,
                actor=actor.name,
                thresholds=settings().alert_thresholds,
                local_part_case=case(),
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
        body: bytes = Body(..., media_type="text/csv"), actor: Actor = Depends(authorize)
    ) -> ImportOut:
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidInput("the CSV must be UTF-8 text") from None
        async with service.connection() as connection:
            report = await accounts.import_csv(
                connection,
                text,
                actor=actor.name,
                default_tokens=settings().default_tokens_per_user,
                local_part_case=case(),
            )
        return ImportOut(created=report.created, updated=report.updated)

    @router.post(
        "/users/{user_id:solaris_user_part}/add-tokens",
        response_model=AccountOut,
        summary="Add tokens (idempotent)",
        responses={**body_errors, **errors(409)},
    )
    async def add_tokens(
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
        async with service.connection() as connection:
            credit = await accounts.credit(
                connection,
                user_id=user_id,
                tokens=body.tokens,
                reason=body.reason,
                actor=actor.name,
                default_tokens=settings().default_tokens_per_user,
                thresholds=settings().alert_thresholds,
                local_part_case=case(),
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
    async def adjust(user_id: UserId, body: AdjustIn, actor: Actor = Depends(authorize)) -> dict:
        async with service.connection() as connection:
            adjusted = await accounts.adjust(
                connection,
                user_id=user_id,
                tokens=body.tokens,
                target=body.target,
                reason=body.reason,
                actor=actor.name,
                thresholds=settings().alert_thresholds,
                local_part_case=case(),
            )
        log_event("adjusted", user_id=adjusted["user_id"], tokens=body.tokens, target=body.target, actor=actor.name)
        return adjusted

    @router.post(
        "/users/{user_id:solaris_user_part}/merge",
        response_model=MergeOut,
        summary="Merge this account into another one of the same person",
        description="FROM (this account) must be one calls no longer reach, such as one made before "
        "identities were normalised; INTO, one they reach. Ledger rows, reservations and "
        "alerts move to INTO, balances are added, FROM is deleted; one transaction, audited.",
        responses={**body_errors, **errors(404, 409)},
    )
    async def merge(user_id: UserId, body: MergeIn, actor: Actor = Depends(authorize)) -> MergeOut:
        async with service.connection() as connection:
            merged = await accounts.merge(
                connection,
                from_user_id=user_id,
                into_user_id=body.into,
                actor=actor.name,
                thresholds=settings().alert_thresholds,
                local_part_case=case(),
            )
        return MergeOut(account=merged.account, merged_from=merged.merged_from, moved=merged.moved)

    @router.get(
        "/users/{user_id:solaris_user_part}/ledger",
        response_model=LedgerPage,
        summary="One user's ledger, newest first",
        responses=errors(404),
    )
    async def user_ledger(
        user_id: UserId,
        kind: Literal[accounts.ledger_kinds] | None = None,  # type: ignore[valid-type]
        start: Bound | None = Query(None, alias="from", description="Inclusive; a date means its start."),
        end: Bound | None = Query(None, alias="to", description="Exclusive; a date includes that day."),
        limit: int = Query(50, ge=1, description=f"Capped at {page_size_max}."),
        offset: int = Query(0, ge=0, le=10**9),
    ) -> LedgerPage:
        start_at, end_at = as_bound(start), as_bound(end, end=True)
        if start_at and end_at and start_at >= end_at:
            raise InvalidInput("`from` must be before `to`")
        limit = min(limit, page_size_max)
        async with service.connection() as connection:
            rows, total = await accounts.ledger_page(
                connection,
                user_id,
                kind=kind,
                start=start_at,
                end=end_at,
                limit=limit,
                offset=offset,
                local_part_case=case(),
            )
        return LedgerPage(rows=rows, total=total, limit=limit, offset=offset)

    # Ids with '/' reach every route: `:solaris_user_part` below a user, `:solaris_user` for the user itself.
    @router.get(
        "/users/{user_id:solaris_user}",
        response_model=AccountOut,
        summary="One user's balance and profile",
        responses=errors(404),
    )
    async def get_user(user_id: UserId) -> dict:
        async with service.connection() as connection:
            return await accounts.find(connection, user_id, case())

    @router.patch(
        "/users/{user_id:solaris_user}",
        response_model=AccountOut,
        summary="Change e-mail, name, locale or status",
        responses={**body_errors, **errors(404)},
    )
    async def update_user(user_id: UserId, body: UpdateUserIn, actor: Actor = Depends(authorize)) -> dict:
        changes = body.model_dump(exclude_unset=True)
        async with service.connection() as connection:
            return await accounts.update(connection, user_id, changes, actor.name, local_part_case=case())

    return router
