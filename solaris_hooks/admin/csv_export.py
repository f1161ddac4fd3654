"""CSV files for the admin pages' downloads: the users list (with its filters) and one
user's ledger.

Written as the usage report is (admin.reports): a server-side cursor read in batches, at
most `rows_max` rows, exact decimals, and any text cell that a spreadsheet would run as a
formula (CSV injection) written with a leading quote.
"""

from __future__ import annotations

import csv
from datetime import date, datetime
from decimal import Decimal
from typing import IO, Literal

from psycopg import AsyncConnection
from psycopg.sql import SQL, Composed

from solaris_hooks.admin import reports
from solaris_hooks.admin.accounts import search_pattern, sort_directions, sort_orders
from solaris_hooks.db.pages import fragment
from solaris_hooks.db.queries import sql
from solaris_hooks.exceptions import InvalidInput


def safe_cell(value: object) -> str:
    """One cell: empty for NULL, decimals as written, and text that starts like a formula
    (= + - @, a tab or a carriage return) quoted so a spreadsheet shows it as text."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")  # 0.00000000, never 0E-8
    if isinstance(value, datetime | date):
        return value.isoformat()
    text = str(value)
    if isinstance(value, str) and text.startswith(reports.formula_prefixes):
        return "'" + text
    return text


def _listing(columns: str, rows: str, order_by: SQL | Composed) -> Composed:
    return fragment("db/page_rows").format(columns=fragment(columns), rows=fragment(rows), order_by=order_by)


async def write_query(
    connection: AsyncConnection, out: IO[str], query: Composed, params: dict, rows_max: int
) -> tuple[int, bool]:
    """Write the query's rows (header first) to `out`; returns the rows written and whether
    rows_max cut the file."""
    writer = csv.writer(out)
    written = 0
    async with connection.transaction():  # a server-side cursor lives in a transaction
        await connection.execute(sql("admin/report_reads_all"))
        async with connection.cursor(name="csv_export") as cursor:
            # One row more than rows_max tells whether rows_max cut the file.
            await cursor.execute(query, {**params, "limit": rows_max + 1, "offset": 0})
            writer.writerow([column.name for column in cursor.description or []])
            while batch := await cursor.fetchmany(reports.usage_batch_size):
                kept = batch[: rows_max - written]
                writer.writerows([safe_cell(value) for value in row] for row in kept)
                written += len(kept)
                if len(kept) < len(batch):
                    return written, True
    return written, False


async def write_users_csv(
    connection: AsyncConnection,
    out: IO[str],
    *,
    search: str | None,
    status: str | None,
    group: str | None,
    sort: str,
    order: Literal["asc", "desc"],
    rows_max: int,
) -> tuple[int, bool]:
    """The users list as the page filters and sorts it (group as admin.accounts.page takes
    it), every page, with each user's last settled call, group and refused calls."""
    if sort not in sort_orders:
        raise InvalidInput(f"sort: must be one of {', '.join(sort_orders)}")
    order_by = fragment("admin/accounts_order").format(
        key=fragment(f"admin/accounts_sort_{sort}"), direction=sort_directions[order]
    )
    query = _listing("admin/users_csv_columns", "admin/accounts_rows", order_by)
    params = {"status": status, "pattern": search_pattern(search), "group": group}
    return await write_query(connection, out, query, params, rows_max)


async def write_ledger_csv(
    connection: AsyncConnection,
    out: IO[str],
    user_id: str,
    *,
    kind: str | None,
    start: datetime | None,
    end: datetime | None,
    rows_max: int,
) -> tuple[int, bool]:
    """One account's ledger (user_id as stored), newest first, with the page's filters."""
    query = _listing("admin/ledger_csv_columns", "admin/user_ledger_rows", fragment("db/newest_first"))
    params = {"user": user_id, "kind": kind, "start": start, "end": end}
    return await write_query(connection, out, query, params, rows_max)
