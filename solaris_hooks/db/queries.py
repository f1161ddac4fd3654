"""Every SQL statement the package runs, read from `db/queries/<area>/<name>.sql`.

Statements live in files beside the migrations so that the SQL reads as SQL (and can be
run by hand in psql), and a reviewer finds every query the code sends in one folder. A
file holds one statement with psycopg placeholders (`%(name)s`). Where a listing builds
its filters, the filter clauses are named fragments in their own files, composed with
`psycopg.sql`, never formatted from user input.
"""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def sql(name: str) -> str:
    """The text of `queries/<name>.sql`, e.g. `sql("admin/user_by_id")`; read once per process."""
    return resources.files("solaris_hooks.db").joinpath("queries", f"{name}.sql").read_text(encoding="utf-8")
