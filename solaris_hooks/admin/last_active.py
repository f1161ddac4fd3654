"""When each listed user last made a call: their latest settled call, for the users page.

One short index walk per listed user (ledger_user_id, backwards), so a page of 25 users
costs 25 probes whatever the size of the ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from psycopg import AsyncConnection

from solaris_hooks.db.queries import sql


async def last_active(connection: AsyncConnection, user_ids: Sequence[str]) -> dict[str, datetime]:
    """{user_id: time of the latest settle row}; a user who never made a call is left out."""
    if not user_ids:
        return {}
    cursor = await connection.execute(sql("admin/last_active"), {"user_ids": list(user_ids)})
    return dict(await cursor.fetchall())
