"""One page of a filtered listing and the total that matches, for every admin list.

A listing is three fragments in db/queries: its columns, its rows (`FROM … WHERE …`, each
filter a parameter that may be NULL) and its order, put into the templates
db/page_count.sql and db/page_rows.sql with psycopg.sql. The fragments are our files,
never user text: user values only ever travel as parameters.
"""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.sql import SQL, Composable

from solaris_hooks.db.queries import sql


def fragment(name: str) -> SQL:
    """The text of queries/<name>.sql as a piece to compose, not a value."""
    return SQL(sql(name))


async def fetch_page(
    connection: AsyncConnection, *, columns: str, rows: str, order_by: str | Composable, params: dict
) -> tuple[list[dict], int]:
    """`columns`, `rows` and `order_by` name fragments (order_by may be composed already);
    `params` holds the filters' values plus `limit` and `offset`."""
    source = fragment(rows)
    order = fragment(order_by) if isinstance(order_by, str) else order_by
    async with connection.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(fragment("db/page_count").format(rows=source), params)
        counted = await cursor.fetchone()
        total = counted["total"] if counted else 0
        await cursor.execute(
            fragment("db/page_rows").format(columns=fragment(columns), rows=source, order_by=order), params
        )
        return await cursor.fetchall(), total
