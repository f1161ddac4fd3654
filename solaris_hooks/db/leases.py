"""Leases in the ledger: a slice of a user's allowance held by one proxy process.

A lease is a pending reservation whose owner reserves calls from it in memory
(solaris_hooks.quota.leases); the calls it covered are settled in batches, one 'settle' row
each (migration 0009). Returning or expiring a lease is solaris.resolve, as for any
reservation (ledger.resolve with the lease id).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal

from psycopg import AsyncConnection
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from solaris_hooks.db.ledger import Reservation, decimal_levels, decimal_text
from solaris_hooks.db.queries import sql


async def take_lease(
    connection: AsyncConnection,
    *,
    user_id: str,
    lease_id: str,
    owner: str,
    wanted_tokens: int,
    minimum_tokens: int,
    share: float,
    default_tokens: int,
    ttl_s: int,
) -> Reservation:
    """Take the lease `lease_id` (or top it up when it is held already): up to wanted_tokens
    and `share` of what the user has free, at least minimum_tokens. `reserved` is what was added."""
    async with connection.cursor(row_factory=class_row(Reservation)) as cursor:
        await cursor.execute(
            sql("db/take_lease"),
            {
                "user_id": user_id,
                "lease_id": lease_id,
                "owner": owner,
                "wanted_tokens": wanted_tokens,
                "minimum_tokens": minimum_tokens,
                "share": Decimal(str(share)),
                "default_tokens": default_tokens,
                "ttl_s": ttl_s,
            },
        )
        row = await cursor.fetchone()
    assert row is not None
    return row


@dataclass(frozen=True)
class LeasedCall:
    """A call a lease covered, to be charged ceil(raw_tokens × factor)."""

    call_id: str
    lease_id: str
    raw_tokens: int
    factor: float
    model: str | None = None
    cost_usd: float | None = None
    held_tokens: int | None = None  # a stream's: charged at most what it held (migration 0011)
    running: bool = False  # a stream's line from before its process died: charged what it held
    group_name: str | None = None  # the group its factor is (migration 0013)

    def as_json(self) -> dict[str, object]:
        fields = asdict(self)
        # Exact decimals, as every factor the ledger multiplies by (see decimal_levels).
        fields["factor"] = decimal_text(self.factor)
        fields["cost_usd"] = decimal_text(self.cost_usd)
        return fields


@dataclass(frozen=True)
class LeaseState:
    """A lease after a batch: whether it is still held, and its account's balances."""

    lease_id: str
    lease_state: str  # pending | released | expired
    lease_tokens: int
    status: str  # the account's: active | blocked | disabled
    credited_tokens: int
    debited_tokens: int
    reserved_tokens: int
    charged_tokens: int  # what this batch charged the account
    group_name: str | None = None  # the account's group now (a lease of a user moved is given up)
    group_source: str | None = None  # who chose it: admin | header


async def settle_leased(
    connection: AsyncConnection, calls: Sequence[LeasedCall], *, ttl_s: int, thresholds: Sequence[float] = ()
) -> list[LeaseState]:
    """Charge a batch of leased calls in one transaction (idempotent per call id) and renew
    the leases still held; returns every lease the batch named. One function call in
    autocommit is its own transaction: no BEGIN and COMMIT round trips around it."""
    async with connection.cursor(row_factory=class_row(LeaseState)) as cursor:
        await cursor.execute(
            sql("db/settle_leased"),
            {
                "calls": Jsonb([call.as_json() for call in calls]),
                "ttl_s": ttl_s,
                "levels": decimal_levels(thresholds),
            },
        )
        return await cursor.fetchall()
