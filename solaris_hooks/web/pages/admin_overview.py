"""`/solaris/admin`: the overview (accounts, today's and this month's usage, and the usage of
a range of days: totals, tokens per day, top users, models) and `/solaris/admin/settings`,
the effective settings."""

from __future__ import annotations

from datetime import UTC, datetime, time
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import Request
from starlette.responses import Response

from solaris_hooks.admin import dashboard
from solaris_hooks.admin.overview_range import overview_between
from solaris_hooks.settings import describe_settings
from solaris_hooks.web.context import Context
from solaris_hooks.web.pages.base import new_page_router, show, signed_in
from solaris_hooks.web.pages.charts import tokens_per_day_chart
from solaris_hooks.web.pages.day_range import day_range

router = new_page_router()


@router.get("")
async def overview(context: Context, request: Request) -> Response:
    session = signed_in(request)
    settings = context.settings
    # Today and this month begin where the allowance renews, not in UTC.
    zone = ZoneInfo(settings.refill.timezone if settings.refill else "UTC")
    now = datetime.now(UTC)
    local_today = now.astimezone(zone).date()
    today_start = datetime.combine(local_today, time(0), tzinfo=zone)
    month_start = datetime.combine(local_today.replace(day=1), time(0), tzinfo=zone)
    # The range: UTC days, as the usage CSV counts them; the last 30 days by default.
    days = day_range(request.query_params.get("from"), request.query_params.get("to"), now.date(), dashboard.chart_days)
    async with context.database.connection() as connection:
        counts, stats, per_period, group_by = await overview_between(
            connection, now, today_start, month_start, days.first, days.last
        )
    chart = tokens_per_day_chart(per_period, session.locale)

    def usage_csv(period: str) -> str:
        query = {"from": days.first.isoformat(), "to": days.last.isoformat(), "group_by": period}
        return f"/solaris/admin/usage.csv?{urlencode(query)}"

    return show(
        request,
        session,
        settings,
        "overview.html",
        "overview",
        counts=counts,
        stats=stats,
        chart=chart,
        zone=str(zone),
        days=days,
        group_by=group_by,
        usage_csv=usage_csv,
    )


@router.get("/settings")
async def settings_page(context: Context, request: Request) -> Response:
    session = signed_in(request)
    return show(request, session, context.settings, "settings.html", "settings", described=describe_settings())
