"""A group's own refill rule in a real ledger (issue 18, part 1): its members are refilled by
it, everyone else by the top-level `refill`; one grant per user and period with replicas;
new accounts and users moved between groups are not refilled twice (migration 0015).

The top-level rule alone: tests/integration/test_refill.py."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import psycopg

from solaris_hooks.db.refill import refill_round
from solaris_hooks.settings import Settings

# 2 December 2026 is a Wednesday of ISO week 49; the 8th, a Monday, starts week 50.
wednesday = datetime(2026, 12, 2, 12, tzinfo=UTC)
next_monday = datetime(2026, 12, 8, 12, tzinfo=UTC)

monthly_groups = Settings(
    refill={"every": "month", "mode": "reset_to", "amount": 1000},
    groups={
        "students": {"refill": {"every": "month", "mode": "reset_to", "amount": 300}},
        "staff": {"default_tokens": 5000},
    },
)
weekly_students = Settings(
    refill={"every": "month", "mode": "reset_to", "amount": 1000},
    groups={"students": {"refill": {"every": "week", "mode": "add", "amount": 50}}, "staff": {}},
)


def connector(url: str):
    @asynccontextmanager
    async def connect():
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
            yield connection

    return connect


def refill(url: str, settings: Settings, when: datetime) -> int:
    return asyncio.run(refill_round(connector(url), settings, when))


def execute(url: str, query: str, *params: object) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as connection:
        cursor = connection.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def seed(url: str, *users: tuple[str, str | None, int]) -> None:
    """Users of a 1000 first grant: (id, group chosen by an admin, tokens used)."""
    for user, group, used in users:
        execute(url, "SELECT solaris.reserve(%s, %s, %s, 1, 1000, 60, 'm', 1)", user, f"c-{user}", used)
        execute(url, "SELECT solaris.resolve(%s, 'settle', %s, 'm', NULL)", f"c-{user}", used)
        if group is not None:
            move(url, user, group)


def move(url: str, user: str, group: str | None) -> None:
    """An admin's change of group, as PATCH /solaris/users/{id} writes it."""
    source = None if group is None else "admin"
    execute(
        url, "UPDATE solaris.accounts SET group_name = %s, group_source = %s WHERE user_id = %s", group, source, user
    )


def left(url: str, user: str) -> int:
    [(tokens,)] = execute(url, "SELECT credited_tokens - debited_tokens FROM solaris.accounts WHERE user_id = %s", user)
    return tokens


def period(url: str, user: str) -> str:
    [(key,)] = execute(url, "SELECT period FROM solaris.accounts WHERE user_id = %s", user)
    return key


def refill_reasons(url: str, user: str) -> list[str]:
    rows = execute(
        url,
        "SELECT reason FROM solaris.ledger"
        " WHERE user_id = %s AND kind = 'grant' AND reason LIKE 'refill %%' ORDER BY id",
        user,
    )
    return [reason for (reason,) in rows]


