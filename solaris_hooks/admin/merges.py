"""Merging one person's two accounts into one (the admin's `merge`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg import AsyncConnection

from solaris_hooks.admin.accounts import get, reached_by_calls, require, resolve_user_ids
from solaris_hooks.db import audit
from solaris_hooks.db.ledger import decimal_levels
from solaris_hooks.db.queries import sql
from solaris_hooks.exceptions import Conflict, IdentityRefused, InvalidInput, NotFound
from solaris_hooks.logs import log_event
from solaris_hooks.quota.identity import LocalPartCase, normalise_identity


def _normal_form(user_id: str, local_part_case: LocalPartCase) -> str:
    try:
        return repr(normalise_identity(user_id, local_part_case))
    except IdentityRefused:
        return "no account: it is not a valid identity any more"


@dataclass(frozen=True)
class Merge:
    account: dict  # INTO, after the merge
    merged_from: str  # FROM's id as it was stored
    moved: dict  # rows re-attributed to INTO, by kind


async def merge(
    connection: AsyncConnection,
    *,
    from_user_id: str,
    into_user_id: str,
    actor: str,
    thresholds: Sequence[float],
    local_part_case: LocalPartCase,
) -> Merge:
    """Make one person's two accounts one: FROM's ledger rows, reservations (pending ones
    too) and alerts move to INTO, its balances are added to INTO's, and FROM is deleted,
    in one transaction with its audit row (solaris.merge_accounts).

    FROM must be an account calls no longer reach (its id is not the normalised form, as
    for accounts made before identities were normalised): one that calls still reach would
    be created again by the next call, with a fresh allowance. INTO must be one calls reach
    (its id is normalised), or the merged allowance would be stranded where no call goes.
    """
    async with connection.transaction():
        source, target = await resolve_user_ids(connection, [from_user_id, into_user_id], local_part_case)
        if source == target:
            raise InvalidInput(
                f"{from_user_id!r} and {into_user_id!r} are the same account ({source!r}): nothing to merge",
                "merge_same_account",
            )
        source_before = await require(connection, source)
        target_before = await get(connection, target)
        if target_before is None:
            raise NotFound(
                f"no user {target!r} to merge into: create it first (`solaris users create {target} "
                "--tokens 0`), or merge after its first call",
                "user_not_found",
            )
        if reached_by_calls(source, local_part_case):
            raise Conflict(
                f"calls for {source!r} are charged to that account: merged away, the next call would "
                "create it again with a fresh allowance; block or disable it instead",
                "merge_from_reachable",
            )
        if not reached_by_calls(target, local_part_case):
            raise Conflict(
                f"no call is charged to {target!r} (calls naming it are charged to "
                f"{_normal_form(target, local_part_case)}): merge both into that account instead "
                "(create it with 0 tokens first if it does not exist)",
                "merge_into_unreachable",
            )
        try:
            cursor = await connection.execute(
                sql("admin/merge_accounts"),
                {
                    "from_user_id": source,
                    "into_user_id": target,
                    "actor": actor,
                    "levels": decimal_levels(thresholds),
                },
            )
        except psycopg.errors.NoDataFound:
            raise NotFound(
                f"{source!r} or {target!r} was merged or removed meanwhile; look them up again", "user_not_found"
            ) from None
        except (psycopg.errors.UniqueViolation, psycopg.errors.ForeignKeyViolation):
            raise Conflict(
                f"{source!r} has rows that cannot move to {target!r}; nothing was merged", "merge_conflict"
            ) from None
        row = await cursor.fetchone()
        assert row is not None and cursor.description is not None  # the function returns one row
        moved = {column.name: int(value) for column, value in zip(cursor.description, row, strict=False)}
        after = await require(connection, target)
        await audit.record(
            connection,
            actor=actor,
            action="user.merge",
            user_id=target,
            before={"from": source_before, "into": target_before},
            after=after,
            details={"from": source, "into": target, "moved": moved},
        )
    log_event("merged", user_id=target, from_user_id=source, actor=actor, **moved)
    return Merge(after, source, moved)
