"""`/solaris/users/{id}/ledger`: one user's ledger over a range of dates, newest first."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Literal

from fastapi import Query
from pydantic import BaseModel, BeforeValidator, Field

from solaris_hooks.admin.user_ledger import ledger_kinds, ledger_page
from solaris_hooks.exceptions import InvalidInput
from solaris_hooks.web.api.base import errors, new_router
from solaris_hooks.web.api.user_fields import UserId, page_size_max
from solaris_hooks.web.context import Context


def _iso_only(value: object) -> object:
    """Dates as people write them; pydantic alone would read `to=0.5` as a Unix timestamp."""
    if isinstance(value, str) and not (len(value) >= 10 and value[:4].isdigit() and value[4] == "-"):
        raise ValueError("write YYYY-MM-DD or an ISO datetime such as 2025-01-31T13:45:00Z")
    return value


Bound = Annotated[datetime | date, BeforeValidator(_iso_only)]


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


def as_bound(value: datetime | date | None, end: bool = False) -> datetime | None:
    """A date means the whole day: as `from`, its start; as `to`, the start of the next day."""
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
    day = value + timedelta(days=1) if end else value
    return datetime.combine(day, time(0), tzinfo=UTC)


router = new_router()


@router.get(
    "/users/{user_id:solaris_user_part}/ledger",
    response_model=LedgerPage,
    summary="One user's ledger, newest first",
    responses=errors(404),
)
async def user_ledger(
    context: Context,
    user_id: UserId,
    # A Literal built from the kinds at run time, for the schema's enum; mypy cannot check one.
    kind: Literal[ledger_kinds] | None = None,  # type: ignore[valid-type]
    start: Bound | None = Query(None, alias="from", description="Inclusive; a date means its start."),
    end: Bound | None = Query(None, alias="to", description="Exclusive; a date includes that day."),
    limit: int = Query(50, ge=1, description=f"Capped at {page_size_max}."),
    offset: int = Query(0, ge=0, le=10**9),
) -> LedgerPage:
    start_at, end_at = as_bound(start), as_bound(end, end=True)
    if start_at and end_at and start_at >= end_at:
        raise InvalidInput("`from` must be before `to`")
    limit = min(limit, page_size_max)
    async with context.database.connection() as connection:
        rows, total = await ledger_page(
            connection,
            user_id,
            kind=kind,
            start=start_at,
            end=end_at,
            limit=limit,
            offset=offset,
            local_part_case=context.settings.identity_local_part_case,
        )
    return LedgerPage(rows=[LedgerRowOut.model_validate(row) for row in rows], total=total, limit=limit, offset=offset)
