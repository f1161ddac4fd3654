"""The audit trail: every admin action with its actor, time, and the state before and after.

Written in the same transaction as the change it describes, so neither exists without
the other.
"""

from __future__ import annotations

from datetime import datetime

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from solaris_hooks.db.pages import fetch_page
from solaris_hooks.db.queries import sql


async def record(
    connection: AsyncConnection,
    *,
    actor: str,
    action: str,
    user_id: str | None = None,
    before: dict | None = None,
    after: dict | None = None,
    details: dict | None = None,
) -> None:
    await connection.execute(
        sql("db/record_audit"),
        {
            "actor": actor,
            "action": action,
            "user_id": user_id,
            "before": _json(before),
            "after": _json(after),
            "details": _json(details),
        },
    )


def _json(value: dict | None) -> Jsonb | None:
    return None if value is None else Jsonb(value, dumps=_dumps)


def _dumps(value: object) -> str:
    import json

    return json.dumps(value, default=lambda item: item.isoformat() if isinstance(item, datetime) else str(item))


async def page(
    connection: AsyncConnection, *, user_id: str | None, action: str | None, limit: int, offset: int
) -> tuple[list[dict], int]:
    """Newest first, with the total that matches."""
    params = {"user": user_id, "action": action, "limit": limit, "offset": offset}
    return await fetch_page(
        connection, columns="db/audit_columns", rows="db/audit_rows", order_by="db/newest_first", params=params
    )
