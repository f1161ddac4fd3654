"""Leases in the ledger (issue 16) straight against Postgres: taking, batch settles, returns."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from solaris_hooks.db import leases, ledger
from solaris_hooks.db.leases import LeasedCall
from tests.support.event_loop import run_with_connection
from tests.support.ledger_sql import account_balances


@pytest.fixture
def user_id() -> str:
    return f"lease-{uuid.uuid4().hex}"


def take(connection, user_id: str, lease_id: str, wanted: int, minimum: int = 1, share: float = 1):
    return leases.take_lease(
        connection,
        user_id=user_id,
        lease_id=lease_id,
        owner="test-process",
        wanted_tokens=wanted,
        minimum_tokens=minimum,
        share=share,
        default_tokens=1000,
        ttl_s=60,
    )


def ledger_rows(database_url: str, user_id: str) -> list[tuple]:
    with psycopg.connect(database_url) as connection:
        return connection.execute(
            "SELECT kind, call_id, lease_id, tokens, debited_delta, reserved_delta FROM solaris.ledger"
            " WHERE user_id = %s AND kind <> 'grant' ORDER BY id",
            (user_id,),
        ).fetchall()


class TestTakeLease:
    def test_a_lease_is_a_reservation_that_leaves_what_other_processes_need(self, own_database, user_id):
        async def scenario(connection):
            return await take(connection, user_id, "lease-a", wanted=900, share=0.7)

        taken = run_with_connection(own_database, scenario)
        # 1,000 free, 30 % kept for others: 700 leased, not the 900 asked for.
        assert (taken.outcome, taken.reserved) == ("reserved", 700)
        assert account_balances(own_database, user_id) == (1000, 0, 700)
        assert ledger_rows(own_database, user_id) == [("reserve", "lease-a", "lease-a", 700, 0, 700)]

    def test_no_lease_is_taken_near_the_edge(self, own_database, user_id):
        async def scenario(connection):
            return await take(connection, user_id, "lease-b", wanted=900, minimum=400, share=0.3)

        taken = run_with_connection(own_database, scenario)
        assert (taken.outcome, taken.reserved) == ("exhausted", 0)
        assert account_balances(own_database, user_id) == (1000, 0, 0)

    def test_a_top_up_adds_to_the_held_lease_with_an_extend_row(self, own_database, user_id):
        async def scenario(connection):
            await take(connection, user_id, "lease-c", wanted=200)
            return await take(connection, user_id, "lease-c", wanted=300)

        topped = run_with_connection(own_database, scenario)
        assert (topped.outcome, topped.reserved) == ("reserved", 300)
        assert account_balances(own_database, user_id) == (1000, 0, 500)

    def test_a_returned_lease_cannot_be_topped_up(self, own_database, user_id):
        async def scenario(connection):
            await take(connection, user_id, "lease-d", wanted=200)
            await ledger.resolve(connection, call_id="lease-d", kind="release")
            return await take(connection, user_id, "lease-d", wanted=300)

        assert run_with_connection(own_database, scenario).outcome == "lost"
        assert account_balances(own_database, user_id) == (1000, 0, 0)


class TestSettleLeased:
    def test_each_call_is_one_settle_row_paid_from_the_lease(self, own_database, user_id):
        calls = [LeasedCall(f"call-{n}-{user_id}", "lease-e", raw_tokens=100 * n, factor=0.376) for n in (1, 2, 3)]

        async def scenario(connection):
            await take(connection, user_id, "lease-e", wanted=600)
            return await leases.settle_leased(connection, calls, ttl_s=60)

        [state] = run_with_connection(own_database, scenario)
        charged = [38, 76, 113]  # ceil(100 × 0.376), ceil(200 × 0.376), ceil(300 × 0.376)
        assert (state.lease_state, state.lease_tokens, state.status) == ("pending", 600 - sum(charged), "active")
        assert state.charged_tokens == sum(charged)
        assert account_balances(own_database, user_id) == (1000, sum(charged), 600 - sum(charged))
        settles = [row for row in ledger_rows(own_database, user_id) if row[0] == "settle"]
        assert settles == [
            ("settle", call.call_id, "lease-e", tokens, tokens, -tokens)
            for call, tokens in zip(calls, charged, strict=True)
        ]

    def test_a_call_settled_twice_is_charged_once(self, own_database, user_id):
        call = LeasedCall(f"call-{user_id}", "lease-f", raw_tokens=1000, factor=0.5)

        async def scenario(connection):
            await take(connection, user_id, "lease-f", wanted=900)
            await leases.settle_leased(connection, [call], ttl_s=60)
            return await leases.settle_leased(connection, [call, call], ttl_s=60)

        [state] = run_with_connection(own_database, scenario)
        assert state.charged_tokens == 0
        assert account_balances(own_database, user_id) == (1000, 500, 400)

    def test_a_stream_is_charged_at_most_what_it_held_of_the_lease(self, own_database, user_id):
        """Migration 0011: a metered stream's usage past what it held (its provider counted more
        than its chunks, and nothing more was free) is charged up to what it held, no further."""
        stream = LeasedCall(f"stream-{user_id}", "lease-s", raw_tokens=1000, factor=0.5, held_tokens=300)

        async def scenario(connection):
            await take(connection, user_id, "lease-s", wanted=900)
            return await leases.settle_leased(connection, [stream], ttl_s=60)

        [state] = run_with_connection(own_database, scenario)
        assert (state.charged_tokens, state.lease_tokens) == (300, 600)
        assert account_balances(own_database, user_id) == (1000, 300, 600)

    def test_a_stream_whose_process_died_is_charged_what_it_held_and_the_ledger_says_why(self, own_database, user_id):
        running = LeasedCall(f"stream-{user_id}", "lease-r", 600, factor=0.5, held_tokens=250, running=True)

        async def scenario(connection):
            await take(connection, user_id, "lease-r", wanted=900)
            return await leases.settle_leased(connection, [running], ttl_s=60)

        [state] = run_with_connection(own_database, scenario)
        assert state.charged_tokens == 250
        with psycopg.connect(own_database) as connection:
            [(tokens, reason)] = connection.execute(
                "SELECT tokens, reason FROM solaris.ledger WHERE call_id = %s", (running.call_id,)
            ).fetchall()
        assert tokens == 250 and "mid-stream" in reason

    def test_a_call_whose_lease_was_returned_is_charged_late_from_the_account(self, own_database, user_id):
        """The replay of a dead process's spool after its lease expired: owed all the same."""
        call = LeasedCall(f"call-{user_id}", "lease-g", raw_tokens=1000, factor=0.5)

        async def scenario(connection):
            await take(connection, user_id, "lease-g", wanted=900)
            await ledger.resolve(connection, call_id="lease-g", kind="expire")
            return await leases.settle_leased(connection, [call], ttl_s=60)

        [state] = run_with_connection(own_database, scenario)
        assert (state.lease_state, state.charged_tokens) == ("expired", 500)
        assert account_balances(own_database, user_id) == (1000, 500, 0)
        assert ledger_rows(own_database, user_id)[-1] == ("settle", call.call_id, "lease-g", 500, 500, 0)

    def test_a_batch_names_a_blocked_account_so_its_lease_is_given_up(self, own_database, user_id):
        call = LeasedCall(f"call-{user_id}", "lease-h", raw_tokens=10, factor=1)

        async def scenario(connection):
            await take(connection, user_id, "lease-h", wanted=100)
            await connection.execute("UPDATE solaris.accounts SET status = 'blocked' WHERE user_id = %s", (user_id,))
            return await leases.settle_leased(connection, [call], ttl_s=60)

        [state] = run_with_connection(own_database, scenario)
        assert (state.status, state.charged_tokens) == ("blocked", 10)

    def test_one_batch_settles_the_leases_of_many_users(self, own_database):
        users = [f"lease-many-{n}-{uuid.uuid4().hex[:8]}" for n in range(5)]
        calls = [
            LeasedCall(f"call-{n}-{user}", f"lease-{user}", raw_tokens=10, factor=1) for user in users for n in range(3)
        ]

        async def scenario(connection):
            for user in users:
                await take(connection, user, f"lease-{user}", wanted=100)
            return await leases.settle_leased(connection, calls, ttl_s=60)

        states = run_with_connection(own_database, scenario)
        assert sorted(state.lease_id for state in states) == sorted(f"lease-{user}" for user in users)
        assert {state.lease_tokens for state in states} == {70}
        for user in users:
            assert account_balances(own_database, user) == (1000, 30, 70)

    def test_a_returned_lease_gives_back_only_what_its_calls_did_not_use(self, own_database, user_id):
        call = LeasedCall(f"call-{user_id}", "lease-i", raw_tokens=100, factor=1)

        async def scenario(connection):
            await take(connection, user_id, "lease-i", wanted=500)
            await leases.settle_leased(connection, [call], ttl_s=60)
            return await ledger.resolve(connection, call_id="lease-i", kind="release")

        run_with_connection(own_database, scenario)
        assert account_balances(own_database, user_id) == (1000, 100, 0)
        assert ledger_rows(own_database, user_id)[-1] == ("release", "lease-i", None, 400, 0, -400)
