"""`/solaris/admin`: the overview (accounts, today's and this month's usage, tokens per day)
and `/solaris/admin/settings`, the effective settings."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from fastapi import Request
from starlette.responses import Response

from solaris_hooks.admin import dashboard
from solaris_hooks.settings import describe_settings
from solaris_hooks.web.context import Context
from solaris_hooks.web.pages.base import new_page_router, show, signed_in
from solaris_hooks.web.pages.charts import tokens_per_day_chart

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
    async with context.database.connection() as connection:
        counts, stats, per_day = await dashboard.overview(connection, now, today_start, month_start)
    chart = tokens_per_day_chart(per_day, session.locale)
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
    )


@router.get("/settings")
async def settings_page(context: Context, request: Request) -> Response:
    session = signed_in(request)
    return show(request, session, context.settings, "settings.html", "settings", described=describe_settings())
