"""How the `solaris` command prints rows: an aligned table for people, CSV for programs."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable, Sequence
from typing import TextIO

from rich import box
from rich.console import Console
from rich.table import Table


def print_rows(
    rows: Iterable[dict],
    columns: Sequence[str],
    as_csv: bool = False,
    out: TextIO | None = None,
    title: str | None = None,
) -> None:
    out = out or sys.stdout
    if as_csv:
        writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return
    table = Table(*columns, box=box.SIMPLE_HEAD, title=title, title_justify="left")
    for row in rows:
        table.add_row(*("" if row.get(column) is None else str(row.get(column)) for column in columns))
    # A wide fixed width when not on a terminal, so piped output is not wrapped mid-row.
    Console(file=out, width=None if out.isatty() else 200, highlight=False).print(table)
