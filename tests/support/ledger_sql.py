"""Ledger rows written and read straight in SQL, for states the API would not produce
(overspend, accounts as an older version wrote them) and checks it does not expose."""

from __future__ import annotations

import uuid

import psycopg

from tests.support.suite import proxy_settings

factor = proxy_settings["conversion_factor"]
# The thresholds argument of the ledger's SQL functions, as the proxy passes it.
thresholds = "{0.8,0.95}"


def execute(url: str, *statements: tuple[str, tuple]) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        for query, params in statements:
            connection.execute(query, params)


def account_balances(url: str, user_id: str) -> tuple[int, int, int]:
    """An account's credited, debited and reserved tokens, as the ledger holds them."""
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT credited_tokens, debited_tokens, reserved_tokens FROM solaris.accounts WHERE user_id = %s",
            (user_id,),
        ).fetchone()
    assert row is not None, f"no account {user_id}"
    return row


def unmetered(user_id: str, call_id: str, raw_tokens: int) -> tuple[str, tuple]:
    """A call served while the database was down (fail_mode: open), charged from the spool:
    never reserved, so it can take the account past its allowance."""
    return (
        "SELECT solaris.settle_spooled(%s::text, %s::text, %s::bigint, 'fake-model', %s::numeric, NULL, 1000, "
        "'2026-01-01T00:00:00Z')",
        (call_id, user_id, raw_tokens, factor),
    )


def balance(url: str, user_id: str) -> tuple[int, int, int] | None:
    """(credited, debited, reserved) of a user."""
    with psycopg.connect(url) as connection:
        return connection.execute(
            "SELECT credited_tokens, debited_tokens, reserved_tokens FROM solaris.accounts WHERE user_id = %s",
            (user_id,),
        ).fetchone()


def settle_rows(url: str, user_id: str) -> list[tuple[str, int]]:
    with psycopg.connect(url) as connection:
        return connection.execute(
            "SELECT call_id, count(*) FROM solaris.ledger WHERE user_id = %s AND kind = 'settle' GROUP BY call_id",
            (user_id,),
        ).fetchall()


def legacy_account(database_url: str, user_id: str, *, credit: int, settled_raw: int, pending: int) -> str:
    """An account written as the proxy wrote it before identities were normalised (its id
    as the client spelled it), with a credit, a settled call and a call still in flight.
    Returns the pending call's id."""
    pending_call = f"legacy-{uuid.uuid4().hex}"
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(
            "SELECT 1 FROM solaris.credit(%s, %s, 1000, 'test', 'legacy credit', %s)", (user_id, credit, thresholds)
        )
        settled_call = f"legacy-{uuid.uuid4().hex}"
        connection.execute(
            "SELECT 1 FROM solaris.reserve(%s, %s, %s, 1, 1000, 900, 'fake-model', 0.376, %s)",
            (user_id, settled_call, 10**6, thresholds),
        )
        connection.execute(
            "SELECT 1 FROM solaris.resolve(%s, 'settle', %s, 'fake-model', 0.001, %s)",
            (settled_call, settled_raw, thresholds),
        )
        connection.execute(
            "SELECT 1 FROM solaris.reserve(%s, %s, %s, 1, 1000, 900, 'fake-model', 0.376, %s)",
            (user_id, pending_call, pending, thresholds),
        )
    return pending_call
