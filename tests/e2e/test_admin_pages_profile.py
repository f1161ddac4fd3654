"""Editing a user's e-mail, name and language from the user page: the form of PATCH
/solaris/users/{id}'s use case, with CSRF, readable refusals, and an audit row."""

from __future__ import annotations

import httpx
import pytest

from tests.support.admin_pages import ana_signed_in
from tests.support.proxy_calls import hidden, log_in
from tests.support.suite import master_key, viewer_key


@pytest.fixture
def admin_browser(proxy) -> httpx.Client:
    yield from ana_signed_in(proxy)


def profile_form(browser: httpx.Client, user_id: str, **fields: str) -> dict:
    page = browser.get("/solaris/admin/user", params={"id": user_id}).text
    assert 'action="/solaris/admin/users/profile"' in page
    return {"user_id": user_id, "csrf": hidden(page, "csrf"), **fields}


def post_profile(browser: httpx.Client, form: dict) -> str:
    """Post the form; the notice of the page it leads back to."""
    answer = browser.post("/solaris/admin/users/profile", data=form)
    assert answer.status_code == 303
    return browser.get(answer.headers["location"]).text


def test_the_user_page_saves_email_name_and_language_and_audits_it(proxy, admin_browser, admin, user_id):
    admin.add_tokens(user_id, 10)
    form = profile_form(admin_browser, user_id, email="Maria.Lima@Example.com", name="Maria Lima", locale="en")
    page = post_profile(admin_browser, form)
    assert f"Dados de {user_id} salvos." in page
    account = admin.account(user_id)
    assert (account["email"], account["name"], account["locale"]) == ("Maria.Lima@Example.com", "Maria Lima", "en")
    assert 'value="Maria Lima"' in page  # the form shows what was saved
    audit = httpx.get(
        f"{proxy.base_url}/solaris/audit",
        params={"user_id": user_id, "action": "user.update"},
        headers={"Authorization": f"Bearer {master_key}"},
    ).json()["rows"]
    assert len(audit) == 1 and audit[0]["actor"] == "ana"
    assert audit[0]["details"]["changed"] == ["email", "locale", "name"]
    assert audit[0]["after"]["name"] == "Maria Lima" and audit[0]["before"]["name"] is None

    # Empty e-mail and name clear them; an empty language leaves it.
    post_profile(admin_browser, profile_form(admin_browser, user_id, email="", name="", locale=""))
    account = admin.account(user_id)
    assert (account["email"], account["name"], account["locale"]) == (None, None, "en")


@pytest.mark.parametrize(
    ("fields", "notice"),
    [
        ({"email": "not-an-address"}, "Informe um e-mail válido"),
        ({"email": "ana@@example.com"}, "Informe um e-mail válido"),
        ({"email": "a" * 330 + "@example.com"}, "Informe um e-mail válido"),
        ({"name": "Ana\nBcc: x@example.com"}, "uma linha só"),
        ({"name": "x" * 321}, "uma linha só"),
        ({"locale": "fr"}, "Escolha o idioma pt-BR ou en"),
    ],
)
def test_wrong_profile_values_are_explained_and_change_nothing(admin_browser, admin, user_id, fields, notice):
    admin.add_tokens(user_id, 10)
    before = admin.account(user_id)
    page = post_profile(admin_browser, profile_form(admin_browser, user_id, **fields))
    assert notice in page
    assert admin.account(user_id) == before


def test_profile_form_needs_the_csrf_token_and_a_key_that_may_write(proxy, admin_browser, admin, user_id):
    admin.add_tokens(user_id, 10)
    before = admin.account(user_id)
    answer = admin_browser.post("/solaris/admin/users/profile", data={"user_id": user_id, "name": "X"})
    assert answer.status_code == 403 and "Recarregue a página" in answer.text
    viewer = log_in(proxy.base_url, viewer_key)
    try:
        page = viewer.get("/solaris/admin/user", params={"id": user_id}).text
        assert "/solaris/admin/users/profile" not in page
        answer = viewer.post(
            "/solaris/admin/users/profile", data={"user_id": user_id, "name": "X", "csrf": hidden(page, "csrf")}
        )
        assert answer.status_code == 403 and "somente leitura" in answer.text
    finally:
        viewer.close()
    assert admin.account(user_id) == before


def test_profile_of_an_unknown_user_leads_to_a_readable_page(admin_browser):
    csrf = hidden(admin_browser.get("/solaris/admin/users").text, "csrf")
    answer = admin_browser.post(
        "/solaris/admin/users/profile", data={"user_id": "nobody-at-all@example.com", "name": "X", "csrf": csrf}
    )
    assert answer.status_code == 303
    page = admin_browser.get(answer.headers["location"])
    assert page.status_code == 404 and "Este usuário não existe" in page.text
