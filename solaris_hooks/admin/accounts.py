"""What admins do to accounts, for the API, the CLI and the pages alike: list, create,
update, credit (idempotently), adjust, bulk grant, import, merge, and read a user's ledger.

Every change runs in one transaction with its audit row.

An id a person types names an account the way calls do (see solaris_hooks.quota.identity), so
`Ana@Example.COM` finds `ana@example.com`; but an account stored exactly as typed wins
(one made before identities were normalised, until an admin merges it), then an id merged
away (the account it went into), then the normalised id. New accounts get the normalised id.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from solaris_hooks.db import audit
from solaris_hooks.db.ledger import decimal_levels
from solaris_hooks.db.pages import fetch_page
from solaris_hooks.exceptions import Conflict, IdentityRefused, InvalidInput, NotFound
from solaris_hooks.logs import log_event
from solaris_hooks.mail.emails import is_email_address
from solaris_hooks.messages import locales
from solaris_hooks.quota.identity import LocalPartCase, identity_length_max, normalise_identity, validate_identity

statuses = ("active", "blocked", "disabled")
ledger_kinds = ("grant", "credit", "reserve", "settle", "release", "expire", "adjust")
sort_orders = {
    "usage": "debited_tokens::numeric / greatest(credited_tokens, 1)",
    "remaining": "credited_tokens - debited_tokens - reserved_tokens",
    "used": "debited_tokens",
    "created": "created_at",
    "user_id": "user_id",
}
import_rows_max = 10_000
bulk_users_max = 10_000

account_columns = """user_id, email, name, locale, status, credited_tokens, debited_tokens AS used_tokens,
    reserved_tokens, credited_tokens - debited_tokens - reserved_tokens AS remaining_tokens, period,
    created_at, updated_at"""


user_id_rules = (
    f"user_id must be 1 to {identity_length_max} characters of plain text, without '{{{{' or control "
    "or invisible characters"
)


def check_user_id(user_id: str) -> str:
    """An id as typed (trimmed), if it follows the rules of identities in calls."""
    try:
        return validate_identity(user_id)
    except IdentityRefused:
        raise InvalidInput(user_id_rules) from None


def canonical_user_id(user_id: str, local_part_case: LocalPartCase) -> str:
    """The normalised id: what a call naming this person is charged to."""
    try:
        return normalise_identity(user_id, local_part_case)
    except IdentityRefused:
        raise InvalidInput(user_id_rules) from None


def reached_by_calls(user_id: str, local_part_case: LocalPartCase) -> bool:
    """Whether calls can be charged to this stored id: only when it is its own normal form."""
    try:
        return normalise_identity(user_id, local_part_case) == user_id
    except IdentityRefused:
        return False  # e.g. an old id in fullwidth braces: its normal form would be a placeholder


async def resolve_user_ids(
    connection: AsyncConnection, typed: Sequence[str], local_part_case: LocalPartCase
) -> list[str]:
    """The account each typed id means (see the module docstring), in one round trip; an id
    with no account resolves to its normalised form, for the caller to create or refuse."""
    exact = [check_user_id(user_id) for user_id in typed]
    canonical = []
    for user_id in exact:
        try:
            canonical.append(normalise_identity(user_id, local_part_case))
        except IdentityRefused:
            canonical.append(None)  # still found when an account is stored exactly so
    cursor = await connection.execute(
        """SELECT coalesce(a.user_id, m.into_user_id, t.canonical)
             FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS t (exact, canonical, position)
             LEFT JOIN solaris.accounts a ON a.user_id = t.exact
             LEFT JOIN solaris.merged_accounts m ON m.from_user_id = t.exact
            ORDER BY t.position""",
        (exact, canonical),
    )
    resolved = [row[0] for row in await cursor.fetchall()]
    if None in resolved:
        raise InvalidInput(user_id_rules)
    return resolved


async def resolve_user_id(connection: AsyncConnection, typed: str, local_part_case: LocalPartCase) -> str:
    return (await resolve_user_ids(connection, [typed], local_part_case))[0]


async def find(connection: AsyncConnection, typed: str, local_part_case: LocalPartCase) -> dict:
    """The account a typed id means, or NotFound."""
    return await require(connection, await resolve_user_id(connection, typed, local_part_case))


def _has_controls(text: str | None) -> bool:
    return text is not None and any(ord(character) < 32 or ord(character) == 127 for character in text)


def check_profile(email: str | None = None, locale: str | None = None, name: str | None = None) -> None:
    # E-mails and names go into mail headers, greetings and lists; Postgres cannot even store a NUL.
    for field, value in (("email", email), ("name", name)):
        if _has_controls(value):
            raise InvalidInput(f"{field}: must not contain NUL, new lines or other control characters")
    if email is not None and email != "" and not is_email_address(email):
        raise InvalidInput(f"email: {email[:80]!r} is not an e-mail address")
    if locale is not None and locale not in locales:
        raise InvalidInput(f"locale: must be one of {', '.join(locales)}")


async def get(connection: AsyncConnection, user_id: str) -> dict | None:
    async with connection.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(f"SELECT {account_columns} FROM solaris.accounts WHERE user_id = %s", (user_id,))
        return await cursor.fetchone()


async def require(connection: AsyncConnection, user_id: str) -> dict:
    found = await get(connection, user_id)
    if found is None:
        raise NotFound(
            f"no user {user_id!r}: users appear after their first call, a credit or `create`", "user_not_found"
        )
    return found


async def page(
    connection: AsyncConnection,
    *,
    search: str | None = None,
    status: str | None = None,
    sort: str = "created",
    order: Literal["asc", "desc"] = "desc",
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[dict], int]:
    """A page of accounts and how many match; search looks in id, e-mail and name."""
    where = """WHERE (%(status)s::text IS NULL OR status = %(status)s)
                 AND (%(pattern)s::text IS NULL OR user_id ILIKE %(pattern)s OR email ILIKE %(pattern)s
                      OR name ILIKE %(pattern)s)"""
    pattern = None
    if search:
        # Searched literally: % and _ typed by an admin are not wildcards.
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    params = {"status": status, "pattern": pattern, "limit": limit, "offset": offset}
    direction = "ASC" if order == "asc" else "DESC"
    return await fetch_page(
        connection,
        columns=account_columns,
        source="solaris.accounts",
        where=where,
        order_by=f"{sort_orders[sort]} {direction}, user_id",
        params=params,
    )


async def create(
    connection: AsyncConnection,
    *,
    user_id: str,
    tokens: int,
    email: str | None,
    name: str | None,
    locale: str | None,
    actor: str,
    local_part_case: LocalPartCase,
) -> dict:
    check_profile(email, locale, name)
    async with connection.transaction():
        user_id = await resolve_user_id(connection, user_id, local_part_case)
        cursor = await connection.execute(
            "SELECT user_id FROM solaris.create_account(%s, %s, %s, %s, %s, %s)",
            (user_id, tokens, email or None, name or None, locale, actor),
        )
        if await cursor.fetchone() is None:
            raise Conflict(f"user {user_id!r} already exists", "user_exists")
        created = await get(connection, user_id)
        await audit.record(connection, actor=actor, action="user.create", user_id=user_id, after=created)
    return created


async def update(
    connection: AsyncConnection, user_id: str, changes: dict, actor: str, *, local_part_case: LocalPartCase
) -> dict:
    """Change e-mail, name, locale or status; an empty string clears e-mail or name."""
    allowed = {"email", "name", "locale", "status"}
    unknown = set(changes) - allowed
    if unknown:
        raise InvalidInput(f"unknown field(s): {', '.join(sorted(unknown))}")
    check_profile(changes.get("email"), changes.get("locale"), changes.get("name"))
    if "status" in changes and changes["status"] not in statuses:
        raise InvalidInput(f"status: must be one of {', '.join(statuses)}")
    values = {key: (value or None) if key in ("email", "name") else value for key, value in changes.items()}
    async with connection.transaction():
        before = await find(connection, user_id, local_part_case)
        user_id = before["user_id"]
        if values:
            assignments = ", ".join(f"{key} = %({key})s" for key in sorted(values))
            await connection.execute(
                f"UPDATE solaris.accounts SET {assignments}, updated_at = now() WHERE user_id = %(user_id)s",
                {**values, "user_id": user_id},
            )
        after = await get(connection, user_id)
        await audit.record(
            connection,
            actor=actor,
            action="user.update",
            user_id=user_id,
            before=before,
            after=after,
            details={"changed": sorted(values)},
        )
    if before["status"] != after["status"]:
        # Blocking and unblocking are what an operator looks for later; API and CLI both pass here.
        log_event(
            "status_changed", user_id=user_id, status_before=before["status"], status=after["status"], actor=actor
        )
    return after


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
                "INSERT INTO solaris.idempotency_keys (key, request_hash) VALUES (%s, %s) ON CONFLICT DO NOTHING "
                "RETURNING key",
                (idempotency_key, fingerprint),
            )
            if await cursor.fetchone() is None:
                cursor = await connection.execute(
                    "SELECT request_hash, response FROM solaris.idempotency_keys WHERE key = %s", (idempotency_key,)
                )
                stored_hash, response = await cursor.fetchone()
                if stored_hash != fingerprint:
                    raise Conflict(
                        "this Idempotency-Key was used for a different request; use a new key", "idempotency_key_reused"
                    )
                return Credit(response, replayed=True)
        before = await get(connection, user_id)
        await connection.execute(
            "SELECT 1 FROM solaris.credit(%s, %s, %s, %s, %s, %s)",
            (user_id, tokens, default_tokens, actor, reason, decimal_levels(thresholds)),
        )
        after = await get(connection, user_id)
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
                "UPDATE solaris.idempotency_keys SET response = %s WHERE key = %s",
                (Jsonb(after, dumps=audit._dumps), idempotency_key),
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
                "SELECT 1 FROM solaris.adjust(%s, %s, %s, %s, %s, %s)",
                (user_id, tokens, target, actor, reason, decimal_levels(thresholds)),
            )
        except psycopg.errors.NumericValueOutOfRange:
            raise Conflict(
                f"this adjustment would make the user's {target} tokens negative", "adjustment_too_large"
            ) from None
        after = await get(connection, user_id)
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
            cursor = await connection.execute(
                "SELECT array(SELECT unnest(%s::text[]) EXCEPT SELECT user_id FROM solaris.accounts)", (user_ids,)
            )
            missing = (await cursor.fetchone())[0]
            if missing:
                shown = ", ".join(repr(user) for user in sorted(missing)[:10])
                raise NotFound(f"unknown users ({len(missing)}): {shown}; nothing was credited", "user_not_found")
        cursor = await connection.execute(
            "SELECT solaris.bulk_credit(%s, %s, %s, %s, %s)",
            (user_ids, tokens, actor, reason, decimal_levels(thresholds)),
        )
        count = (await cursor.fetchone())[0]
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


@dataclass(frozen=True)
class ImportReport:
    created: int
    updated: int


async def import_csv(
    connection: AsyncConnection, text: str, *, actor: str, default_tokens: int, local_part_case: LocalPartCase
) -> ImportReport:
    """Create or update users from CSV with a header row: user_id, and optionally email,
    name, locale, tokens (first grant, for new users). All rows or none."""
    reader = csv.DictReader(io.StringIO(text))
    try:
        rows = _import_rows(reader, default_tokens, local_part_case)
    except csv.Error as error:  # a field over csv.field_size_limit(), a broken quote…
        raise InvalidInput(f"the CSV cannot be read (line {reader.line_num}): {error}") from None
    created = updated = 0
    async with connection.transaction():
        resolved = await resolve_user_ids(connection, [row[0] for row in rows], local_part_case)
        for user_id, (_, email, name, locale, tokens) in zip(resolved, rows, strict=False):
            cursor = await connection.execute(
                "SELECT user_id FROM solaris.create_account(%s, %s, %s, %s, %s, %s)",
                (user_id, tokens, email, name, locale, actor),
            )
            if await cursor.fetchone() is not None:
                created += 1
                continue
            await connection.execute(
                """UPDATE solaris.accounts SET email = coalesce(%s, email), name = coalesce(%s, name),
                          locale = coalesce(%s, locale), updated_at = now() WHERE user_id = %s""",
                (email, name, locale, user_id),
            )
            updated += 1
        await audit.record(
            connection,
            actor=actor,
            action="import",
            details={"created": created, "updated": updated, "rows": len(rows)},
        )
    return ImportReport(created, updated)


def _import_rows(reader: csv.DictReader, default_tokens: int, local_part_case: LocalPartCase) -> list[tuple]:
    """The checked rows of an import, or InvalidInput naming the first bad lines."""
    fields = set(reader.fieldnames or ())
    if "user_id" not in fields:
        raise InvalidInput(
            "the CSV needs a header row with a user_id column (and optionally email, name, locale, tokens)"
        )
    unknown = fields - {"user_id", "email", "name", "locale", "tokens"}
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
            tokens_text = (row.get("tokens") or "").strip()
            tokens = default_tokens if not tokens_text else int(tokens_text)
            if not 0 <= tokens <= 10**12:
                raise InvalidInput("tokens: must be between 0 and 10^12")
        except ValueError:
            problems.append(f"line {line}: tokens must be a whole number")
            continue
        except InvalidInput as error:
            problems.append(f"line {line}: {error.message}")
            continue
        rows.append((user_id, row.get("email") or None, row.get("name") or None, row.get("locale") or None, tokens))
    if problems:
        raise InvalidInput("nothing imported: " + "; ".join(problems[:20]))
    if not rows:
        raise InvalidInput("the CSV has no users")
    return rows


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
                "SELECT * FROM solaris.merge_accounts(%s, %s, %s, %s)",
                (source, target, actor, decimal_levels(thresholds)),
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
        moved = {column.name: int(value) for column, value in zip(cursor.description, row, strict=False)}
        after = await get(connection, target)
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


async def ledger_page(
    connection: AsyncConnection,
    user_id: str,
    *,
    kind: str | None,
    start: datetime | None,
    end: datetime | None,
    limit: int,
    offset: int,
    local_part_case: LocalPartCase,
) -> tuple[list[dict], int]:
    user_id = (await find(connection, user_id, local_part_case))["user_id"]
    where = """WHERE user_id = %(user)s AND (%(kind)s::text IS NULL OR kind = %(kind)s)
                 AND (%(start)s::timestamptz IS NULL OR created_at >= %(start)s)
                 AND (%(end)s::timestamptz IS NULL OR created_at < %(end)s)"""
    params = {"user": user_id, "kind": kind, "start": start, "end": end, "limit": limit, "offset": offset}
    columns = """id, kind, tokens, credited_delta, debited_delta, reserved_delta, raw_tokens, model,
                 cost_usd::float8 AS cost_usd, call_id, actor, reason, created_at"""
    return await fetch_page(
        connection, columns=columns, source="solaris.ledger", where=where, order_by="id DESC", params=params
    )
