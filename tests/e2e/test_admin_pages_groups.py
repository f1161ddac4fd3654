"""Groups and refused calls on the admin pages (issue 18, parts 1 and 5), through a proxy
with groups configured: the user page sets a group (a configured one, or none; audited) and
explains a wrong one in the admin's language; the users list shows each user's group, who
chose it and their refusals, filters by group, and exports them as CSV; on a phone the
cards show them without scrolling sideways. Without groups, the pages offer no group form."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from html import unescape

import httpx
import pytest

from tests.e2e.test_admin_pages_browser import Watched, browser, phone, submit  # noqa: F401 - a fixture
from tests.e2e.test_admin_pages_phone import logged_in
from tests.support.admin_pages import csv_rows
from tests.support.harness import AdminClient, wait_for
from tests.support.proxy_calls import hidden, log_in
from tests.support.suite import admin_key_ana, master_key, proxy_of_its_own

groups = {"staff": {"default_tokens": 5000}, "students": {"default_tokens": 500}}
settings = {
    "default_tokens_per_user": 1000,
    "conversion_factor": 0.376,
    "groups": groups,
    "group_header": "x-solaris-group",
}


@pytest.fixture(scope="module")
def grouped(database_url, fake_provider, tmp_path_factory):
    work = tmp_path_factory.mktemp("pages-groups")
    with proxy_of_its_own(database_url, fake_provider.base_url, work, settings, "pages-groups-proxy.log") as process:
        yield process


@pytest.fixture(scope="module")
def grouped_admin(grouped) -> AdminClient:
    return AdminClient(grouped.base_url, master_key)


@pytest.fixture
def admin_browser(grouped) -> httpx.Client:
    pages = log_in(grouped.base_url, master_key)
    yield pages
    pages.close()


def chat(base_url: str, user_id: str, group: str | None = None) -> int:
    """One small chat call for user_id (naming a group in the header when given); its status."""
    headers = {"Authorization": f"Bearer {master_key}", "x-litellm-end-user-id": user_id}
    if group is not None:
        headers["x-solaris-group"] = group
    body = {"model": "fake-model", "max_tokens": 20, "messages": [{"role": "user", "content": "[[tokens=10]] oi"}]}
    return httpx.post(f"{base_url}/v1/chat/completions", json=body, headers=headers, timeout=60).status_code


@pytest.fixture(scope="module")
def listed(grouped, grouped_admin) -> dict[str, str]:
    """Three users under one prefix: in "students" by a call's header, in "staff" by an admin,
    and in no group with one refused call (made while blocked)."""
    prefix = f"listed-{uuid.uuid4().hex[:10]}"
    users = {kind: f"{prefix}-{kind}@example.com" for kind in ("header", "admin", "refused")}
    assert chat(grouped.base_url, users["header"], "Students") == 200
    grouped_admin.add_tokens(users["admin"], 10)
    assert grouped_admin.update_user(users["admin"], group="staff").status_code == 200
    grouped_admin.add_tokens(users["refused"], 10)
    assert grouped_admin.update_user(users["refused"], status="blocked").status_code == 200
    assert chat(grouped.base_url, users["refused"]) == 403
    assert grouped_admin.update_user(users["refused"], status="active").status_code == 200
    wait_for(lambda: grouped_admin.account(users["refused"])["refused_calls"] == 1, 15, what="the refusal counted")
    grouped_admin.settled_account(users["header"])
    return {"prefix": prefix, **users}


def text_of(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def user_row(html: str, user_id: str) -> str:
    row = re.search(rf'<tr data-user="{re.escape(user_id)}">(.*?)</tr>', html, re.S)
    assert row, user_id
    return row.group(1)


def cell(row: str, marker: str) -> re.Match:
    """The <td> carrying `marker`: group(1) its attributes, group(2) its content."""
    found = re.search(rf"<td([^>]*\b{marker}\b[^>]*)>(.*?)</td>", row, re.S)
    assert found, marker
    return found


def listed_ids(pages: httpx.Client, prefix: str, **filters: str) -> list[str]:
    page = pages.get("/solaris/admin/users", params={"q": prefix, "sort": "user_id", "order": "asc", **filters})
    assert page.status_code == 200
    return re.findall(r'<tr data-user="([^"]+)">', page.text)


def shown_moment(iso: str) -> str:
    """How the pages write a moment in pt-BR: dd/mm/yyyy hh:mm (UTC)."""
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%d/%m/%Y %H:%M")


def post_group(pages: httpx.Client, user_id: str, group: str | None) -> str:
    """Post the user page's group form (its own CSRF token); the notice of the page it leads back to."""
    page = pages.get("/solaris/admin/user", params={"id": user_id}).text
    assert 'action="/solaris/admin/users/group"' in page
    form = {"user_id": user_id, "csrf": hidden(page, "csrf")}
    if group is not None:
        form["group"] = group
    answer = pages.post("/solaris/admin/users/group", data=form)
    assert answer.status_code == 303
    shown = pages.get(answer.headers["location"])
    assert shown.status_code == 200
    notice = re.search(r'<div class="notice (\w+)" role="status">(.*?)</div>', shown.text, re.S)
    assert notice, "no notice"
    return f"{notice.group(1)}: {unescape(notice.group(2))}"


