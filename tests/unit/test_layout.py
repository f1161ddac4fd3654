"""The package's shape holds: small modules, SQL only in .sql files, every query file named
by the code that runs it, and none left over."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

from solaris_hooks.admin.accounts import sort_orders

package_dir = Path(__file__).resolve().parents[2] / "solaris_hooks"
queries_dir = package_dir / "db" / "queries"
modules = sorted(path for path in package_dir.rglob("*.py") if "__pycache__" not in path.parts)
# A statement's first words, as they would start a string literal holding SQL.
sql_statement = re.compile(
    r"^\s*(SELECT|INSERT\s+INTO|UPDATE\s+\w+(\.\w+)?\s+SET|DELETE\s+FROM|WITH\s+\w+\s+AS)\b", re.I
)


@cache  # each module is parsed once for all the tests here
def string_literals(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def query_names() -> set[str]:
    return {path.relative_to(queries_dir).with_suffix("").as_posix() for path in queries_dir.rglob("*.sql")}


def name_of(module: Path) -> str:
    return module.relative_to(package_dir).as_posix()


def test_no_module_is_over_300_lines():
    too_long = {name_of(module): lines for module in modules if (lines := len(module.read_text().splitlines())) > 300}
    assert too_long == {}


def test_no_module_holds_an_sql_statement():
    """Statements live in db/queries/<area>/<name>.sql, read with db.queries.sql()."""
    found = {
        name_of(module): statements
        for module in modules
        if (statements := [text.strip()[:60] for text in string_literals(module) if sql_statement.match(text)])
    }
    assert found == {}


def test_every_query_the_code_names_exists():
    areas = {path.name for path in queries_dir.iterdir() if path.is_dir()}
    # "area/name", not the "area/name_" prefix of a name an f-string completes.
    query_name = re.compile(r"([a-z_]+)/[a-z0-9_]*[a-z0-9]")
    named = {
        text
        for module in modules
        for text in string_literals(module)
        if (match := query_name.fullmatch(text)) and match.group(1) in areas
    }
    assert named, "no query names found: has the queries folder moved?"
    assert named - query_names() == set()


def test_every_query_file_is_named_by_the_code():
    """A file no code names is dead SQL. The account list's sort keys are named by composition."""
    literals = {text for module in modules for text in string_literals(module)}
    composed = {f"admin/accounts_sort_{sort}" for sort in sort_orders}
    assert query_names() - literals - composed == set()
