"""What admins do to accounts, for the API, the CLI and the pages alike: find, list, create
and update. Credits and adjustments (admin.credits), imports (admin.csv_import), merges
(admin.merges) and a user's ledger (admin.user_ledger) build on what is here.

Every change runs in one transaction with its audit row.

An id a person types names an account the way calls do (see solaris_hooks.quota.identity), so
`Ana@Example.COM` finds `ana@example.com`; but an account stored exactly as typed wins
(one made before identities were normalised, until an admin merges it), then an id merged
away (the account it went into), then the normalised id. New accounts get the normalised id.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from functools import cache
from typing import Literal

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.sql import SQL, Composed

from solaris_hooks.db import audit
from solaris_hooks.db.pages import fetch_page, fragment
from solaris_hooks.db.queries import sql
from solaris_hooks.exceptions import Conflict, IdentityRefused, InvalidInput, NotFound
from solaris_hooks.logs import log_event
from solaris_hooks.mail.emails import is_email_address
from solaris_hooks.messages import locales
from solaris_hooks.quota.identity import LocalPartCase, identity_length_max, normalise_identity, validate_identity
from solaris_hooks.settings.groups import group_name

statuses = ("active", "blocked", "disabled")
# How a listing can be sorted: each names db/queries/admin/accounts_sort_<name>.sql.
sort_orders = ("usage", "remaining", "used", "created", "user_id")
sort_directions = {"asc": SQL("ASC"), "desc": SQL("DESC")}
# The group filter of a listing that keeps the users in no group (a group's name keeps its members).
in_no_group = ""
_profile_fields = ("email", "name", "locale", "status", "group")

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
    canonical: list[str | None] = []
    for user_id in exact:
        try:
            canonical.append(normalise_identity(user_id, local_part_case))
        except IdentityRefused:
            canonical.append(None)  # still found when an account is stored exactly so
    cursor = await connection.execute(sql("admin/resolve_user_ids"), {"exact": exact, "canonical": canonical})
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


@cache
def _account_query() -> Composed:
    return fragment("admin/account").format(columns=fragment("admin/account_columns"))


async def get(connection: AsyncConnection, user_id: str) -> dict | None:
    async with connection.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(_account_query(), {"user_id": user_id})
        return await cursor.fetchone()


async def require(connection: AsyncConnection, user_id: str) -> dict:
    found = await get(connection, user_id)
    if found is None:
        raise NotFound(
            f"no user {user_id!r}: users appear after their first call, a credit or `create`", "user_not_found"
        )
    return found


def configured_group(typed: object, groups: Collection[str]) -> str:
    """A group an admin typed (`Students`: `students`), if it is configured; else InvalidInput."""
    name = group_name(typed)
    if name is None or name not in groups:
        configured = ", ".join(sorted(groups)) or "none (solaris_settings.groups is empty)"
        raise InvalidInput(f"group: {str(typed)[:64]!r} is not a configured group; configured: {configured}")
    return name


def search_pattern(search: str | None) -> str | None:
    """What a search of id, e-mail and name matches: the text typed, literally (`%` and `_`
    typed by an admin are not wildcards)."""
    if not search:
        return None
    return "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def page(
    connection: AsyncConnection,
    *,
    search: str | None = None,
    status: str | None = None,
    group: str | None = None,
    sort: str = "created",
    order: Literal["asc", "desc"] = "desc",
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[dict], int]:
    """A page of accounts and how many match; search looks in id, e-mail and name; group
    keeps that group's members (in_no_group: the users in none; None: everyone)."""
    if sort not in sort_orders:
        raise InvalidInput(f"sort: must be one of {', '.join(sort_orders)}")
    params = {"status": status, "pattern": search_pattern(search), "group": group, "limit": limit, "offset": offset}
    order_by = fragment("admin/accounts_order").format(
        key=fragment(f"admin/accounts_sort_{sort}"), direction=sort_directions["asc" if order == "asc" else "desc"]
    )
    return await fetch_page(
        connection, columns="admin/account_columns", rows="admin/accounts_rows", order_by=order_by, params=params
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
            sql("admin/create_account"),
            {
                "user_id": user_id,
                "tokens": tokens,
                "email": email or None,
                "name": name or None,
                "locale": locale,
                "actor": actor,
            },
        )
        if await cursor.fetchone() is None:
            raise Conflict(f"user {user_id!r} already exists", "user_exists")
        created = await require(connection, user_id)
        await audit.record(connection, actor=actor, action="user.create", user_id=user_id, after=created)
    return created


async def update(
    connection: AsyncConnection,
    user_id: str,
    changes: dict,
    actor: str,
    *,
    local_part_case: LocalPartCase,
    groups: Collection[str] = (),
) -> dict:
    """Change e-mail, name, locale, status or group (one of `groups`, the configured ones);
    an empty string or null clears e-mail, name or group (calls' headers may then set it)."""
    unknown = set(changes) - set(_profile_fields)
    if unknown:
        raise InvalidInput(f"unknown field(s): {', '.join(sorted(unknown))}")
    check_profile(changes.get("email"), changes.get("locale"), changes.get("name"))
    if "status" in changes and changes["status"] not in statuses:
        raise InvalidInput(f"status: must be one of {', '.join(statuses)}")
    values = {key: (value or None) if key in ("email", "name", "group") else value for key, value in changes.items()}
    if values.get("group") is not None:
        values["group"] = configured_group(values["group"], groups)
    async with connection.transaction():
        before = await find(connection, user_id, local_part_case)
        user_id = before["user_id"]
        if values:
            await connection.execute(
                sql("admin/update_account"),
                {
                    "user_id": user_id,
                    **{field: values.get(field) for field in _profile_fields},
                    **{f"change_{field}": field in values for field in _profile_fields},
                },
            )
        after = await require(connection, user_id)
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