def group_updates(base_url: str, user_id: str) -> list[dict]:
    return httpx.get(
        f"{base_url}/solaris/audit",
        params={"user_id": user_id, "action": "user.update"},
        headers={"Authorization": f"Bearer {master_key}"},
    ).json()["rows"]


def test_the_user_page_sets_a_configured_group_as_the_admins_choice_audited_and_none_clears_it(
    grouped, grouped_admin, admin_browser, user_id
):
    grouped_admin.add_tokens(user_id, 10)
    page = admin_browser.get("/solaris/admin/user", params={"id": user_id}).text
    form = re.search(r'<form[^>]*id="change-group">(.*?)</form>', page, re.S)
    assert form and re.findall(r'<option value="([^"]*)"', form.group(1)) == ["", "staff", "students"]

    assert post_group(admin_browser, user_id, "Staff") == f"ok: {user_id} agora está no grupo staff."
    account = grouped_admin.account(user_id)
    assert (account["group"], account["group_source"]) == ("staff", "admin")
    page = admin_browser.get("/solaris/admin/user", params={"id": user_id}).text
    assert text_of(re.search(r'<div class="stat" id="group">.*?</div>\s*</div>', page, re.S).group(0)) == (
        "Grupo staff escolhido pela administração"
    )
    assert re.search(r'<option value="staff" selected>', page)
    [update] = group_updates(grouped.base_url, user_id)
    assert update["details"]["changed"] == ["group"]
    assert (update["before"]["group"], update["after"]["group"]) == (None, "staff")
    assert "grupo: — → staff" in page  # the page's own list of admin actions says what changed

    assert post_group(admin_browser, user_id, "") == f"ok: {user_id} agora está sem grupo."
    account = grouped_admin.account(user_id)
    assert (account["group"], account["group_source"]) == (None, None)
    assert len(group_updates(grouped.base_url, user_id)) == 2


@pytest.mark.parametrize(
    ("locale", "group", "notice"),
    [
        ("pt-BR", "interns", "O grupo “interns” não está configurado. Grupos configurados: staff, students."),
        ("en", "interns", "The group “interns” is not configured. Configured groups: staff, students."),
        ("pt-BR", "Staff!", "O grupo “Staff!” não está configurado. Grupos configurados: staff, students."),
        ("pt-BR", None, "Escolha um dos grupos configurados ou “Nenhum”."),
    ],
)
def test_a_group_that_is_not_configured_is_explained_in_the_admins_language_and_changes_nothing(
    grouped, grouped_admin, user_id, locale, group, notice
):
    grouped_admin.add_tokens(user_id, 10)
    before = grouped_admin.account(user_id)
    pages = log_in(grouped.base_url, master_key, locale)
    try:
        shown = post_group(pages, user_id, group)
    finally:
        pages.close()
    assert shown.startswith("error: ") and shown.endswith(notice), shown
    assert grouped_admin.account(user_id) == before
    assert group_updates(grouped.base_url, user_id) == []


def test_the_group_form_needs_the_pages_csrf_token(grouped_admin, admin_browser, user_id):
    grouped_admin.add_tokens(user_id, 10)
    answer = admin_browser.post("/solaris/admin/users/group", data={"user_id": user_id, "group": "staff"})
    assert answer.status_code == 403 and "Recarregue a página" in answer.text
    assert grouped_admin.account(user_id)["group"] is None


def test_the_users_list_shows_each_users_group_who_chose_it_and_their_refusals(grouped_admin, admin_browser, listed):
    page = admin_browser.get("/solaris/admin/users", params={"q": listed["prefix"]}).text
    header_row, admin_row, refused_row = (user_row(page, listed[kind]) for kind in ("header", "admin", "refused"))

    by_header = cell(header_row, "data-group")
    assert text_of(by_header.group(2)) == "students pelo cabeçalho"
    assert 'title="informado pelas chamadas (cabeçalho x-solaris-group)"' in by_header.group(2)
    by_admin = cell(admin_row, "data-group")
    assert text_of(by_admin.group(2)) == "staff"
    assert 'title="escolhido pela administração"' in by_admin.group(2)
    assert text_of(cell(refused_row, "data-group").group(2)) == "—"

    refused = grouped_admin.account(listed["refused"])
    refusals = cell(refused_row, "data-refusals")
    assert text_of(refusals.group(2)) == "1"
    assert f'title="Última recusa: {shown_moment(refused["last_refused_at"])} UTC"' in refusals.group(1)
    never = cell(admin_row, "data-refusals")
    assert text_of(never.group(2)) == "0" and "title=" not in never.group(1)


