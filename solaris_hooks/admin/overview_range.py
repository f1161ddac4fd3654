"""The admin overview over a range of days an admin chose: the headline counts (today and
this month, as always), and the range's totals, tokens per period, top users and models.

Days are UTC days, as in the usage report (admin.reports), so the overview and the CSV
of the same range agree. A range up to `days_per_bar_max` days is charted by day; a longer
one by ISO week (starting on Monday).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from solaris_hooks.admin import reports
from solaris_hooks.admin.dashboard import DayUsage, fill_days
from solaris_hooks.db.queries import sql

days_per_bar_max = 92


def period_starts(first: date, last: date) -> tuple[reports.GroupBy, list[date]]:
    """How the chart groups the days first..last, and the start of each of its bars."""
    if (last - first).days < days_per_bar_max:
        return "day", [first + timedelta(days=offset) for offset in range((last - first).days + 1)]
    monday = first - timedelta(days=first.weekday())
    return "week", [monday + timedelta(weeks=offset) for offset in range((last - monday).days // 7 + 1)]


def utc_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


async def overview_between(
    connection: AsyncConnection, now: datetime, today_start: datetime, month_start: datetime, first: date, last: date
) -> tuple[dict, reports.Stats, list[DayUsage], reports.GroupBy]:
    """The headline counts, the stats of the days first..last (both included) and tokens per bar."""
    async with connection.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(sql("admin/overview_counts"), {"now": now, "today": today_start, "month": month_start})
        counts = await cursor.fetchone()
    assert counts is not None  # counts: always one row
    group_by, starts = period_starts(first, last)
    stats = await reports.stats(connection, utc_start(first), utc_start(last + timedelta(days=1)), group_by)
    per_period = fill_days(starts, {period.period_start: period.tokens_charged for period in stats.series})
    return counts, stats, per_period, group_by
