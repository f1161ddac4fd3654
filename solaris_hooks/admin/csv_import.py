"""Creating and updating users from a CSV file an admin uploads: all rows or none."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass

from psycopg import AsyncConnection

from solaris_hooks.admin.accounts import (
    canonical_user_id,
    check_profile,
    check_user_id,
    configured_group,
    resolve_user_ids,
)
from solaris_hooks.db import audit
from solaris_hooks.db.queries import sql
from solaris_hooks.exceptions import InvalidInput
from solaris_hooks.quota.identity import LocalPartCase

import_rows_max = 10_000


@dataclass(frozen=True)
class ImportReport:
    created: int
    updated: int


async def import_csv(
    connection: AsyncConnection,
    text: str,
    *,
    actor: str,
    default_tokens: int,
    local_part_case: LocalPartCase,
    group_default_tokens: Mapping[str, int] | None = None,
) -> ImportReport:
    """Create or update users from CSV with a header row: user_id, and optionally email,
    name, locale, group (one of group_default_tokens' keys, the configured groups), tokens
    (first grant, for new users: else their group's default_tokens). All rows or none."""
    reader = csv.DictReader(io.StringIO(text))
    try:
        rows = _import_rows(reader, default_tokens, local_part_case, group_default_tokens or {})
    except csv.Error as error:  # a field over csv.field_size_limit(), a broken quote…
        raise InvalidInput(f"the CSV cannot be read (line {reader.line_num}): {error}") from None
    created = updated = 0
    async with connection.transaction():
        resolved = await resolve_user_ids(connection, [row[0] for row in rows], local_part_case)
        for user_id, (_, email, name, locale, group, tokens) in zip(resolved, rows, strict=False):
            profile = {"user_id": user_id, "email": email, "name": name, "locale": locale}
            cursor = await connection.execute(
                sql("admin/create_account"), {**profile, "tokens": tokens, "actor": actor}
            )
            new = await cursor.fetchone() is not None
            if not new or group is not None:
                await connection.execute(sql("admin/import_update_account"), {**profile, "group": group})
            created += new
            updated += not new
        await audit.record(
            connection,
            actor=actor,
            action="import",
            details={"created": created, "updated": updated, "rows": len(rows)},
        )
    return ImportReport(created, updated)


def _import_rows(
    reader: csv.DictReader, default_tokens: int, local_part_case: LocalPartCase, group_default_tokens: Mapping[str, int]
) -> list[tuple]:
    """The checked rows of an import, or InvalidInput naming the first bad lines."""
    fields = set(reader.fieldnames or ())
    if "user_id" not in fields:
        raise InvalidInput(
            "the CSV needs a header row with a user_id column (and optionally email, name, locale, group, tokens)"
        )
    unknown = fields - {"user_id", "email", "name", "locale", "group", "tokens"}
    if unknown:
        raise InvalidInput(f"unknown CSV column(s): {', '.join(sorted(unknown))}")
    rows = []
    problems = []
    for line, row in enumerate(reader, start=2):
        # Counting every line, bad ones too, bounds the work a hostile file can ask for.
        if line - 1 > import_rows_max:
            raise InvalidInput(f"at most {import_rows_max} users per import")
        try:
            user_id = check_user_id(row.get("user_id") or "")
            canonical_user_id(user_id, local_part_case)  # refused here, with its line, if it is no identity
            check_profile(row.get("email") or None, row.get("locale") or None, row.get("name") or None)
            group = configured_group(row["group"], group_default_tokens) if (row.get("group") or "").strip() else None
            tokens_text = (row.get("tokens") or "").strip()
            group_tokens = group_default_tokens.get(group, default_tokens) if group else default_tokens
            tokens = group_tokens if not tokens_text else int(tokens_text)
            if not 0 <= tokens <= 10**12:
                raise InvalidInput("tokens: must be between 0 and 10^12")
        except ValueError:
            problems.append(f"line {line}: tokens must be a whole number")
            continue
        except InvalidInput as error:
            problems.append(f"line {line}: {error.message}")
            continue
        profile = (row.get("email") or None, row.get("name") or None, row.get("locale") or None)
        rows.append((user_id, *profile, group, tokens))
    if problems:
        raise InvalidInput("nothing imported: " + "; ".join(problems[:20]))
    if not rows:
        raise InvalidInput("the CSV has no users")
    return rows
