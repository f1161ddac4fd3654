"""`solaris users …` and `solaris credits add`: account administration from the shell.

They talk to the database directly (SOLARIS_DATABASE_URL, DATABASE_URL, or the embedded
Postgres of SOLARIS_DATA_DIR), so they work with the proxy stopped. Changes are audited
with the actor `cli:<login name>`. User ids are read as the proxy reads them (its config's
identity_local_part_case): `Ana@Example.COM` finds `ana@example.com`.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg

from solaris_hooks.admin import accounts, credits, merges, user_ledger
from solaris_hooks.cli.database import deployment_database_url
from solaris_hooks.cli.output import print_rows
from solaris_hooks.db.connection import one_command_prepare_threshold
from solaris_hooks.settings import load_settings

account_columns = (
    "user_id",
    "email",
    "name",
    "status",
    "credited_tokens",
    "used_tokens",
    "reserved_tokens",
    "remaining_tokens",
    "period",
)
ledger_columns = ("created_at", "kind", "tokens", "raw_tokens", "model", "cost_usd", "actor", "reason")


def actor() -> str:
    try:
        return "cli:" + getpass.getuser()
    except (KeyError, OSError):
        return "cli"


T = TypeVar("T")


def run_with_connection(work: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
    url = deployment_database_url()

    async def main() -> T:
        async with await psycopg.AsyncConnection.connect(
            url, autocommit=True, prepare_threshold=one_command_prepare_threshold
        ) as connection:
            return await work(connection)

    return asyncio.run(main())


def users_list(args: argparse.Namespace) -> int:
    rows, total = run_with_connection(
        lambda connection: accounts.page(
            connection,
            search=args.search,
            status=args.status,
            sort=args.sort,
            order=args.order,
            limit=min(args.limit, 10_000),
            offset=0,
        )
    )
    print_rows(rows, account_columns, as_csv=args.csv)
    if not args.csv:
        print(f"{len(rows)} of {total} user(s)")
    return 0


def users_show(args: argparse.Namespace) -> int:
    case = load_settings().identity_local_part_case

    async def work(connection: psycopg.AsyncConnection) -> tuple[dict, list[dict], int]:
        account = await accounts.find(connection, args.user_id, case)
        rows, total = await user_ledger.ledger_page(
            connection,
            account["user_id"],
            kind=None,
            start=None,
            end=None,
            limit=args.ledger_rows,
            offset=0,
            local_part_case=case,
        )
        return account, rows, total

    account, rows, total = run_with_connection(work)
    width = max(len(key) for key in account)
    for key, value in account.items():
        print(f"{key:<{width}}  {'' if value is None else value}")
    print()
    print_rows(rows, ledger_columns, title=f"last {len(rows)} of {total} ledger rows")
    return 0


def users_create(args: argparse.Namespace) -> int:
    settings = load_settings()
    tokens = settings.default_tokens_per_user if args.tokens is None else args.tokens
    created = run_with_connection(
        lambda connection: accounts.create(
            connection,
            user_id=args.user_id,
            tokens=tokens,
            email=args.email,
            name=args.name,
            locale=args.locale,
            actor=actor(),
            local_part_case=settings.identity_local_part_case,
        )
    )
    print(f"created {created['user_id']} with {created['credited_tokens']} tokens")
    return 0


def users_set_status(args: argparse.Namespace) -> int:
    case = load_settings().identity_local_part_case
    updated = run_with_connection(
        lambda connection: accounts.update(
            connection, args.user_id, {"status": args.status}, actor(), local_part_case=case
        )
    )
    print(f"{updated['user_id']} is now {updated['status']}")
    return 0


def users_set_group(args: argparse.Namespace) -> int:
    settings = load_settings()
    group = None if args.none else args.group
    updated = run_with_connection(
        lambda connection: accounts.update(
            connection,
            args.user_id,
            {"group": group},
            actor(),
            local_part_case=settings.identity_local_part_case,
            groups=settings.groups,
        )
    )
    print(
        f"{updated['user_id']} is now in group {updated['group']}"
        if updated["group"]
        else f"{updated['user_id']} is in no group"
    )
    return 0


def credits_add(args: argparse.Namespace) -> int:
    settings = load_settings()
    credit = run_with_connection(
        lambda connection: credits.credit(
            connection,
            user_id=args.user_id,
            tokens=args.tokens,
            reason=args.reason,
            actor=actor(),
            default_tokens=settings.default_tokens_per_user,
            thresholds=settings.alert_thresholds,
            local_part_case=settings.identity_local_part_case,
            idempotency_key=args.idempotency_key,
        )
    )
    print(credit_line(args.tokens, credit.account, credit.replayed))
    return 0


def credit_line(tokens: int, account: dict, replayed: bool) -> str:
    """What was added, then the account's totals: "+200 tokens credited to ana; 500 credited in all, 430 left".
    The totals alone read as the amount added (an operator who added 200 read "500 credited")."""
    totals = f"{account['credited_tokens']} credited in all, {account['remaining_tokens']} left"
    if replayed:
        return f"{account['user_id']}: already done with this idempotency key, nothing added; {totals}"
    return f"+{tokens} tokens credited to {account['user_id']}; {totals}"


def users_merge(args: argparse.Namespace) -> int:
    settings = load_settings()
    merged = run_with_connection(
        lambda connection: merges.merge(
            connection,
            from_user_id=args.from_user_id,
            into_user_id=args.into_user_id,
            actor=actor(),
            thresholds=settings.alert_thresholds,
            local_part_case=settings.identity_local_part_case,
        )
    )
    account, moved = merged.account, merged.moved
    print(
        f"merged {merged.merged_from} into {account['user_id']}: {moved['ledger_rows']} ledger rows, "
        f"{moved['reservations']} reservations ({moved['pending_reservations']} pending), {moved['alerts']} alerts "
        f"moved; {account['credited_tokens']} credited, {account['remaining_tokens']} left"
    )
    return 0


def positive_tokens(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of tokens") from None
    if not 0 < value <= 10**12:
        raise argparse.ArgumentTypeError("tokens must be between 1 and 10^12")
    return value


def add_user_commands(commands: argparse._SubParsersAction) -> None:
    users = commands.add_parser("users", help="list, show, create, merge users and change their status")
    user_commands = users.add_subparsers(dest="users_command", required=True)

    listing = user_commands.add_parser("list", help="users with their balances")
    listing.add_argument("--search", help="part of the id, e-mail or name")
    listing.add_argument("--status", choices=accounts.statuses)
    listing.add_argument("--sort", choices=tuple(accounts.sort_orders), default="created")
    listing.add_argument("--order", choices=("asc", "desc"), default="desc")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--csv", action="store_true", help="CSV instead of a table")
    listing.set_defaults(handler=users_list)

    show = user_commands.add_parser("show", help="one user's balance, profile and latest ledger rows")
    show.add_argument("user_id")
    show.add_argument("--ledger-rows", type=int, default=10)
    show.set_defaults(handler=users_show)

    create = user_commands.add_parser("create", help="create a user ahead of their first call")
    create.add_argument("user_id")
    create.add_argument("--email")
    create.add_argument("--name")
    create.add_argument("--locale", choices=("pt-BR", "en"))
    create.add_argument("--tokens", type=int, help="first grant (default: default_tokens_per_user)")
    create.set_defaults(handler=users_create)

    status = user_commands.add_parser("set-status", help="activate, block or disable a user")
    status.add_argument("user_id")
    status.add_argument("status", choices=accounts.statuses)
    status.set_defaults(handler=users_set_status)

    group = user_commands.add_parser(
        "set-group",
        help="put a user in a group of solaris_settings.groups (wins over calls' group header)",
    )
    group.add_argument("user_id")
    chosen = group.add_mutually_exclusive_group(required=True)
    chosen.add_argument("group", nargs="?", help="a configured group")
    chosen.add_argument("--none", action="store_true", help="no group chosen by an admin (calls' header may set one)")
    group.set_defaults(handler=users_set_group)

    merge = user_commands.add_parser(
        "merge",
        help="make one person's two accounts one (e.g. Ana@Example.COM into ana@example.com)",
        description="Moves FROM's ledger rows, reservations and alerts to INTO, adds its balances to INTO's and "
        "deletes FROM, in one audited transaction. FROM must be an account calls no longer reach "
        "(made before identities were normalised); INTO, one they reach.",
    )
    merge.add_argument("from_user_id", metavar="FROM")
    merge.add_argument("into_user_id", metavar="INTO")
    merge.set_defaults(handler=users_merge)

    credits = commands.add_parser("credits", help="add tokens to a user")
    credit_commands = credits.add_subparsers(dest="credits_command", required=True)
    add = credit_commands.add_parser("add", help="add tokens to a user (created if unknown)")
    add.add_argument("user_id")
    add.add_argument("tokens", type=positive_tokens)
    add.add_argument("--reason", required=True, help="why, for the ledger")
    add.add_argument("--idempotency-key", help="run twice with the same key, credit once")
    add.set_defaults(handler=credits_add)