def test_users_csv_has_each_users_group_its_source_and_refusals(grouped_admin, admin_browser, listed):
    answer = admin_browser.get("/solaris/admin/users.csv", params={"q": listed["prefix"]})
    assert answer.status_code == 200
    rows = {row["user_id"]: row for row in csv_rows(answer.text)}
    columns = ("group", "group_source", "refused_calls")
    assert [rows[listed[kind]][column] for kind in ("header", "admin", "refused") for column in columns] == [
        *("students", "header", "0"),
        *("staff", "admin", "0"),
        *("", "", "1"),
    ]
    refused_at = grouped_admin.account(listed["refused"])["last_refused_at"]
    assert datetime.fromisoformat(rows[listed["refused"]]["last_refused_at"]) == datetime.fromisoformat(refused_at)
    assert rows[listed["admin"]]["last_refused_at"] == ""


def test_the_users_list_and_its_csv_filter_by_group_or_no_group(admin_browser, listed):
    prefix = listed["prefix"]
    assert listed_ids(admin_browser, prefix, group="students") == [listed["header"]]
    assert listed_ids(admin_browser, prefix, group="staff") == [listed["admin"]]
    assert listed_ids(admin_browser, prefix, group="-") == [listed["refused"]]
    everyone = sorted(listed[kind] for kind in ("header", "admin", "refused"))
    assert listed_ids(admin_browser, prefix) == everyone
    assert listed_ids(admin_browser, prefix, group="interns") == everyone  # not configured: no filter

    page = admin_browser.get("/solaris/admin/users", params={"q": prefix, "group": "students"}).text
    select = re.search(r'<select name="group">(.*?)</select>', page, re.S)
    assert select and re.findall(r'<option value="([^"]*)"', select.group(1)) == ["", "staff", "students", "-"]
    assert '<option value="students" selected>' in select.group(1)
    link = unescape(re.search(r'<a href="([^"]+)" id="users-csv"', page).group(1))
    assert "group=students" in link
    assert [row["user_id"] for row in csv_rows(admin_browser.get(link).text)] == [listed["header"]]
    no_group = csv_rows(admin_browser.get("/solaris/admin/users.csv", params={"q": prefix, "group": "-"}).text)
    assert [row["user_id"] for row in no_group] == [listed["refused"]]


def test_without_groups_configured_the_pages_offer_no_group_form_or_filter(proxy, user_id):
    """The session's proxy has no `groups`: the user page says where to read about them."""
    AdminClient(proxy.base_url, master_key).add_tokens(user_id, 10)
    pages = log_in(proxy.base_url, admin_key_ana)
    try:
        page = pages.get("/solaris/admin/user", params={"id": user_id}).text
        assert 'id="change-group"' not in page
        assert "Nenhum grupo configurado (veja a seção Groups do README)." in text_of(page)
        assert re.search(r'id="refusals">.*?data-refusals>0<', page, re.S)
        users = pages.get("/solaris/admin/users", params={"q": user_id}).text
        assert '<select name="group">' not in users and "data-group" not in users
        assert text_of(cell(user_row(users, user_id), "data-refusals").group(2)) == "0"
        # Posted anyway (an old tab): nothing to choose from, said so.
        answer = pages.post(
            "/solaris/admin/users/group", data={"user_id": user_id, "group": "staff", "csrf": hidden(page, "csrf")}
        )
        assert answer.status_code == 303
        shown = text_of(pages.get(answer.headers["location"]).text)
        assert "O grupo “staff” não existe: não há grupos configurados" in shown
    finally:
        pages.close()


def test_user_cards_on_a_phone_show_group_and_refusals_without_scrolling_sideways(
    browser,  # noqa: F811
    grouped,
    grouped_admin,
    listed,
    user_id,
):
    watched = Watched(browser, phone)
    page = watched.page
    logged_in(watched, grouped.base_url, f"/solaris/admin/users?q={listed['prefix']}")
    assert page.locator("#users tbody tr").count() == 3
    assert page.locator("#users thead").is_hidden()
    assert page.evaluate("document.documentElement.scrollWidth") <= phone["width"]
    width = page.evaluate("innerWidth")
    for marker in ("[data-group]", "[data-refusals]"):
        for shown in page.locator(f"#users {marker}").all():
            assert shown.is_visible()
            box = shown.bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= width
    card = page.locator(f"#users tr[data-user='{listed['header']}']")
    assert card.locator("[data-group]").inner_text().split() == ["students", "pelo", "cabeçalho"]
    refused = page.locator(f"#users tr[data-user='{listed['refused']}'] [data-refusals]")
    assert refused.inner_text().strip() == "1"
    watched.shot("26-users-groups-phone")

    # The user page's group form, on the phone too.
    grouped_admin.add_tokens(user_id, 10)
    page.goto(f"{grouped.base_url}/solaris/admin/user?id={user_id}")
    page.select_option("#change-group select[name=group]", "students")
    submit(page, "#change-group button")
    assert page.inner_text("[role=status]") == f"{user_id} agora está no grupo students."
    assert grouped_admin.account(user_id)["group"] == "students"
    assert page.evaluate("document.documentElement.scrollWidth") <= phone["width"]
    watched.shot("27-user-group-phone")
    assert watched.problems == []
    watched.close()