class TestAGroupsOwnRule:
    def test_a_group_with_its_own_monthly_amount_gets_it_and_the_others_the_top_level_one(self, own_database):
        seed(own_database, ("ana", None, 900), ("bia", "students", 900), ("caio", "staff", 900))
        assert refill(own_database, monthly_groups, wednesday) == 3
        assert [left(own_database, user) for user in ("ana", "bia", "caio")] == [1000, 300, 1000]

    def test_a_user_without_a_group_or_in_a_group_without_a_rule_follows_the_top_level(self, own_database):
        seed(own_database, ("ana", None, 10), ("caio", "staff", 10), ("dora", "gone", 10))
        refill(own_database, monthly_groups, wednesday)
        assert {user: refill_reasons(own_database, user) for user in ("ana", "caio", "dora")} == {
            "ana": ["refill 2026-12"],
            "caio": ["refill 2026-12"],
            "dora": ["refill 2026-12"],
        }

    def test_the_grant_of_a_groups_rule_names_the_group(self, own_database):
        seed(own_database, ("bia", "students", 0))
        refill(own_database, monthly_groups, wednesday)
        assert refill_reasons(own_database, "bia") == ["refill 2026-12 (group students)"]
        assert execute(own_database, "SELECT group_name FROM solaris.ledger WHERE reason LIKE 'refill %%'") == [
            ("students",)
        ]

    def test_a_weekly_group_refills_at_its_own_period_while_the_others_wait_for_theirs(self, own_database):
        seed(own_database, ("ana", None, 100), ("bia", "students", 100), ("caio", "staff", 100))
        assert refill(own_database, weekly_students, wednesday) == 3
        assert refill(own_database, weekly_students, wednesday) == 0
        assert refill(own_database, weekly_students, next_monday) == 1
        assert refill_reasons(own_database, "bia") == [
            "refill 2026-W49 (group students)",
            "refill 2026-W50 (group students)",
        ]
        assert refill_reasons(own_database, "ana") == refill_reasons(own_database, "caio") == ["refill 2026-12"]
        assert left(own_database, "bia") == 900 + 50 + 50

    def test_replicas_refilling_at_once_give_one_grant_per_user_and_period(self, own_database):
        # The rules' periods already started: replicas do not queue on the row of a period that
        # starts, each takes the accounts the others have not locked.
        refill(own_database, weekly_students, wednesday)
        seed(own_database, *((f"u{index}", "students" if index % 2 else None, index) for index in range(200)))
        execute(own_database, "UPDATE solaris.accounts SET period = 'past'")

        async def four_replicas() -> list[int]:
            rounds = (refill_round(connector(own_database), weekly_students, wednesday) for _ in range(4))
            return await asyncio.gather(*rounds)

        assert sum(asyncio.run(four_replicas())) == 200
        grants = execute(
            own_database,
            "SELECT reason, count(*), count(DISTINCT user_id) FROM solaris.ledger"
            " WHERE reason LIKE 'refill %%' GROUP BY reason ORDER BY reason",
        )
        assert grants == [("refill 2026-12", 100, 100), ("refill 2026-W49 (group students)", 100, 100)]


class TestNewAccounts:
    def test_a_groups_schedule_does_not_make_a_new_account_of_the_top_level_look_due(self, own_database):
        refill(own_database, weekly_students, wednesday)
        seed(own_database, ("late", None, 5))
        assert refill(own_database, weekly_students, wednesday) == 0
        assert (period(own_database, "late"), left(own_database, "late")) == ("2026-12", 995)

    def test_a_new_member_of_a_weekly_group_is_refilled_at_its_next_week_not_on_top_of_the_first_grant(
        self, own_database
    ):
        refill(own_database, weekly_students, wednesday)
        # A first call whose header names the group: the account is created, then put in it.
        execute(
            own_database,
            "SELECT solaris.reserve_in_group('new', 'students', 'students', false, 'c-new', 10, 1, 500, 60, 'm', 1)",
        )
        assert refill(own_database, weekly_students, wednesday) == 0
        assert period(own_database, "new") == "2026-W49"
        assert refill(own_database, weekly_students, next_monday) == 1
        assert refill_reasons(own_database, "new") == ["refill 2026-W50 (group students)"]


