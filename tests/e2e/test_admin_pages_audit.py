"""The audit page: every admin action, newest first, filtered by actor, action, user and
days, in pages of 50, linked from the navigation."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.support.admin_pages import ana_signed_in, csrf_of


@pytest.fixture
def admin_browser(proxy) -> httpx.Client:
    yield from ana_signed_in(proxy)


def audit_rows(html: str) -> list[tuple[str, str, str]]:
    """(actor, action, user) of each row shown."""
    return re.findall(
        r'<td data-actor>([^<]*)</td>\s*<td class="mono" data-action>([^<]*)</td>\s*'
        r'<td class="ident" data-user>(?:<a [^>]*>)?([^<]*)',
        html,
    )


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def test_audit_page_is_in_the_navigation(admin_browser):
    page = admin_browser.get("/solaris/admin").text
    assert '<a href="/solaris/admin/audit">Auditoria</a>' in page


def test_audit_page_filters_by_user_actor_action_and_days(admin_browser, admin, user_id):
    admin.add_tokens(user_id, 100, "pela API")  # the master key's actor
    csrf = csrf_of(admin_browser)
    answer = admin_browser.post(
        "/solaris/admin/users/status", data={"user_id": user_id, "status": "blocked", "csrf": csrf}
    )
    assert answer.status_code == 303

    everything = audit_rows(admin_browser.get("/solaris/admin/audit", params={"user": user_id}).text)
    assert [(action, user) for _, action, user in everything] == [("user.update", user_id), ("credit", user_id)]
    assert everything[0][0] == "ana" and everything[1][0] != "ana"

    by_ana = audit_rows(admin_browser.get("/solaris/admin/audit", params={"user": user_id, "actor": "ana"}).text)
    assert [action for _, action, _ in by_ana] == ["user.update"]
    credits = audit_rows(admin_browser.get("/solaris/admin/audit", params={"user": user_id, "action": "credit"}).text)
    assert [action for _, action, _ in credits] == ["credit"]
    # Typed as an admin types it, the id finds the account's rows.
    upper = audit_rows(admin_browser.get("/solaris/admin/audit", params={"user": user_id.upper()}).text)
    assert len(upper) == 2

    today_only = {"user": user_id, "start": today(), "end": today()}
    assert len(audit_rows(admin_browser.get("/solaris/admin/audit", params=today_only).text)) == 2
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    before = {"user": user_id, "start": yesterday, "end": yesterday}
    page = admin_browser.get("/solaris/admin/audit", params=before).text
    assert audit_rows(page) == [] and "Nenhuma ação encontrada" in page


def test_audit_page_shows_what_a_change_changed(admin_browser, admin, user_id):
    admin.add_tokens(user_id, 10)
    admin_browser.post(
        "/solaris/admin/users/status",
        data={"user_id": user_id, "status": "disabled", "csrf": csrf_of(admin_browser)},
    )
    page = admin_browser.get("/solaris/admin/audit", params={"user": user_id, "action": "user.update"}).text
    assert re.search(r'<span class="mono">status</span>: active → disabled', page)


def test_audit_page_pages_by_fifty(admin_browser, admin, user_id):
    for _ in range(51):
        admin.add_tokens(user_id, 1)
    first = admin_browser.get("/solaris/admin/audit", params={"user": user_id}).text
    assert len(audit_rows(first)) == 50
    assert "Ações encontradas: 51" in first and "Página 1 de 2" in first
    link = re.search(r'href="([^"]*page=2[^"]*)" rel="next"', first)
    assert link
    second = admin_browser.get(link.group(1).replace("&amp;", "&")).text
    assert len(audit_rows(second)) == 1


@pytest.mark.parametrize(
    ("params", "text"),
    [
        ({"start": "ontem"}, "Data inválida"),
        ({"end": "2026-13-01"}, "Data inválida"),
        ({"start": "2026-03-10", "end": "2026-03-01"}, "período está invertido"),
    ],
)
def test_wrong_dates_on_the_audit_page_get_a_readable_page(admin_browser, params, text):
    answer = admin_browser.get("/solaris/admin/audit", params=params)
    assert answer.status_code == 400
    assert text in answer.text and "Traceback" not in answer.text


def test_audit_filters_are_shown_as_text_never_as_markup(admin_browser):
    page = admin_browser.get("/solaris/admin/audit", params={"actor": "<script>x</script>", "page": "-3"})
    assert page.status_code == 200
    assert "<script>x</script>" not in page.text and "&lt;script&gt;" in page.text
