"""`/solaris/stats` and `/solaris/reports/usage.csv`: usage over a range of dates, for admins."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import timedelta
from typing import IO

from fastapi import Query
from fastapi.responses import StreamingResponse

from solaris_hooks.admin import reports
from solaris_hooks.logs import log_event
from solaris_hooks.web.api.base import new_router
from solaris_hooks.web.context import Context

# The CSV is written to a temporary file (in memory up to this size) before it is sent:
# an error still becomes a JSON answer, and a slow download holds no pool connection.
csv_memory_bytes_max = 8 * 1024 * 1024
csv_chunk_chars = 64 * 1024

from_help = "First day, YYYY-MM-DD (UTC), or an ISO datetime, inclusive. Default: 30 days before `to`."
to_help = "Last day, YYYY-MM-DD (UTC), included whole; or an ISO datetime, exclusive. Default: now."


router = new_router()


@router.get("/stats", response_model=reports.Stats, summary="Usage totals, per period, per user and per model")
async def stats(
    context: Context,
    from_: str | None = Query(None, alias="from", max_length=64, description=from_help),
    to: str | None = Query(None, max_length=64, description=to_help),
    group_by: reports.GroupBy = Query("day", description="Length of a period of `series` (UTC)."),
) -> reports.Stats:
    start, end = reports.parse_range(from_, to)
    async with context.database.connection() as connection:
        return await reports.stats(connection, start, end, group_by)


@router.get(
    "/reports/usage.csv",
    response_class=StreamingResponse,
    summary="Usage per user and period, as a CSV file",
    responses={
        200: {
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "description": "Columns: " + ", ".join(reports.usage_columns),
        }
    },
)
async def usage_csv(
    context: Context,
    from_: str | None = Query(None, alias="from", max_length=64, description=from_help),
    to: str | None = Query(None, max_length=64, description=to_help),
    group_by: reports.GroupBy = Query("day", description="Length of a period (UTC)."),
) -> StreamingResponse:
    start, end = reports.parse_range(from_, to)
    # Closed by the response once streamed, not by this block.
    spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115
        max_size=csv_memory_bytes_max, mode="w+", encoding="utf-8", newline=""
    )
    try:
        async with context.database.connection() as connection:
            written, capped = await reports.write_usage_csv(
                connection, spool, start, end, group_by, reports.usage_rows_max
            )
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    last_day = (end - timedelta(microseconds=1)).date()
    name = f"solaris-usage_{start.date()}_{last_day}_{group_by}{'_truncated' if capped else ''}.csv"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if capped:
        headers["X-Solaris-Truncated"] = f"only the first {written} rows; narrow the range or group by week or month"
        log_event("usage_report_truncated", rows=written, start=start, end=end, group_by=group_by)
    return StreamingResponse(spooled_chunks(spool), media_type="text/csv; charset=utf-8", headers=headers)


def spooled_chunks(spool: IO[str]) -> Iterator[bytes]:
    """The spooled CSV as bytes; Starlette reads a plain iterator in a thread, off the event loop."""
    try:
        while chunk := spool.read(csv_chunk_chars):
            yield chunk.encode("utf-8")
    finally:
        spool.close()
