"""What the Prometheus gauges read at scrape time, so every replica reports the shared truth."""

from __future__ import annotations

from psycopg import AsyncConnection

from solaris_hooks.db.queries import sql

# The statuses an alert e-mail may have: the CHECK constraint of solaris.alerts.status
# (migrations/0001_ledger.sql).
alert_statuses = ("pending", "sending", "sent", "failed", "dead", "no_address", "covered")


async def pending_reservations(connection: AsyncConnection) -> int:
    cursor = await connection.execute(sql("quota/pending_reservations"))
    row = await cursor.fetchone()
    return row[0] if row is not None else 0


async def alerts_by_status(connection: AsyncConnection) -> dict[str, int]:
    """How many alerts have each status, every status included (0 when none has it)."""
    cursor = await connection.execute(sql("quota/alerts_by_status"))
    counts: dict[str, int] = dict(await cursor.fetchall())
    return {status: counts.get(status, 0) for status in alert_statuses}
