"""The ledger operations, each one call of a SQL function in `solaris` (one round trip).

Two-phase transfers as in docs/architecture.md: reserve a pending debit, then settle, release or
expire it. Amounts here are platform tokens (raw tokens × factor, rounded up).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from psycopg import AsyncConnection
from psycopg.rows import class_row, dict_row

from solaris_hooks.db.margins import PromptMargin, ratio_sample_tokens_min
from solaris_hooks.db.queries import sql


@dataclass(frozen=True)
class Balance:
    user_id: str
    status: str
    credited_tokens: int
    debited_tokens: int
    reserved_tokens: int

    @property
    def remaining_tokens(self) -> int:
        return self.credited_tokens - self.debited_tokens - self.reserved_tokens

    def as_dict(self) -> dict[str, object]:
        return {
            "user_id": self.user_id,
            "status": self.status,
            "credited_tokens": self.credited_tokens,
            "used_tokens": self.debited_tokens,
            "reserved_tokens": self.reserved_tokens,
            "remaining_tokens": self.remaining_tokens,
        }


@dataclass(frozen=True)
class Reservation:
    outcome: str  # reserved | duplicate | exhausted | blocked | disabled | regroup (see GroupCheck)
    reserved: int
    credited_tokens: int
    debited_tokens: int
    reserved_tokens: int
    group_name: str | None = None  # with a GroupCheck: the account's group…
    group_source: str | None = None  # …and who chose it: admin | header

    @property
    def remaining_tokens(self) -> int:
        return self.credited_tokens - self.debited_tokens - self.reserved_tokens


@dataclass(frozen=True)
class GroupCheck:
    """With groups configured: the group a call was priced for, and the one its header names.
    A reserve answers 'regroup' (reserving nothing) when the account's group is another."""

    assumed: str | None
    from_header: str | None


async def reserve(
    connection: AsyncConnection,
    *,
    user_id: str,
    call_id: str,
    wanted_tokens: int,
    minimum_tokens: int,
    default_tokens: int,
    ttl_s: int,
    model: str | None,
    factor: float,
    thresholds: Sequence[float] = (),
    metered: bool = False,
    group: GroupCheck | None = None,
) -> Reservation:
    """Reserve a call; a metered one (a stream) is grown by grow_reservation as it delivers,
    and is charged what it holds if it expires."""
    query = "db/reserve_in_group" if group else "db/reserve_metered" if metered else "db/reserve"
    async with connection.cursor(row_factory=class_row(Reservation)) as cursor:
        await cursor.execute(
            sql(query),
            {
                **({"group": group.assumed, "header_group": group.from_header, "metered": metered} if group else {}),
                "user_id": user_id,
                "call_id": call_id,
                "wanted_tokens": wanted_tokens,
                "minimum_tokens": minimum_tokens,
                "default_tokens": default_tokens,
                "ttl_s": ttl_s,
                "model": model,
                "factor": Decimal(str(factor)),
                "levels": decimal_levels(thresholds),
            },
        )
        row = await cursor.fetchone()
    assert row is not None
    return row


@dataclass(frozen=True)
class Resolution:
    state: str  # settled | released | expired | unknown (never reserved)
    charged_tokens: int  # 0 unless this call settled it now


async def resolve(
    connection: AsyncConnection,
    *,
    call_id: str,
    kind: str,
    raw_tokens: int | None = None,
    model: str | None = None,
    cost_usd: float | None = None,
    thresholds: Sequence[float] = (),
) -> Resolution:
    """Settle, release or expire one call.

    A settle charges ceil(raw_tokens × the factor the call was reserved at), so a
    settings reload between reserve and settle cannot change the price of a call.
    """
    async with connection.cursor(row_factory=class_row(Resolution)) as cursor:
        await cursor.execute(
            sql("db/resolve"),
            {
                "call_id": call_id,
                "kind": kind,
                "raw_tokens": raw_tokens,
                "model": model,
                "cost_usd": None if cost_usd is None else Decimal(str(cost_usd)),
                "levels": decimal_levels(thresholds),
            },
        )
        row = await cursor.fetchone()
    assert row is not None
    return row


