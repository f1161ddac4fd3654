"""What the admin overview and the personal usage page show, read from the ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from psycopg import AsyncConnection

from solaris_hooks.db.queries import sql

chart_days = 30


@dataclass(frozen=True)
class DayUsage:
    day: date
    tokens: int


def chart_range(now: datetime) -> tuple[datetime, datetime, list[date]]:
    """The last chart_days UTC days, today included: (start, end, the days)."""
    today = now.astimezone(UTC).date()
    days = [today - timedelta(days=offset) for offset in range(chart_days - 1, -1, -1)]
    start = datetime.combine(days[0], time(0), tzinfo=UTC)
    return start, start + timedelta(days=chart_days), days


def fill_days(days: list[date], tokens_by_day: dict[date, int]) -> list[DayUsage]:
    """One entry per day, zero where nothing was charged, so the chart's gaps show."""
    return [DayUsage(day, int(tokens_by_day.get(day, 0))) for day in days]


async def user_days(connection: AsyncConnection, user_id: str, now: datetime) -> list[DayUsage]:
    """One user's platform tokens charged per UTC day over the chart's days."""
    start, end, days = chart_range(now)
    cursor = await connection.execute(sql("admin/user_days"), {"user_id": user_id, "start": start, "end": end})
    return fill_days(days, dict(await cursor.fetchall()))
