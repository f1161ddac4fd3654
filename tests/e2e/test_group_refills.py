"""A group's own refill rule through a real proxy (issue 18, part 1): its background task
refills a group's members by the group's rule and everyone else by the top-level one.

Periods are faked as tests/e2e/test_reliability.py does: an account whose period is not the
current one is due, and the task (checking every 0.5 s) refills it."""

from __future__ import annotations

import uuid

import httpx
import psycopg
import pytest

from solaris_hooks.settings.refill import RefillSettings, local_today, period_key
from tests.support.harness import AdminClient, wait_for
from tests.support.suite import master_key, proxy_of_its_own

top_level_rule = {"every": "day", "mode": "reset_to", "amount": 700, "check_interval_s": 0.5}
students_rule = {"every": "week", "mode": "reset_to", "amount": 300, "check_interval_s": 0.5}
settings = {
    "default_tokens_per_user": 1000,
    "refill": top_level_rule,
    "groups": {"students": {"refill": students_rule}, "staff": {"default_tokens": 2000}},
    # Off: what a call charges is in the ledger when the call ends (no lease holds any back).
    "leases": False,
}


@pytest.fixture(scope="module")
def refilling(database_url, fake_provider, tmp_path_factory):
    work = tmp_path_factory.mktemp("group-refills")
    with proxy_of_its_own(database_url, fake_provider.base_url, work, settings, "group-refills-proxy.log") as process:
        yield process


def chat(base_url: str, user_id: str) -> None:
    headers = {"Authorization": f"Bearer {master_key}", "x-litellm-end-user-id": user_id}
    body = {"model": "fake-model", "max_tokens": 200, "messages": [{"role": "user", "content": "[[tokens=40]] oi"}]}
    response = httpx.post(f"{base_url}/v1/chat/completions", json=body, headers=headers, timeout=60)
    assert response.status_code == 200, response.text


def query(url: str, text: str, *params: object) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as connection:
        return connection.execute(text, params).fetchall()


def current_periods(url: str) -> tuple[str, list[tuple]]:
    [(top_level,)] = query(url, "SELECT current_period FROM solaris.refill_state")
    return top_level, query(url, "SELECT group_name, current_period FROM solaris.group_refill_periods")


def refill_grants(url: str, user_id: str) -> list[str]:
    rows = query(
        url,
        "SELECT reason FROM solaris.ledger WHERE user_id = %s AND kind = 'grant' AND reason LIKE 'refill %%'",
        user_id,
    )
    return [reason for (reason,) in rows]


def test_a_groups_members_are_refilled_by_its_rule_and_the_others_by_the_top_level_one(refilling):
    url, admin = refilling.database_url, AdminClient(refilling.base_url, master_key)
    today = period_key(local_today(RefillSettings(**top_level_rule)), "day")
    this_week = period_key(local_today(RefillSettings(**students_rule)), "week")
    chat(refilling.base_url, f"warm-{uuid.uuid4().hex[:8]}")  # starts the background tasks
    # Users first seen once both rules have run start in their current periods.
    wait_for(lambda: current_periods(url) == (today, [("students", this_week)]), 30, what="both rules' first round")
    users = {group: f"{group or 'nogroup'}-{uuid.uuid4().hex[:8]}@example.com" for group in (None, "students", "staff")}
    for group, user_id in users.items():
        chat(refilling.base_url, user_id)
        if group is not None:
            assert admin.update_user(user_id, group=group).status_code == 200
        admin.settled_account(user_id)
    assert not any(refill_grants(url, user_id) for user_id in users.values())

    # Each account was last refilled in a period before this one: the task's next round is due.
    query(url, "UPDATE solaris.accounts SET period = 'past' WHERE user_id = ANY (%s) RETURNING 1", list(users.values()))

    def each_refilled() -> dict[str | None, list[str]] | None:
        grants = {group: refill_grants(url, user_id) for group, user_id in users.items()}
        return grants if all(grants.values()) else None

    grants = wait_for(each_refilled, 30, what="a refill grant for each user")
    assert grants == {
        None: [f"refill {today}"],
        "students": [f"refill {this_week} (group students)"],
        "staff": [f"refill {today}"],
    }
    left = query(
        url,
        "SELECT user_id, credited_tokens - debited_tokens FROM solaris.accounts WHERE user_id = ANY (%s)",
        list(users.values()),
    )
    assert {users_group(users, user_id): tokens for user_id, tokens in left} == {
        None: 700,
        "students": 300,
        "staff": 700,
    }


def users_group(users: dict[str | None, str], user_id: str) -> str | None:
    return next(group for group, user in users.items() if user == user_id)
