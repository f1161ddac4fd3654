"""The ledger functions straight against Postgres: provisioning, reservations, credits."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest

from solaris_hooks.db import ledger
from tests.support.event_loop import run_with_connection


def reserve(
    connection, user_id: str, call_id: str | None = None, wanted: int = 100, minimum: int = 1, default: int = 1000
):
    return ledger.reserve(
        connection,
        user_id=user_id,
        call_id=call_id or uuid.uuid4().hex,
        wanted_tokens=wanted,
        minimum_tokens=minimum,
        default_tokens=default,
        ttl_s=60,
        model="m",
        factor=0.376,
    )


@pytest.fixture
def user_id() -> str:
    return f"ledger-{uuid.uuid4().hex}"


class TestProvisioning:
    def test_concurrent_first_calls_provision_once(self, database_url, user_id):
        """20 first calls at once: one account, one grant row."""

        async def scenario(_connection):
            async def one():
                async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
                    return await reserve(connection, user_id, wanted=10)

            return await asyncio.gather(*(one() for _ in range(20)))

        results = run_with_connection(database_url, scenario)
        assert all(result.outcome == "reserved" for result in results)
        with psycopg.connect(database_url) as connection:
            grants = connection.execute(
                "SELECT count(*) FROM solaris.ledger WHERE user_id = %s AND kind = 'grant'", (user_id,)
            ).fetchone()[0]
            credited = connection.execute(
                "SELECT credited_tokens, reserved_tokens FROM solaris.accounts WHERE user_id = %s", (user_id,)
            ).fetchone()
        assert grants == 1
        assert credited == (1000, 200)


class TestReserve:
    def test_a_call_id_is_reserved_once(self, database_url, user_id):
        """Reserving the same call id again reserves nothing more: the caller refuses the call."""

        async def scenario(connection):
            first = await reserve(connection, user_id, "call-x-" + user_id, wanted=100)
            second = await reserve(connection, user_id, "call-x-" + user_id, wanted=300)
            return first, second, await ledger.balance(connection, user_id)

        first, second, balance = run_with_connection(database_url, scenario)
        assert (first.outcome, second.outcome) == ("reserved", "duplicate")
        assert second.reserved == 0  # nothing for the second call to ride on
        assert balance.reserved_tokens == 100

    def test_a_reservation_takes_what_is_left_when_less_than_wanted(self, database_url, user_id):
        """Wanted 5000 of 1000: reserves 1000, the rest of the allowance."""

        async def scenario(connection):
            return await reserve(connection, user_id, wanted=5000, minimum=10)

        assert run_with_connection(database_url, scenario).reserved == 1000

    def test_below_the_minimum_the_call_is_refused(self, database_url, user_id):
        """When less than the minimum is left, the outcome is exhausted and nothing changes."""

        async def scenario(connection):
            await reserve(connection, user_id, wanted=995)
            refused = await reserve(connection, user_id, wanted=50, minimum=6)
            return refused, await ledger.balance(connection, user_id)

        refused, balance = run_with_connection(database_url, scenario)
        assert refused.outcome == "exhausted"
        assert balance.reserved_tokens == 995

    @pytest.mark.parametrize("status", ["blocked", "disabled"])
    def test_an_inactive_account_is_refused(self, database_url, user_id, status):
        """Blocked and disabled accounts reserve nothing, whatever their balance."""

        async def scenario(connection):
            await reserve(connection, user_id, wanted=1)
            await connection.execute("UPDATE solaris.accounts SET status = %s WHERE user_id = %s", (status, user_id))
            return await reserve(connection, user_id, wanted=1)

        assert run_with_connection(database_url, scenario).outcome == status


class TestResolve:
    def test_a_call_is_resolved_at_most_once(self, database_url, user_id):
        """Settle then settle, release or expire again: only the first counts."""

        async def scenario(connection):
            reservation = await reserve(connection, user_id, "call-r-" + user_id, wanted=100)
            states = [await ledger.resolve(connection, call_id="call-r-" + user_id, kind="settle", raw_tokens=100)]
            for kind in ("settle", "release", "expire"):
                states.append(await ledger.resolve(connection, call_id="call-r-" + user_id, kind=kind, raw_tokens=999))
            states = [(resolution.state, resolution.charged_tokens) for resolution in states]
            return reservation, states, await ledger.balance(connection, user_id)

        reservation, states, balance = run_with_connection(database_url, scenario)
        assert states == [("settled", 38)] + [("settled", 0)] * 3
        assert balance.debited_tokens == 38  # ceil(100 × 0.376)
        assert balance.reserved_tokens == 0

    def test_an_unknown_call_changes_nothing(self, database_url):
        """A settle for a call never reserved is reported, not invented."""

        async def scenario(connection):
            return await ledger.resolve(connection, call_id="never-" + uuid.uuid4().hex, kind="settle", raw_tokens=5)

        assert run_with_connection(database_url, scenario).state == "unknown"

    def test_release_returns_the_reserved_tokens(self, database_url, user_id):
        """A failed call's reservation goes back to the user in full."""

        async def scenario(connection):
            await reserve(connection, user_id, "call-f-" + user_id, wanted=400)
            await ledger.resolve(connection, call_id="call-f-" + user_id, kind="release")
            return await ledger.balance(connection, user_id)

        balance = run_with_connection(database_url, scenario)
        assert (balance.debited_tokens, balance.reserved_tokens, balance.remaining_tokens) == (0, 0, 1000)


