"""One user's ledger rows, newest first, for the API, the pages and the CLI."""

from __future__ import annotations

from datetime import datetime

from psycopg import AsyncConnection

from solaris_hooks.admin.accounts import find
from solaris_hooks.db.pages import fetch_page
from solaris_hooks.quota.identity import LocalPartCase

ledger_kinds = ("grant", "credit", "reserve", "extend", "settle", "release", "expire", "adjust")


async def ledger_page(
    connection: AsyncConnection,
    user_id: str,
    *,
    kind: str | None,
    start: datetime | None,
    end: datetime | None,
    limit: int,
    offset: int,
    local_part_case: LocalPartCase,
) -> tuple[list[dict], int]:
    user_id = (await find(connection, user_id, local_part_case))["user_id"]
    params = {"user": user_id, "kind": kind, "start": start, "end": end, "limit": limit, "offset": offset}
    return await fetch_page(
        connection,
        columns="admin/user_ledger_columns",
        rows="admin/user_ledger_rows",
        order_by="db/newest_first",
        params=params,
    )
