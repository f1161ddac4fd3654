"""Calls on reservations of their own, settled in batches (solaris.settle_batch, migration 0010),
straight against Postgres and through the hooks with leases on."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from solaris_hooks.db.batched_settles import BatchedSettle, settle_batch
from solaris_hooks.quota import leasing
from tests.integration.test_leases import call, lease_settings
from tests.support import ledger_calls
from tests.support.event_loop import run_with_callback, run_with_connection
from tests.support.ledger_sql import account_balances


@pytest.fixture
def user_ids() -> list[str]:
    return [f"batched-{number}-{uuid.uuid4().hex}@example.com" for number in range(3)]


async def reserve(connection, user_id: str, call_id: str) -> None:
    reservation = await ledger_calls.reserve(
        connection, user_id, call_id, 100, model="gpt-4o-mini", thresholds=(0.8, 0.95)
    )
    assert reservation.outcome == "reserved"


class TestSettleBatch:
    def test_each_call_is_charged_as_it_would_be_alone_and_only_once(self, own_database, user_ids):
        """Calls of three users in one batch, then the same batch again (a replay after a crash
        between the write and the journal's cut): one settle row each, charged once."""

        async def scenario(connection):
            for user_id in user_ids:
                await reserve(connection, user_id, f"call-{user_id}")
            calls = [BatchedSettle(f"call-{user_id}", 101, "gpt-4o-mini", 0.001) for user_id in reversed(user_ids)]
            first = await settle_batch(connection, calls, thresholds=(0.8, 0.95))
            again = await settle_batch(connection, calls, thresholds=(0.8, 0.95))
            return first, again

        first, again = run_with_connection(own_database, scenario)
        assert sorted((row.call_id, row.state, row.charged_tokens) for row in first) == sorted(
            (f"call-{user_id}", "settled", 51)
            for user_id in user_ids  # ceil(101 × 0.5)
        )
        assert [row.charged_tokens for row in again] == [0, 0, 0]
        for user_id in user_ids:
            assert account_balances(own_database, user_id) == (1000, 51, 0)

    def test_a_reservation_that_expired_meanwhile_is_charged_late_and_an_unknown_call_nothing(
        self, own_database, user_ids
    ):
        async def scenario(connection):
            await reserve(connection, user_ids[0], "call-late")
            await connection.execute("UPDATE solaris.reservations SET expires_at = now() WHERE call_id = 'call-late'")
            await connection.execute("SELECT solaris.expire_due(100)")
            return await settle_batch(
                connection, [BatchedSettle("call-late", 40), BatchedSettle("call-nobody-made", 40)]
            )

        results = {row.call_id: (row.state, row.charged_tokens) for row in run_with_connection(own_database, scenario)}
        assert results["call-late"][1] == 20
        assert results["call-nobody-made"][1] == 0
        assert account_balances(own_database, user_ids[0]) == (1000, 20, 0)


class TestThroughTheHooks:
    def test_calls_of_users_who_call_rarely_wait_for_the_batch_holding_their_reservations(
        self, own_database, user_ids, tmp_path
    ):
        """No lease for a user's first call, yet with leases on its settle waits for the batch:
        until then its reservation holds the worst case; the batch charges each call once."""

        async def scenario(callback, service):
            for user_id in user_ids:
                await call(callback, user_id)
            before = [account_balances(own_database, user_id) for user_id in user_ids]
            written = await leasing.flush_once(service)
            return before, written

        before, written = run_with_callback(
            own_database,
            scenario,
            **lease_settings(tmp_path, default_tokens_per_user=1000, settle_batch_interval_ms=5000),
        )
        assert written == 3
        for credited, debited, reserved in before:
            assert (credited, debited) == (1000, 0) and reserved > 0
        for user_id in user_ids:
            assert account_balances(own_database, user_id) == (1000, 57, 0)  # ceil(150 × 0.376)
        with psycopg.connect(own_database) as connection:
            kinds = connection.execute(
                "SELECT kind, count(*) FROM solaris.ledger WHERE user_id = ANY(%s) AND kind <> 'grant'"
                " GROUP BY kind ORDER BY kind",
                (user_ids,),
            ).fetchall()
        assert kinds == [("reserve", 3), ("settle", 3)]