class TestMovesBetweenGroups:
    def test_a_user_moved_to_a_weekly_group_keeps_their_balance_until_its_next_week(self, own_database):
        seed(own_database, ("ana", None, 400))
        refill(own_database, weekly_students, wednesday)
        move(own_database, "ana", "students")
        assert refill(own_database, weekly_students, wednesday) == 0
        assert left(own_database, "ana") == 1000
        refill(own_database, weekly_students, next_monday)
        assert refill_reasons(own_database, "ana") == ["refill 2026-12", "refill 2026-W50 (group students)"]

    def test_a_user_moved_back_to_the_top_level_waits_for_its_next_month(self, own_database):
        seed(own_database, ("bia", "students", 400))
        refill(own_database, weekly_students, wednesday)
        move(own_database, "bia", None)
        assert refill(own_database, weekly_students, next_monday) == 0
        assert period(own_database, "bia") == "2026-12"
        assert refill_reasons(own_database, "bia") == ["refill 2026-W49 (group students)"]

    def test_a_user_their_old_rule_had_not_refilled_yet_is_refilled_by_the_new_one(self, own_database):
        """A disabled account is not refilled: moved and enabled again, its new rule refills it."""
        seed(own_database, ("ana", None, 400))
        execute(own_database, "UPDATE solaris.accounts SET status = 'disabled' WHERE user_id = 'ana'")
        refill(own_database, weekly_students, wednesday)
        move(own_database, "ana", "students")
        execute(own_database, "UPDATE solaris.accounts SET status = 'active' WHERE user_id = 'ana'")
        assert refill(own_database, weekly_students, wednesday) == 1
        assert refill_reasons(own_database, "ana") == ["refill 2026-W49 (group students)"]

    def test_a_member_moved_into_a_group_that_lost_its_rule_follows_the_top_level_period(self, own_database):
        seed(own_database, ("ana", None, 400))
        refill(own_database, weekly_students, wednesday)
        students_without_a_rule = Settings(refill=weekly_students.refill, groups={"students": {}})
        refill(own_database, students_without_a_rule, wednesday)
        move(own_database, "ana", "students")
        assert refill(own_database, students_without_a_rule, wednesday) == 0
        assert period(own_database, "ana") == "2026-12"


def spend_to(url: str, user: str, fraction: float, call_id: str) -> None:
    """Charge the user up to `fraction` of what they were credited, raising the usage alerts."""
    [(credited, debited)] = execute(
        url, "SELECT credited_tokens, debited_tokens FROM solaris.accounts WHERE user_id = %s", user
    )
    tokens = int(credited * fraction) - debited
    execute(url, "SELECT solaris.reserve(%s, %s, %s, 1, 1000, 60, 'm', 1, '{0.8}')", user, call_id, tokens)
    execute(url, "SELECT solaris.resolve(%s, 'settle', %s, 'm', NULL, '{0.8}')", call_id, tokens)


def usage_alerts(url: str, user: str) -> list[tuple[str, int]]:
    rows = execute(
        url,
        "SELECT period, alert_cycle FROM solaris.alerts WHERE user_id = %s AND kind = 'usage' ORDER BY id",
        user,
    )
    return [(key, cycle) for key, cycle in rows]


class TestAlertsWhenAPeriodComesBack:
    """A period key can come back to an account (monthly, then a weekly group, then monthly
    again in the same month): its alerts start a new cycle of that period, never one whose
    alerts were already raised (the alerts table allows one per period, threshold and cycle)."""

    def test_a_user_moved_back_into_a_period_is_alerted_again_in_a_new_cycle(self, own_database):
        seed(own_database, ("ana", None, 0))
        refill(own_database, weekly_students, wednesday)
        spend_to(own_database, "ana", 0.85, "dec-1")
        move(own_database, "ana", "students")
        refill(own_database, weekly_students, next_monday)  # alerts start afresh in week 50
        move(own_database, "ana", None)  # up to date in week 50: back in December, no grant
        spend_to(own_database, "ana", 0.85, "dec-2")
        assert usage_alerts(own_database, "ana") == [("2026-12", 0), ("2026-12", 1)]

    def test_a_refill_into_a_period_the_user_was_alerted_in_starts_a_new_cycle(self, own_database):
        seed(own_database, ("ana", None, 0))
        refill(own_database, weekly_students, wednesday)
        spend_to(own_database, "ana", 0.85, "dec-1")
        move(own_database, "ana", "students")
        # Week 50 starts; the user is moved back before the students' rule reached them: the
        # top-level rule refills them into December again.
        execute(own_database, "UPDATE solaris.group_refill_periods SET current_period = '2026-W50'")
        move(own_database, "ana", None)
        assert refill(own_database, weekly_students, next_monday) == 1
        spend_to(own_database, "ana", 0.85, "dec-2")
        assert usage_alerts(own_database, "ana") == [("2026-12", 0), ("2026-12", 1)]
