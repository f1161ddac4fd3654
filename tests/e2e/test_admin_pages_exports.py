"""CSV downloads from the admin pages' session (the cookie, not an API key): the users list,
usage by period for the overview's range, one user's ledger. Text cells a spreadsheet
would run as formulas come out quoted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx
import pytest

from tests.support.admin_pages import ana_signed_in, csv_rows
from tests.support.proxy_calls import ask, log_in
from tests.support.suite import master_key, viewer_key


@pytest.fixture
def admin_browser(proxy) -> httpx.Client:
    yield from ana_signed_in(proxy)


formula_name = '=HYPERLINK("http://evil.example","click")'


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def test_csv_downloads_without_a_session_go_to_the_login_form(proxy):
    for path in ("/solaris/admin/users.csv", "/solaris/admin/usage.csv", "/solaris/admin/user/ledger.csv?id=x"):
        answer = httpx.get(proxy.base_url + path)
        assert answer.status_code == 303, path
        assert answer.headers["location"] == "/solaris/admin/login?next=" + quote(path, safe="")


def test_users_csv_has_the_filtered_list_with_last_activity_and_quoted_formulas(
    admin_browser, admin, http, client, user_id
):
    admin.add_tokens(user_id, 1000)
    created = http.patch(f"/solaris/users/{user_id}", json={"name": formula_name, "email": user_id})
    assert created.status_code == 200, created.text
    ask(client, user_id, "[[tokens=10]] oi")
    account = admin.settled_account(user_id)
    page = admin_browser.get("/solaris/admin/users", params={"q": user_id}).text
    assert f"/solaris/admin/users.csv?q={quote(user_id, safe='')}" in page.replace("&amp;", "&")

    answer = admin_browser.get("/solaris/admin/users.csv", params={"q": user_id})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"].startswith('attachment; filename="solaris-users_')
    rows = csv_rows(answer.text)
    assert [row["user_id"] for row in rows] == [user_id]
    row = rows[0]
    assert row["name"] == "'" + formula_name  # shown as text, never run
    assert int(row["remaining_tokens"]) == account["remaining_tokens"]
    assert int(row["used_tokens"]) == account["used_tokens"]
    assert datetime.fromisoformat(row["last_active_at"]) > datetime.now(UTC) - timedelta(minutes=10)


def test_users_csv_keeps_every_page_of_the_filter(admin_browser, admin, user_id):
    prefix = user_id.split("@")[0]
    ids = [f"{prefix}-{index:02d}@example.com" for index in range(30)]  # more than a page of 25
    for each in ids:
        admin.add_tokens(each, 5)
    rows = csv_rows(
        admin_browser.get("/solaris/admin/users.csv", params={"q": prefix, "sort": "user_id", "order": "asc"}).text
    )
    assert [row["user_id"] for row in rows] == sorted(ids)
    assert {row["last_active_at"] for row in rows} == {""}  # never made a call


def test_usage_csv_of_the_overviews_range_is_the_api_report(admin_browser, admin, proxy, client, user_id):
    ask(client, user_id, "[[tokens=40]] oi")
    admin.settled_account(user_id)
    overview = admin_browser.get("/solaris/admin", params={"from": today(), "to": today()}).text
    link = f"/solaris/admin/usage.csv?from={today()}&amp;to={today()}&amp;group_by=day"
    assert link in overview
    from_page = admin_browser.get(link.replace("&amp;", "&"))
    from_api = httpx.get(
        f"{proxy.base_url}/solaris/reports/usage.csv",
        params={"from": today(), "to": today(), "group_by": "day"},
        headers={"Authorization": f"Bearer {master_key}"},
    )
    assert from_page.status_code == from_api.status_code == 200
    assert from_page.text == from_api.text
    assert from_page.headers["content-disposition"] == from_api.headers["content-disposition"]
    assert user_id in {row["user_id"] for row in csv_rows(from_page.text)}


def test_user_ledger_csv_has_that_users_rows_and_quotes_formulas(admin_browser, admin, client, user_id):
    admin.add_tokens(user_id, 300, "=1+1")
    admin.add_tokens(user_id, 200, "@SUM(A1:A9)")
    ask(client, user_id, "[[tokens=10]] oi")
    admin.settled_account(user_id)
    page = admin_browser.get("/solaris/admin/user", params={"id": user_id}).text
    assert "/solaris/admin/user/ledger.csv?id=" in page

    answer = admin_browser.get("/solaris/admin/user/ledger.csv", params={"id": user_id})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    rows = csv_rows(answer.text)
    assert {row["kind"] for row in rows} >= {"grant", "credit", "reserve", "settle"}
    assert [row["reason"] for row in rows if row["kind"] == "credit"] == ["'@SUM(A1:A9)", "'=1+1"]  # newest first
    reserve = next(row for row in rows if row["kind"] == "settle")
    assert reserve["reserved_delta"].startswith("-")  # a number, not text: left as it is
    only_credits = {"id": user_id, "kind": "credit"}
    credits = csv_rows(admin_browser.get("/solaris/admin/user/ledger.csv", params=only_credits).text)
    assert [row["tokens"] for row in credits] == ["200", "300"]


def test_viewer_keys_may_download(proxy, admin, user_id):
    admin.add_tokens(user_id, 10)
    browser = log_in(proxy.base_url, viewer_key)
    try:
        answer = browser.get("/solaris/admin/user/ledger.csv", params={"id": user_id})
        assert answer.status_code == 200 and "grant" in answer.text
    finally:
        browser.close()


@pytest.mark.parametrize(
    ("path", "params", "status", "text"),
    [
        ("/solaris/admin/usage.csv", {"from": "31/12/2025"}, 400, "Data inválida"),
        ("/solaris/admin/usage.csv", {"from": "2026-02-10", "to": "2026-02-01"}, 400, "período está invertido"),
        ("/solaris/admin/usage.csv", {"from": "2000-01-01", "to": "2026-01-01"}, 400, "no máximo 3 anos"),
        ("/solaris/admin/usage.csv", {"group_by": "year"}, 400, "por dia, semana ou mês"),
        ("/solaris/admin/user/ledger.csv", {"id": "nobody-here@example.com"}, 404, "Este usuário não existe"),
        ("/solaris/admin/user/ledger.csv", {"id": "x", "start": "9999-12-31"}, 400, "Data inválida"),
    ],
)
def test_wrong_export_requests_get_a_readable_page(admin_browser, path, params, status, text):
    answer = admin_browser.get(path, params=params)
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("text/html")
    assert text in answer.text and "Traceback" not in answer.text
