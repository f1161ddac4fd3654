"""The overview over a range of days an admin chooses: its totals and chart agree with the
API's stats for the same days, and a wrong date is a readable page, never a 500."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.support.admin_pages import ana_signed_in
from tests.support.proxy_calls import ask
from tests.support.suite import master_key


@pytest.fixture
def admin_browser(proxy) -> httpx.Client:
    yield from ana_signed_in(proxy)


def stat(html: str, name: str) -> str:
    match = re.search(rf'data-stat="{name}">([^<]*)<', html)
    assert match, name
    return match.group(1)


def days_ago(days: int) -> str:
    return (datetime.now(UTC).date() - timedelta(days=days)).isoformat()


def test_the_default_range_is_the_last_30_days(admin_browser):
    page = admin_browser.get("/solaris/admin").text
    assert f'name="from" value="{days_ago(29)}"' in page and f'name="to" value="{days_ago(0)}"' in page
    assert page.count('<rect class="bar"') == 30


def test_range_totals_are_the_stats_of_those_days(admin_browser, admin, proxy, client, user_id):
    ask(client, user_id, "[[tokens=70]] oi")
    admin.settled_account(user_id)
    params = {"from": days_ago(6), "to": days_ago(0)}
    page = admin_browser.get("/solaris/admin", params=params).text
    stats = httpx.get(
        f"{proxy.base_url}/solaris/stats", params=params, headers={"Authorization": f"Bearer {master_key}"}
    ).json()
    totals = stats["totals"]
    assert stat(page, "range_tokens") == f"{totals['tokens_charged']:,}".replace(",", ".")
    assert stat(page, "range_requests") == f"{totals['requests']:,}".replace(",", ".")
    assert stat(page, "range_active") == f"{totals['active_users']:,}".replace(",", ".")
    assert page.count('<rect class="bar"') == 7
    assert totals["tokens_charged"] > 0


def test_a_range_without_usage_shows_zeros(admin_browser):
    page = admin_browser.get("/solaris/admin", params={"from": "2001-01-01", "to": "2001-01-10"}).text
    assert stat(page, "range_tokens") == "0" and stat(page, "range_requests") == "0"
    assert page.count('<rect class="bar"') == 10
    assert "Nenhum uso neste período" in page


def test_a_long_range_is_charted_by_week(admin_browser):
    page = admin_browser.get("/solaris/admin", params={"from": "2025-01-06", "to": "2025-12-28"}).text
    assert "Tokens por semana" in page
    assert page.count('<rect class="bar"') == 51  # Monday 6 January to Sunday 28 December


@pytest.mark.parametrize(
    ("params", "status", "text"),
    [
        ({"from": "2026-02-30"}, 400, "Data inválida"),
        ({"to": "amanhã"}, 400, "Data inválida"),
        ({"to": "0001-01-05"}, 400, "Data inválida"),  # 30 days before it do not exist
        ({"from": "2026-03-10", "to": "2026-03-01"}, 400, "período está invertido"),
        ({"from": "2020-01-01", "to": "2026-01-01"}, 400, "no máximo 3 anos"),
        ({"from": "0001-01-01", "to": "0001-01-01"}, 200, "Período de"),  # the first day there is
    ],
)
def test_wrong_dates_get_a_readable_page_never_a_500(admin_browser, params, status, text):
    answer = admin_browser.get("/solaris/admin", params=params)
    assert answer.status_code == status
    assert text in answer.text and "Traceback" not in answer.text


def test_wrong_dates_are_explained_in_english_too(proxy):
    browser = next(ana_signed_in(proxy, "en"))
    try:
        answer = browser.get("/solaris/admin", params={"from": "31/12/2025"})
        assert answer.status_code == 400 and "Invalid date: write dates as YYYY-MM-DD" in answer.text
    finally:
        browser.close()
