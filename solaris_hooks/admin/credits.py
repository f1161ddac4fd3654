"""What admins do to allowances: credit one user (idempotently), adjust one, grant to many.

Every change runs in one transaction with its audit row; ids are resolved as in admin.accounts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from solaris_hooks.admin.accounts import check_user_id, find, get, require, resolve_user_id, resolve_user_ids
from solaris_hooks.db import audit
from solaris_hooks.db.ledger import decimal_levels
from solaris_hooks.db.queries import sql
from solaris_hooks.exceptions import Conflict, InvalidInput, NotFound
from solaris_hooks.logs import log_event
from solaris_hooks.quota.identity import LocalPartCase

bulk_users_max = 10_000


def request_hash(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Credit:
    account: dict
    replayed: bool  # True when an Idempotency-Key answered with the first request's result


async def credit(
    connection: AsyncConnection,
    *,
    user_id: str,
    tokens: int,
    reason: str,
    actor: str,
    default_tokens: int,
    thresholds: Sequence[float],
    local_part_case: LocalPartCase,
    idempotency_key: str | None = None,
) -> Credit:
    """Add tokens (provisioning an unknown user with the default allowance first).

    With an idempotency key, the first request's answer is stored in the same
    transaction; a retry with the same key and body gets it back without crediting again,
    and one with the same key but another body is refused.
    """
    # The id as typed: a retry is the same request even if a merge moved the account since.
    fingerprint = request_hash("credit", check_user_id(user_id), tokens, reason)
    async with connection.transaction():
        user_id = await resolve_user_id(connection, user_id, local_part_case)
        if idempotency_key is not None:
            # A concurrent twin waits here on the key's index entry until this commits.
            cursor = await connection.execute(
                sql("admin/claim_idempotency_key"), {"key": idempotency_key, "request_hash": fingerprint}
            )
            if await cursor.fetchone() is None:
                cursor = await connection.execute(sql("admin/idempotency_key"), {"key": idempotency_key})
                stored = await cursor.fetchone()
                assert stored is not None  # the key's row exists: the insert above conflicted with it
                stored_hash, response = stored
                if stored_hash != fingerprint:
                    raise Conflict(
                        "this Idempotency-Key was used for a different request; use a new key", "idempotency_key_reused"
                    )
                return Credit(response, replayed=True)
        before = await get(connection, user_id)
        await connection.execute(
            sql("admin/credit"),
            {
                "user_id": user_id,
                "tokens": tokens,
                "default_tokens": default_tokens,
                "actor": actor,
                "reason": reason,
                "levels": decimal_levels(thresholds),
            },
        )
        after = await require(connection, user_id)
        await audit.record(
            connection,
            actor=actor,
            action="credit",
            user_id=user_id,
            before=before,
            after=after,
            details={"tokens": tokens, "reason": reason, "idempotency_key": idempotency_key},
        )
        if idempotency_key is not None:
            await connection.execute(
                sql("admin/store_idempotent_response"),
                {"response": Jsonb(after, dumps=audit._dumps), "key": idempotency_key},
            )
    # After the commit, once per credit (a replay returned above); API and CLI both pass here.
    log_event("credited", user_id=user_id, tokens=tokens, actor=actor, credited_tokens=after["credited_tokens"])
    return Credit(after, replayed=False)


async def adjust(
    connection: AsyncConnection,
    *,
    user_id: str,
    tokens: int,
    target: str,
    reason: str,
    actor: str,
    thresholds: Sequence[float],
    local_part_case: LocalPartCase,
) -> dict:
    if tokens == 0:
        raise InvalidInput("tokens: an adjustment must change something (not 0)")
    if not reason.strip():
        raise InvalidInput("reason: an adjustment needs a reason")
    async with connection.transaction():
        before = await find(connection, user_id, local_part_case)
        user_id = before["user_id"]
        try:
            await connection.execute(
                sql("admin/adjust"),
                {
                    "user_id": user_id,
                    "tokens": tokens,
                    "target": target,
                    "actor": actor,
                    "reason": reason,
                    "levels": decimal_levels(thresholds),
                },
            )
        except psycopg.errors.NumericValueOutOfRange:
            raise Conflict(
                f"this adjustment would make the user's {target} tokens negative", "adjustment_too_large"
            ) from None
        after = await require(connection, user_id)
        await audit.record(
            connection,
            actor=actor,
            action="adjust",
            user_id=user_id,
            before=before,
            after=after,
            details={"tokens": tokens, "target": target, "reason": reason},
        )
    return after


async def bulk_credit(
    connection: AsyncConnection,
    *,
    user_ids: Sequence[str] | None,
    tokens: int,
    reason: str,
    actor: str,
    thresholds: Sequence[float],
    local_part_case: LocalPartCase,
) -> int:
    """Credit every active user (user_ids None) or exactly the users listed; unknown ids
    refuse the whole request, so a typo never silently skips someone."""
    if user_ids is not None:
        user_ids = sorted(set(user_ids))
        if not user_ids or len(user_ids) > bulk_users_max:
            raise InvalidInput(f"user_ids: give 1 to {bulk_users_max} users, or leave it out for every active user")
    async with connection.transaction():
        if user_ids is not None:
            user_ids = sorted(set(await resolve_user_ids(connection, user_ids, local_part_case)))
            cursor = await connection.execute(sql("admin/unknown_user_ids"), {"user_ids": user_ids})
            missing = await _scalar(cursor)
            if missing:
                shown = ", ".join(repr(user) for user in sorted(missing)[:10])
                raise NotFound(f"unknown users ({len(missing)}): {shown}; nothing was credited", "user_not_found")
        cursor = await connection.execute(
            sql("admin/bulk_credit"),
            {
                "user_ids": user_ids,
                "tokens": tokens,
                "actor": actor,
                "reason": reason,
                "levels": decimal_levels(thresholds),
            },
        )
        count = await _scalar(cursor)
        await audit.record(
            connection,
            actor=actor,
            action="bulk_credit",
            details={
                "tokens": tokens,
                "reason": reason,
                "users": count,
                "scope": "listed" if user_ids is not None else "all active",
            },
        )
    return count


async def _scalar(cursor: psycopg.AsyncCursor) -> Any:
    """The one value of a statement that always returns one row."""
    row = await cursor.fetchone()
    assert row is not None
    return row[0]
