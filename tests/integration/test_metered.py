"""Metered reservations (issue 14) straight against Postgres: growth, settle cap, expiry charges."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from solaris_hooks.db import ledger
from tests.support import ledger_calls
from tests.support.event_loop import run_with_connection
from tests.support.ledger_sql import account_balances


@pytest.fixture
def user_id() -> str:
    return f"metered-{uuid.uuid4().hex}"


def reserve_metered(connection, user_id: str, call_id: str, wanted: int):
    return ledger_calls.reserve(connection, user_id, call_id, wanted, factor=0.376, metered=True)


def test_growth_takes_only_what_is_free_and_writes_one_extend_row_each(database_url, user_id):
    call_id = uuid.uuid4().hex

    async def scenario(connection):
        reservation = await reserve_metered(connection, user_id, call_id, 100)
        grown = [
            await ledger.grow_reservation(connection, call_id, wanted_tokens=wanted, minimum_tokens=minimum, ttl_s=60)
            for wanted, minimum in ((200, 10), (1000, 10), (50, 1))
        ]
        return reservation, grown

    reservation, grown = run_with_connection(database_url, scenario)
    assert reservation.outcome == "reserved"
    # 100 held, +200, then only the 700 left (less than wanted, more than the minimum), then refused.
    assert grown == [200, 700, 0]
    assert account_balances(database_url, user_id) == (1000, 0, 1000)
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT kind, reserved_delta FROM solaris.ledger WHERE call_id = %s ORDER BY id", (call_id,)
        ).fetchall()
    assert rows == [("reserve", 100), ("extend", 200), ("extend", 700)]


def test_a_settle_charges_at_most_what_the_metered_reservation_holds(database_url, user_id):
    call_id = uuid.uuid4().hex

    async def scenario(connection):
        await reserve_metered(connection, user_id, call_id, 100)
        return await ledger.resolve(connection, call_id=call_id, kind="settle", raw_tokens=10_000)

    resolution = run_with_connection(database_url, scenario)
    assert resolution.charged_tokens == 100
    assert account_balances(database_url, user_id) == (1000, 100, 0)


def test_an_expired_metered_reservation_is_charged_what_it_held(database_url, user_id):
    """A proxy that died mid-stream: the sweeper charges what the reservation held, and a
    late settle of it charges nothing more."""
    metered_id, plain_id = uuid.uuid4().hex, uuid.uuid4().hex

    async def scenario(connection):
        await reserve_metered(connection, user_id, metered_id, 100)
        await ledger.grow_reservation(connection, metered_id, wanted_tokens=50, minimum_tokens=1, ttl_s=60)
        await ledger.reserve(
            connection,
            user_id=user_id,
            call_id=plain_id,
            wanted_tokens=70,
            minimum_tokens=1,
            default_tokens=1000,
            ttl_s=60,
            model="m",
            factor=0.376,
        )
        await connection.execute(
            "UPDATE solaris.reservations SET expires_at = now() - interval '1 second' WHERE call_id = ANY(%s)",
            ([metered_id, plain_id],),
        )
        expired = await ledger.expire_due(connection)
        late = await ledger.resolve(connection, call_id=metered_id, kind="settle", raw_tokens=100)
        return expired, late

    expired, late = run_with_connection(database_url, scenario)
    assert expired >= 2
    assert late.charged_tokens == 0
    # The metered one's 150 is charged; the plain one's 70 is returned.
    assert account_balances(database_url, user_id) == (1000, 150, 0)
