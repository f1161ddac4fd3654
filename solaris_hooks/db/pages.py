"""One page of a filtered listing and the total that matches, for every admin list."""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg.rows import dict_row


async def fetch_page(
    connection: AsyncConnection, *, columns: str, source: str, where: str, order_by: str, params: dict
) -> tuple[list[dict], int]:
    """`params` holds the filters' values plus `limit` and `offset`. The SQL fragments are
    ours, never user text: user values only ever travel as parameters."""
    async with connection.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(f"SELECT count(*) AS total FROM {source} {where}", params)
        total = (await cursor.fetchone())["total"]
        await cursor.execute(
            f"SELECT {columns} FROM {source} {where} ORDER BY {order_by} LIMIT %(limit)s OFFSET %(offset)s", params
        )
        return await cursor.fetchall(), total
