"""CSV downloads from the admin pages, for a signed-in session (the cookie; the JSON API's
CSV takes only a key): `/users.csv` (the users list with its filters, every page),
`/usage.csv` (the usage report of the overview's range, as `/solaris/reports/usage.csv`)
and `/user/ledger.csv` (one user's ledger with the user page's filters).

Reads only, so viewers may download too. Every cell a spreadsheet would run as a formula
is quoted (admin.csv_export, admin.reports).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import IO, Literal

from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.responses import Response

from solaris_hooks.admin import accounts, csv_export, dashboard, reports, user_ledger
from solaris_hooks.admin.overview_range import utc_start
from solaris_hooks.exceptions import InvalidInput
from solaris_hooks.web.api import reports as api_reports
from solaris_hooks.web.context import Context
from solaris_hooks.web.pages.admin_users import listed_group
from solaris_hooks.web.pages.base import PageError, new_page_router, signed_in
from solaris_hooks.web.pages.day_range import checked, day_range, typed_day

router = new_page_router()
group_bys: tuple[reports.GroupBy, ...] = ("day", "week", "month")


def file_part(text: str) -> str:
    """A piece of a file name: letters, digits and . _ @ - only."""
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", text)[:80] or "user"


async def csv_download(name: str, write: Callable[[IO[str]], Awaitable[tuple[int, bool]]]) -> Response:
    """Write the CSV to a spooled file first (as the API does: an error is still a page, and
    a slow download holds no database connection), then send it."""
    spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - closed once streamed
        max_size=api_reports.csv_memory_bytes_max, mode="w+", encoding="utf-8", newline=""
    )
    try:
        written, capped = await write(spool)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    headers = {"Content-Disposition": f'attachment; filename="{name}{"_truncated" if capped else ""}.csv"'}
    if capped:
        headers["X-Solaris-Truncated"] = f"only the first {written} rows"
    headers["Cache-Control"] = "no-store"
    return StreamingResponse(api_reports.spooled_chunks(spool), media_type="text/csv; charset=utf-8", headers=headers)


@router.get("/users.csv")
async def users_csv(
    context: Context,
    request: Request,
    q: str = "",
    status: str = "",
    group: str = "",
    sort: str = "created",
    order: str = "desc",
) -> Response:
    signed_in(request)
    # The list's own filters, read as the users page reads them.
    search = q.strip()[:320] or None
    chosen_status = status if status in accounts.statuses else None
    chosen_group = listed_group(group, context.settings.groups)
    chosen_sort = sort if sort in accounts.sort_orders else "created"
    direction: Literal["asc", "desc"] = "asc" if order == "asc" else "desc"

    async def write(out: IO[str]) -> tuple[int, bool]:
        async with context.database.connection() as connection:
            return await csv_export.write_users_csv(
                connection,
                out,
                search=search,
                status=chosen_status,
                group=chosen_group,
                sort=chosen_sort,
                order=direction,
                rows_max=reports.usage_rows_max,
            )

    return await csv_download(f"solaris-users_{datetime.now(UTC).date()}", write)


@router.get("/usage.csv")
async def usage_csv(context: Context, request: Request) -> Response:
    signed_in(request)
    params = request.query_params
    days = day_range(params.get("from"), params.get("to"), datetime.now(UTC).date(), dashboard.chart_days)
    group_by = next((period for period in group_bys if period == (params.get("group_by") or "day")), None)
    if group_by is None:
        raise PageError(400, "error.bad_group_by")
    try:  # the API's own report: same columns, same file name, same cap
        return await api_reports.usage_csv(context, days.first.isoformat(), days.last.isoformat(), group_by)
    except InvalidInput:
        raise PageError(400, "error.bad_range") from None


@router.get("/user/ledger.csv")
async def ledger_csv(
    context: Context, request: Request, id: str = "", kind: str = "", start: str = "", end: str = ""
) -> Response:
    signed_in(request)
    settings = context.settings
    chosen_kind = kind if kind in user_ledger.ledger_kinds else None
    first, last = typed_day(start), typed_day(end)
    checked(first, last)
    async with context.database.connection() as connection:
        try:
            found = await accounts.resolve_user_id(connection, id, settings.identity_local_part_case)
        except InvalidInput:
            found = None
        account = await accounts.get(connection, found) if found else None
    if account is None:
        raise PageError(404, "error.no_user")
    user_id = account["user_id"]

    async def write(out: IO[str]) -> tuple[int, bool]:
        async with context.database.connection() as connection:
            return await csv_export.write_ledger_csv(
                connection,
                out,
                user_id,
                kind=chosen_kind,
                start=utc_start(first) if first else None,
                end=utc_start(last + timedelta(days=1)) if last else None,
                rows_max=reports.usage_rows_max,
            )

    return await csv_download(f"solaris-ledger_{file_part(user_id)}", write)