async def settle_spooled(
    connection: AsyncConnection,
    *,
    call_id: str,
    raw_tokens: int,
    model: str | None,
    cost_usd: float | None,
    user_id: str | None,
    factor: float | None,
    spooled_at: str | None,
    default_tokens: int,
    thresholds: Sequence[float] = (),
) -> Resolution:
    """Charge usage that could not be written when it happened (see solaris_hooks.quota.spool).

    Idempotent per call id: a pending reservation is settled, an expired one or an
    unreserved call (user_id and factor given) gets a settle row of its own, and a call
    charged before changes nothing.
    """
    async with connection.cursor(row_factory=class_row(Resolution)) as cursor:
        await cursor.execute(
            sql("db/settle_spooled"),
            {
                "call_id": call_id,
                "user_id": user_id,
                "raw_tokens": raw_tokens,
                "model": model,
                "factor": None if factor is None else Decimal(str(factor)),
                "cost_usd": None if cost_usd is None else Decimal(str(cost_usd)),
                "default_tokens": default_tokens,
                "spooled_at": spooled_at,
                "levels": decimal_levels(thresholds),
            },
        )
        row = await cursor.fetchone()
    assert row is not None
    return row


async def prune_resolved(connection: AsyncConnection, retention_s: int, limit: int = 5000) -> int:
    """Delete up to `limit` reservations resolved more than retention_s ago."""
    cursor = await connection.execute(sql("db/prune_resolved"), {"retention_s": retention_s, "limit": limit})
    return cursor.rowcount


async def expire_due(connection: AsyncConnection, limit: int = 500) -> int:
    cursor = await connection.execute(sql("db/expire_due"), {"limit": limit})
    row = await cursor.fetchone()
    assert row is not None
    return row[0]


async def credit(
    connection: AsyncConnection,
    *,
    user_id: str,
    tokens: int,
    default_tokens: int,
    actor: str,
    reason: str,
    thresholds: Sequence[float] = (),
) -> Balance:
    async with connection.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            sql("db/credit"),
            {
                "user_id": user_id,
                "tokens": tokens,
                "default_tokens": default_tokens,
                "actor": actor,
                "reason": reason,
                "levels": decimal_levels(thresholds),
            },
        )
        row = await cursor.fetchone()
    assert row is not None
    return _balance(row)


async def balance(connection: AsyncConnection, user_id: str) -> Balance | None:
    async with connection.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(sql("db/balance"), {"user_id": user_id})
        row = await cursor.fetchone()
    return None if row is None else _balance(row)


def decimal_text(value: float | None) -> str | None:
    """A float as the exact decimal it was written as (0.376, not 0.37599999…), for the ledger's
    JSON arguments; None stays None."""
    return None if value is None else str(Decimal(str(value)))


def decimal_levels(thresholds: Sequence[float]) -> list[Decimal]:
    """Alert thresholds as exact decimals, so 0.8 × 1000 is 800 in SQL, not 800.0000001."""
    return [Decimal(str(threshold)) for threshold in thresholds]


def _balance(row: dict) -> Balance:
    return Balance(
        user_id=row["user_id"],
        status=row["status"],
        credited_tokens=row["credited_tokens"],
        debited_tokens=row["debited_tokens"],
        reserved_tokens=row["reserved_tokens"],
    )


async def extend_reservation(connection: AsyncConnection, call_id: str, ttl_s: int) -> bool:
    """Push a pending reservation's expiry ttl_s from now (a call that is still running)."""
    cursor = await connection.execute(sql("db/extend_reservation"), {"call_id": call_id, "ttl_s": ttl_s})
    row = await cursor.fetchone()
    return bool(row and row[0])


async def grow_reservation(
    connection: AsyncConnection, call_id: str, *, wanted_tokens: int, minimum_tokens: int, ttl_s: int
) -> int:
    """Grow a pending metered reservation by up to wanted_tokens, at least minimum_tokens, from
    what the user has free, and push its expiry; returns the tokens added (0: refused)."""
    cursor = await connection.execute(
        sql("db/grow_reservation"),
        {"call_id": call_id, "wanted_tokens": wanted_tokens, "minimum_tokens": minimum_tokens, "ttl_s": ttl_s},
    )
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def learn_margin(
    connection: AsyncConnection, model: str, reported_tokens: int, estimated_tokens: int
) -> PromptMargin:
    """Record a provider's prompt count against our estimate; returns the model's margin now."""
    cursor = await connection.execute(
        sql("db/learn_margin"),
        {
            "model": model,
            "reported_tokens": reported_tokens,
            "estimated_tokens": estimated_tokens,
            "ratio_sample_tokens_min": ratio_sample_tokens_min,
        },
    )
    row = await cursor.fetchone()
    return PromptMargin(float(row[0]), int(row[1])) if row else PromptMargin()


async def margins(connection: AsyncConnection) -> dict[str, PromptMargin]:
    """Every model's learned prompt margin (see solaris_hooks.db.margins)."""
    cursor = await connection.execute(sql("db/margins"))
    return {model: PromptMargin(float(ratio), int(excess)) for model, ratio, excess in await cursor.fetchall()}
