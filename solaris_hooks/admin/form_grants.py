"""A bulk grant sent from the admin page's form, applied once however often it is sent.

The form carries a key of its own, drawn with the page; it is stored with the grant in one
transaction, so a double click or a resubmitted page grants once. (The API's bulk grant
takes no key: a script that retries decides for itself.)
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import AsyncConnection

from solaris_hooks.admin.credits import bulk_credit, request_hash
from solaris_hooks.db.queries import sql
from solaris_hooks.quota.identity import LocalPartCase

# Stored before the form's key in solaris.idempotency_keys, apart from the API's keys.
key_prefix = "page bulk-grant "


async def bulk_credit_once(
    connection: AsyncConnection,
    *,
    form_key: str,
    scope: str,
    listed: Sequence[str],
    tokens: int,
    reason: str,
    actor: str,
    thresholds: Sequence[float],
    local_part_case: LocalPartCase,
) -> int | None:
    """Users credited: every active one (scope "all") or the listed ones; None when a form
    with this key was applied before. An empty key grants without the check."""
    async with connection.transaction():
        if form_key:
            cursor = await connection.execute(
                sql("admin/claim_idempotency_key"),
                {"key": key_prefix + form_key, "request_hash": request_hash("bulk", tokens, reason, scope, *listed)},
            )
            if await cursor.fetchone() is None:
                return None
        return await bulk_credit(
            connection,
            user_ids=list(listed) if scope == "listed" else None,
            tokens=tokens,
            reason=reason,
            actor=actor,
            thresholds=thresholds,
            local_part_case=local_part_case,
        )
