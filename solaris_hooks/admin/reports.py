"""Usage statistics and reports, computed in SQL from the ledger.

Usage is what the ledger charged: `settle` rows (one per call) and `adjust` rows that
correct what was used (an adjustment of the allowance is not usage). Tokens charged are
their `debited_delta`; raw tokens, requests and active users come from settle rows only. Periods are UTC days,
ISO weeks (starting on Monday) or months; a period with no usage has no row.
"""

from __future__ import annotations

import csv
from collections.abc import AsyncGenerator
from contextlib import aclosing
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import IO, Literal, NamedTuple

from psycopg import AsyncConnection
from psycopg.rows import args_row
from pydantic import BaseModel, Field

from solaris_hooks.db.queries import sql
from solaris_hooks.exceptions import InvalidInput

GroupBy = Literal["day", "week", "month"]
range_default = timedelta(days=30)
range_max = timedelta(days=3 * 366)
top_users_count = 10
# One row per user and period; 1,000 users by day over 3 years is about a million.
usage_rows_max = 1_000_000
usage_batch_size = 5000
# Spreadsheets run a cell that starts with one of these as a formula (CSV injection).
formula_prefixes = ("=", "+", "-", "@", "\t", "\r")


# -- the range asked for ---------------------------------------------------------------


def parse_range(from_text: str | None, to_text: str | None, now: datetime | None = None) -> tuple[datetime, datetime]:
    """[start, end) in UTC from the `from` and `to` a person typed; the last 30 days by default.

    A date as `to` includes that whole day; a datetime as `to` is exclusive. A datetime
    without a UTC offset is taken as UTC.
    """
    end = _parse_bound("to", to_text, is_end=True) if to_text else (now or datetime.now(UTC))
    start = _parse_bound("from", from_text, is_end=False) if from_text else end - range_default
    if start >= end:
        raise InvalidInput(f"`from` ({from_text}) must be before `to` ({to_text or 'now'})", code="invalid_range")
    if end - start > range_max:
        raise InvalidInput(
            f"the range covers {(end - start).days} days; at most {range_max.days} (about 3 years) "
            "can be reported at once",
            code="invalid_range",
        )
    return start, end


def _parse_bound(name: str, text: str, is_end: bool) -> datetime:
    text = text.strip()
    try:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            moment = datetime.fromisoformat(text)
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        return datetime.combine(day + timedelta(days=1) if is_end else day, time(0), tzinfo=UTC)
    except ValueError:
        shown = text if len(text) <= 40 else text[:40] + "…"
        raise InvalidInput(
            f"`{name}` is not a date: {shown!r}; write YYYY-MM-DD or an ISO datetime such as "
            "2025-01-31T13:45:00Z (in a URL, write a + offset as %2B)",
            code="invalid_date",
        ) from None
    except OverflowError:
        raise InvalidInput(f"`{name}` is out of range: {text!r}", code="invalid_date") from None


# -- /solaris/stats --------------------------------------------------------------------


class Usage(BaseModel):
    tokens_charged: int = Field(description="Platform tokens charged: settle and adjust rows' debited_delta.")
    raw_tokens: int = Field(description="Provider tokens of the settled calls.")
    cost_usd: float = Field(description="Sum of LiteLLM's response_cost.")
    requests: int = Field(description="Settled calls.")


class Totals(Usage):
    active_users: int = Field(description="Users with at least one settled call in the range.")
    blocked_users: int = Field(description="Users told in the range that they were blocked (the usage alert at 100 %).")
    admin_blocked_users: int = Field(description="Accounts an admin blocked, now.")


class PeriodUsage(Usage):
    period_start: date
    active_users: int


class UserUsage(BaseModel):
    user_id: str
    email: str | None
    name: str | None
    tokens_charged: int
    requests: int
    cost_usd: float


class ModelUsage(Usage):
    model: str | None


class Stats(BaseModel):
    start: datetime = Field(alias="from", description="Inclusive, UTC.")
    end: datetime = Field(alias="to", description="Exclusive, UTC.")
    group_by: GroupBy
    totals: Totals
    series: list[PeriodUsage] = Field(description="One entry per period with usage, oldest first.")
    top_users: list[UserUsage] = Field(description=f"The {top_users_count} users charged the most.")
    models: list[ModelUsage] = Field(description="Per model, most tokens charged first.")


async def stats(connection: AsyncConnection, start: datetime, end: datetime, group_by: GroupBy) -> Stats:
    async with connection.transaction():
        await connection.execute(sql("admin/report_session"))
        cursor = await connection.execute(
            sql("admin/usage_stats"), {"group_by": group_by, "start": start, "end": end, "top": top_users_count}
        )
        row = await cursor.fetchone()
        assert row is not None  # aggregates: always one row
        totals, series, top_users, models = row
    return Stats.model_validate(
        {
            "from": start,
            "to": end,
            "group_by": group_by,
            "totals": totals,
            "series": series,
            "top_users": top_users,
            "models": models,
        }
    )


# -- usage per user and period (the CSV report and `solaris report`) -------------------


class UsageRow(NamedTuple):
    period_start: date
    user_id: str
    email: str | None
    name: str | None
    status: str
    tokens_charged: int
    raw_tokens: int
    cost_usd: Decimal
    requests: int
    credited_tokens: int
    remaining_tokens: int


usage_columns = UsageRow._fields
text_columns = {"user_id", "email", "name", "status"}


async def usage_batches(
    connection: AsyncConnection, start: datetime, end: datetime, group_by: GroupBy, limit: int
) -> AsyncGenerator[list[UsageRow], None]:
    """Usage per user and period, oldest period first, at most `limit` rows, in batches.

    A server-side cursor, so a report of a million rows never sits in memory at once.
    """
    async with connection.transaction():  # a server-side cursor lives in a transaction
        await connection.execute(sql("admin/report_session") + sql("admin/report_reads_all"))
        async with connection.cursor(name="usage_report", row_factory=args_row(UsageRow)) as cursor:
            await cursor.execute(
                sql("admin/usage_rows"), {"group_by": group_by, "start": start, "end": end, "limit": limit}
            )
            while batch := await cursor.fetchmany(usage_batch_size):
                yield batch


def csv_cells(row: UsageRow) -> list[str]:
    """A row as CSV cells; text a user chose cannot start a spreadsheet formula."""
    cells = []
    for name, value in zip(usage_columns, row, strict=False):
        if value is None:
            cells.append("")
        elif isinstance(value, Decimal):
            cells.append(format(value, "f"))  # 0.00000000, never 0E-8
        elif name in text_columns and isinstance(value, str) and value.startswith(formula_prefixes):
            cells.append("'" + value)
        else:
            cells.append(str(value))
    return cells


async def write_usage_csv(
    connection: AsyncConnection, out: IO[str], start: datetime, end: datetime, group_by: GroupBy, rows_max: int
) -> tuple[int, bool]:
    """Write the usage CSV (header first) to `out`; returns the rows written and whether rows_max cut it."""
    writer = csv.writer(out)
    writer.writerow(usage_columns)
    fetched = written = 0
    # One row more than rows_max tells whether rows_max cut the report.
    async with aclosing(usage_batches(connection, start, end, group_by, rows_max + 1)) as batches:
        async for batch in batches:
            fetched += len(batch)
            kept = batch[: rows_max - written]
            writer.writerows(map(csv_cells, kept))
            written += len(kept)
    return written, fetched > rows_max
