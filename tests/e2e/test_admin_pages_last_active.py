"""Each user's last activity (their latest settled call) on the users page, read with one
short index walk per listed user: EXPLAIN on a big ledger shows no scan of it."""

from __future__ import annotations

import json
import re

import httpx
import psycopg
import pytest

from solaris_hooks.db.queries import sql
from tests.support.admin_pages import ana_signed_in
from tests.support.harness import scratch_database
from tests.support.proxy_calls import ask


@pytest.fixture
def admin_browser(proxy) -> httpx.Client:
    yield from ana_signed_in(proxy)


def last_active_cell(html: str, user_id: str) -> str:
    row = re.search(rf'<tr data-user="{re.escape(user_id)}">(.*?)</tr>', html, re.S)
    assert row, user_id
    cell = re.search(r"data-last-active>([^<]*)<", row.group(1))
    assert cell
    return cell.group(1).strip()


def test_users_page_shows_the_last_settled_call_or_never(admin_browser, admin, http, client, user_id):
    idle = "idle-" + user_id
    admin.add_tokens(idle, 10)
    ask(client, user_id, "[[tokens=10]] oi")
    admin.settled_account(user_id)
    settled_at = http.get(f"/solaris/users/{user_id}/ledger", params={"kind": "settle"}).json()["rows"][0]["created_at"]
    page = admin_browser.get("/solaris/admin/users", params={"q": user_id.split("@")[0]}).text
    assert last_active_cell(page, idle) == "nunca"
    shown = last_active_cell(page, user_id)
    # dd/mm/yyyy hh:mm UTC, the minute of the settle row
    day, moment = settled_at[:10], settled_at[11:16]
    assert shown.startswith(f"{day[8:10]}/{day[5:7]}/{day[0:4]} {moment}")


@pytest.fixture(scope="module")
def big_ledger(database_url) -> str:
    """200,000 ledger rows over 2,000 users, most of them no settle (reserves, grants)."""
    with scratch_database(database_url) as url:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(
                "INSERT INTO solaris.accounts (user_id) SELECT 'user-' || n FROM generate_series(1, 2000) n"
            )
            connection.execute(
                "INSERT INTO solaris.ledger (user_id, kind, tokens) "
                "SELECT 'user-' || (n % 2000 + 1), CASE WHEN n % 7 = 0 THEN 'settle' ELSE 'reserve' END, 0 "
                "FROM generate_series(1, 200000) n"
            )
            connection.execute("ANALYZE solaris.ledger")
        yield url


def test_last_active_walks_the_users_index_and_never_scans_the_ledger(big_ledger):
    page_of_users = [f"user-{n}" for n in range(1, 26)]
    with psycopg.connect(big_ledger) as connection:
        plan = connection.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + sql("admin/last_active"), {"user_ids": page_of_users}
        ).fetchone()[0]
        found = dict(connection.execute(sql("admin/last_active"), {"user_ids": page_of_users}).fetchall())
    text = json.dumps(plan)
    assert "Seq Scan" not in text
    assert '"Index Name": "ledger_user_id"' in text and '"Scan Direction": "Backward"' in text
    ledger_reads = [node for node in nodes(plan[0]["Plan"]) if node.get("Relation Name") == "ledger"]
    assert len(ledger_reads) == 1
    # One walk per listed user, each stopping at its first settle row (every 7th row of a user
    # here): rows read stay far below the ledger's 200,000, and below each user's 100.
    assert ledger_reads[0]["Actual Loops"] == 25
    assert ledger_reads[0]["Actual Rows"] <= 1
    assert set(found) == set(page_of_users)


def nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)
