"""What the admin overview and the personal usage page show, read from the ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from solaris_hooks.admin import reports

chart_days = 30

_overview_query = """
SELECT
    (SELECT count(*) FROM solaris.accounts) AS users,
    (SELECT count(*) FROM solaris.accounts WHERE status = 'blocked') AS blocked_users,
    (SELECT count(*) FROM solaris.accounts WHERE status = 'disabled') AS disabled_users,
    (SELECT count(*) FROM solaris.accounts
      WHERE status = 'active' AND debited_tokens >= credited_tokens) AS exhausted_users,
    (SELECT count(DISTINCT user_id) FROM solaris.ledger
      WHERE kind = 'settle' AND created_at >= %(now)s - interval '24 hours') AS active_24h,
    (SELECT count(DISTINCT user_id) FROM solaris.ledger
      WHERE kind = 'settle' AND created_at >= %(now)s - interval '30 days') AS active_30d,
    (SELECT coalesce(sum(debited_delta), 0) FROM solaris.ledger
      WHERE kind IN ('settle', 'adjust') AND created_at >= %(today)s) AS tokens_today,
    (SELECT coalesce(sum(debited_delta), 0) FROM solaris.ledger
      WHERE kind IN ('settle', 'adjust') AND created_at >= %(month)s) AS tokens_month,
    (SELECT coalesce(sum(cost_usd), 0)::float8 FROM solaris.ledger
      WHERE kind = 'settle' AND created_at >= %(month)s) AS cost_month_usd,
    (SELECT count(*) FROM solaris.alerts WHERE status IN ('pending', 'sending', 'failed')) AS alerts_pending,
    (SELECT count(*) FROM solaris.alerts WHERE status = 'dead') AS alerts_dead
"""


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


async def overview(
    connection: AsyncConnection, now: datetime, today_start: datetime, month_start: datetime
) -> tuple[dict, reports.Stats, list[DayUsage]]:
    """The headline counts, the last 30 days' stats (top users, models) and tokens per day."""
    async with connection.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(_overview_query, {"now": now, "today": today_start, "month": month_start})
        counts = await cursor.fetchone()
    start, end, days = chart_range(now)
    stats = await reports.stats(connection, start, end, "day")
    per_day = fill_days(days, {period.period_start: period.tokens_charged for period in stats.series})
    return counts, stats, per_day


async def user_days(connection: AsyncConnection, user_id: str, now: datetime) -> list[DayUsage]:
    """One user's platform tokens charged per UTC day over the chart's days."""
    start, end, days = chart_range(now)
    cursor = await connection.execute(
        """SELECT (created_at AT TIME ZONE 'UTC')::date AS day, sum(debited_delta)::bigint
             FROM solaris.ledger
            WHERE user_id = %s AND kind IN ('settle', 'adjust') AND created_at >= %s AND created_at < %s
            GROUP BY 1""",
        (user_id, start, end),
    )
    return fill_days(days, dict(await cursor.fetchall()))
