"""The configured groups in the ledger's database (migration 0013's solaris.groups): what
the SQL that raises usage alerts reads to alert a group's members at its own thresholds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from psycopg import AsyncConnection

from solaris_hooks.db.ledger import decimal_levels
from solaris_hooks.db.queries import sql


async def write_groups(connection: AsyncConnection, thresholds: Mapping[str, Sequence[float] | None]) -> None:
    """Make `thresholds` (by group; None: the top-level ones) the configured groups, in one transaction."""
    async with connection.transaction():
        await connection.execute(sql("db/groups_keep_only"), {"names": list(thresholds)})
        for name, levels in thresholds.items():
            await connection.execute(
                sql("db/group_upsert"), {"name": name, "levels": None if levels is None else decimal_levels(levels)}
            )
