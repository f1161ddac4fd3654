"""The audit trail as the audit page filters it: by actor, action, user and dates, newest first."""

from __future__ import annotations

from datetime import datetime

from psycopg import AsyncConnection

from solaris_hooks.db.pages import fetch_page

# What admins, the CLI and the pages record (db.audit.record callers), for the page's filter.
known_actions = (
    "user.create",
    "user.update",
    "user.merge",
    "credit",
    "adjust",
    "bulk_credit",
    "import",
    "alert.retry",
    "settings.reload",
)


async def audit_page(
    connection: AsyncConnection,
    *,
    user_ids: list[str] | None,
    actor: str | None,
    action: str | None,
    start: datetime | None,
    end: datetime | None,
    limit: int,
    offset: int,
) -> tuple[list[dict], int]:
    """A page of audit rows and how many match; user_ids: any of these ids (None: everyone)."""
    params = {
        "users": user_ids,
        "actor": actor,
        "action": action,
        "start": start,
        "end": end,
        "limit": limit,
        "offset": offset,
    }
    return await fetch_page(
        connection, columns="db/audit_columns", rows="admin/audit_log_rows", order_by="db/newest_first", params=params
    )
