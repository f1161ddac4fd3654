"""Refills in a real ledger: one grant per user and period, even with two workers.

Periods and their keys: tests/unit/test_refill.py."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import psycopg

from solaris_hooks.db.refill import refill_due
from solaris_hooks.settings.refill import RefillSettings


def connector(url: str):
    @asynccontextmanager
    async def connect():
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
            yield connection

    return connect


def balances(url: str) -> dict[str, tuple[int, int, str]]:
    with psycopg.connect(url) as connection:
        rows = connection.execute("SELECT user_id, credited_tokens, debited_tokens, period FROM solaris.accounts")
        return {user: (credited, debited, period) for user, credited, debited, period in rows}


def seed(url: str, *users: tuple[str, int]) -> None:
    """Users with some usage: (id, tokens used of a 1000 allowance)."""
    with psycopg.connect(url, autocommit=True) as connection:
        for user, used in users:
            connection.execute("SELECT solaris.reserve(%s, %s, %s, 1, 1000, 60, 'm', 1)", (user, f"c-{user}", used))
            connection.execute("SELECT solaris.resolve(%s, 'settle', %s, 'm', NULL)", (f"c-{user}", used))


class TestRefill:
    def test_reset_to_sets_what_is_left(self, own_database):
        """mode reset_to: credited − debited becomes the amount, whatever was used."""
        seed(own_database, ("ana", 900), ("bia", 0))
        settings = RefillSettings(every="month", mode="reset_to", amount=1000)
        refilled = asyncio.run(refill_due(connector(own_database), settings, datetime(2026, 12, 2, tzinfo=UTC)))
        assert refilled == 2
        after = balances(own_database)
        assert after["ana"] == (1900, 900, "2026-12") and after["bia"] == (1000, 0, "2026-12")

    def test_add_tops_up(self, own_database):
        """mode add: the amount is credited on top."""
        seed(own_database, ("ana", 900))
        settings = RefillSettings(every="day", mode="add", amount=50)
        asyncio.run(refill_due(connector(own_database), settings, datetime(2026, 12, 2, tzinfo=UTC)))
        assert balances(own_database)["ana"][0] == 1050

    def test_two_workers_refill_each_user_once_per_period(self, own_database):
        """Two replicas refilling at once, twice each: one grant per user for the period."""
        seed(own_database, *((f"u{index}", index) for index in range(300)))
        settings = RefillSettings(every="month", mode="add", amount=10)
        when = datetime(2026, 12, 2, tzinfo=UTC)

        async def both():
            return await asyncio.gather(*(refill_due(connector(own_database), settings, when) for _ in range(4)))

        counts = asyncio.run(both())
        assert sum(counts) == 300
        with psycopg.connect(own_database) as connection:
            grants = connection.execute(
                "SELECT count(*), count(DISTINCT user_id) FROM solaris.ledger WHERE reason = 'refill 2026-12'"
            ).fetchone()
        assert grants == (300, 300)
        assert {credited for credited, _, _ in balances(own_database).values()} == {1010}

    def test_a_user_first_seen_after_a_refill_is_not_refilled_again(self, own_database):
        """New accounts start in the current period: their first grant is the period's allowance."""
        settings = RefillSettings(every="month", mode="add", amount=10)
        when = datetime(2026, 12, 2, tzinfo=UTC)
        asyncio.run(refill_due(connector(own_database), settings, when))
        seed(own_database, ("late", 5))
        assert asyncio.run(refill_due(connector(own_database), settings, when)) == 0
        assert balances(own_database)["late"] == (1000, 5, "2026-12")

    def test_a_new_period_scopes_the_alerts(self, own_database):
        """80 % alerted in November is alerted again after the December refill."""
        with psycopg.connect(own_database, autocommit=True) as connection:
            connection.execute("SELECT solaris.reserve('ana', 'n1', 850, 1, 1000, 60, 'm', 1, '{0.8,0.95}')")
            connection.execute("SELECT solaris.resolve('n1', 'settle', 850, 'm', NULL, '{0.8,0.95}')")
            asyncio.run(
                refill_due(
                    connector(own_database),
                    RefillSettings(every="month", amount=1000),
                    datetime(2026, 12, 2, tzinfo=UTC),
                )
            )
            connection.execute("SELECT solaris.reserve('ana', 'd1', 850, 1, 1000, 60, 'm', 1, '{0.8,0.95}')")
            connection.execute("SELECT solaris.resolve('d1', 'settle', 850, 'm', NULL, '{0.8,0.95}')")
            alerts = connection.execute(
                "SELECT period, threshold FROM solaris.alerts WHERE user_id = 'ana' AND kind = 'usage' ORDER BY id"
            ).fetchall()
        assert [(period, float(threshold)) for period, threshold in alerts] == [("initial", 0.8), ("2026-12", 0.8)]

    def test_disabled_users_are_not_refilled(self, own_database):
        """A disabled account keeps its balance across periods."""
        seed(own_database, ("off", 100))
        with psycopg.connect(own_database, autocommit=True) as connection:
            connection.execute("UPDATE solaris.accounts SET status = 'disabled' WHERE user_id = 'off'")
        asyncio.run(
            refill_due(
                connector(own_database),
                RefillSettings(every="day", mode="add", amount=10),
                datetime(2026, 12, 2, tzinfo=UTC),
            )
        )
        assert balances(own_database)["off"][0] == 1000
