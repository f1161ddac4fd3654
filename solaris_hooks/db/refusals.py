"""Refused calls per user, added to their accounts in one statement (migration 0014)."""

from __future__ import annotations

from collections.abc import Mapping

from psycopg import AsyncConnection

from solaris_hooks.db.queries import sql


async def count_refusals(connection: AsyncConnection, counts: Mapping[str, int]) -> None:
    """Add counts[user] to each user's refused_calls, ordered by user so two proxies' batches
    lock the same rows in the same order."""
    ordered = sorted(counts)
    await connection.execute(
        sql("db/count_refusals"), {"user_ids": ordered, "counts": [counts[user] for user in ordered]}
    )
