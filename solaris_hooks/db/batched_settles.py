"""Settles of calls reserved one by one, written a batch at a time (migration 0010).

With settings.leases, a call that took a reservation of its own (a user who calls rarely,
or near the edge of the allowance) is charged in its process's journal when it succeeds,
and the next batch settles it, beside the leased calls: one round trip for many calls
instead of one each. Each call is charged as solaris.resolve charges it alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from psycopg import AsyncConnection
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from solaris_hooks.db.ledger import decimal_levels, decimal_text
from solaris_hooks.db.queries import sql


@dataclass(frozen=True)
class BatchedSettle:
    """A call to settle on its own reservation: raw_tokens at the reservation's factor."""

    call_id: str
    raw_tokens: int
    model: str | None = None
    cost_usd: float | None = None

    def as_json(self) -> dict[str, object]:
        fields = asdict(self)
        fields["cost_usd"] = decimal_text(self.cost_usd)
        return fields


@dataclass(frozen=True)
class SettledCall:
    call_id: str
    state: str  # settled (now or before), or expired/released for a late settle, or unknown
    charged_tokens: int  # what this batch charged it


async def settle_batch(
    connection: AsyncConnection, calls: Sequence[BatchedSettle], *, thresholds: Sequence[float] = ()
) -> list[SettledCall]:
    """Settle `calls` in one transaction (one function call in autocommit), idempotent per call id."""
    async with connection.cursor(row_factory=class_row(SettledCall)) as cursor:
        await cursor.execute(
            sql("db/settle_batch"),
            {"calls": Jsonb([call.as_json() for call in calls]), "levels": decimal_levels(thresholds)},
        )
        return await cursor.fetchall()