class TestCredit:
    def test_a_credit_before_the_first_call_adds_to_the_default(self, database_url, user_id):
        """Crediting an unknown user provisions the default allowance first."""

        async def scenario(connection):
            return await ledger.credit(
                connection, user_id=user_id, tokens=250, default_tokens=1000, actor="test", reason="boas-vindas"
            )

        balance = run_with_connection(database_url, scenario)
        assert balance.credited_tokens == 1250

    def test_a_credit_must_be_positive(self, database_url, user_id):
        """Zero or negative credits are refused by the database itself."""

        async def scenario(connection):
            await ledger.credit(connection, user_id=user_id, tokens=-5, default_tokens=1000, actor="t", reason="r")

        with pytest.raises(psycopg.errors.RaiseException):
            run_with_connection(database_url, scenario)


class TestRetention:
    def test_old_resolved_reservations_are_pruned_and_the_ledger_stays(self, database_url, user_id):
        """Resolved reservations past the retention go; pending ones and every ledger row stay."""

        async def scenario(connection):
            await reserve(connection, user_id, "old-settled-" + user_id, wanted=10)
            await ledger.resolve(connection, call_id="old-settled-" + user_id, kind="settle", raw_tokens=10)
            await reserve(connection, user_id, "old-pending-" + user_id, wanted=10)
            await connection.execute(
                "UPDATE solaris.reservations SET created_at = now() - interval '9 days', "
                "resolved_at = CASE WHEN state = 'pending' THEN NULL ELSE now() - interval '9 days' END "
                "WHERE user_id = %s",
                (user_id,),
            )
            pruned = await ledger.prune_resolved(connection, retention_s=7 * 86400)
            cursor = await connection.execute("SELECT call_id FROM solaris.reservations WHERE user_id = %s", (user_id,))
            left = [row[0] for row in await cursor.fetchall()]
            cursor = await connection.execute("SELECT count(*) FROM solaris.ledger WHERE user_id = %s", (user_id,))
            ledger_rows = (await cursor.fetchone())[0]
            late = await ledger.resolve(connection, call_id="old-settled-" + user_id, kind="settle", raw_tokens=99)
            return pruned, left, ledger_rows, late, await ledger.balance(connection, user_id)

        pruned, left, ledger_rows, late, balance = run_with_connection(database_url, scenario)
        assert pruned >= 1 and left == ["old-pending-" + user_id]
        assert ledger_rows == 4  # grant, reserve, settle, reserve
        assert late.state == "unknown" and balance.debited_tokens == 4  # ceil(10 × 0.376), charged once
