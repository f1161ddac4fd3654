"""`solaris report`: usage per user and period, as an aligned table or as CSV.

solaris report [--from DATE] [--to DATE] [--group-by day|week|month] [--csv]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime
from decimal import Decimal
from typing import TextIO

import psycopg

from solaris_hooks.admin import reports
from solaris_hooks.cli.database import deployment_database_url
from solaris_hooks.db.connection import one_command_prepare_threshold
from solaris_hooks.exceptions import DatabaseUnavailable

# A terminal table longer than this is unreadable; --csv has no such limit.
table_rows_max = 10_000


def add_report_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="usage per user and period (UTC), as a table or CSV",
        description="Tokens charged, raw tokens, cost and requests per user and period, with each user's "
        "current balance. Dates are UTC.",
    )
    parser.add_argument(
        "--from",
        dest="from_date",
        metavar="DATE",
        help="first day (YYYY-MM-DD) or ISO datetime, inclusive; default: 30 days before --to",
    )
    parser.add_argument(
        "--to",
        dest="to_date",
        metavar="DATE",
        help="last day (YYYY-MM-DD), included whole, or ISO datetime, exclusive; default: now",
    )
    parser.add_argument("--group-by", choices=("day", "week", "month"), default="day", help="period length")
    parser.add_argument("--csv", action="store_true", help="write CSV instead of a table")
    parser.set_defaults(handler=report)


def report(args: argparse.Namespace) -> int:
    """Print the report; bad dates and an unreachable database raise SolarisError for `solaris` to print."""
    start, end = reports.parse_range(args.from_date, args.to_date)
    return asyncio.run(_report(deployment_database_url(), start, end, args.group_by, args.csv, sys.stdout))


async def _report(
    url: str, start: datetime, end: datetime, group_by: reports.GroupBy, as_csv: bool, out: TextIO
) -> int:
    try:
        connection = await psycopg.AsyncConnection.connect(
            url, autocommit=True, connect_timeout=10, prepare_threshold=one_command_prepare_threshold
        )
    except psycopg.OperationalError as error:
        raise DatabaseUnavailable(f"cannot connect to the database: {error}") from None
    async with connection:
        if as_csv:
            written, capped = await reports.write_usage_csv(
                connection, out, start, end, group_by, reports.usage_rows_max
            )
        else:
            rows = [
                row
                async for batch in reports.usage_batches(connection, start, end, group_by, table_rows_max + 1)
                for row in batch
            ]
            capped = len(rows) > table_rows_max
            written = min(len(rows), table_rows_max)
            out.write(format_table(rows[:table_rows_max]))
            out.write(
                f"{written} row(s), {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC (end excluded), by {group_by}\n"
            )
    if capped:
        print(
            f"solaris report: stopped after {written} rows; narrow --from/--to, use a longer --group-by"
            + ("" if as_csv else ", or --csv"),
            file=sys.stderr,
        )
    return 0


def format_table(rows: list[reports.UsageRow]) -> str:
    """Rows under their column names, text left-aligned and numbers right-aligned."""
    lines = [list(reports.usage_columns)] + [[_shown(value) for value in row] for row in rows]
    widths = [max(len(line[column]) for line in lines) for column in range(len(reports.usage_columns))]
    left = [name in reports.text_columns or name == "period_start" for name in reports.usage_columns]
    return "".join(
        "  ".join(
            cell.ljust(width) if is_left else cell.rjust(width)
            for cell, width, is_left in zip(line, widths, left, strict=False)
        ).rstrip()
        + "\n"
        for line in lines
    )


def _shown(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return f"{value:.6f}"
    # A name with a newline or a terminal escape sequence must not break the table or the terminal.
    return "".join(char if char.isprintable() else " " for char in str(value))
