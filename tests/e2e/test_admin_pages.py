"""The admin pages and the personal usage page, over plain HTTP: sessions, CSRF, links.

The browser walk-through is in test_admin_pages_browser.py; these check what a browser
would hide: refusals without a session or a CSRF token, cookie flags, signatures.
"""

from __future__ import annotations

import re
import time
import uuid
from html import unescape
from urllib.parse import quote

import httpx
import pytest

from solaris_hooks.mail import links as web_signing
from solaris_hooks.settings import Settings
from tests.support.harness import html_part, text_part
from tests.support.proxy_calls import hidden, log_in
from tests.support.suite import admin_key_ana, master_key, tampered, viewer_key


@pytest.fixture
def admin_browser(proxy) -> httpx.Client:
    browser = log_in(proxy.base_url, admin_key_ana)
    yield browser
    browser.close()


def csrf_of(browser: httpx.Client, path: str = "/solaris/admin/users") -> str:
    return hidden(browser.get(path).text, "csrf")


def test_pages_without_a_session_redirect_to_login(proxy):
    for path in (
        "/solaris/admin",
        "/solaris/admin/users",
        "/solaris/admin/user?id=x",
        "/solaris/admin/alerts",
        "/solaris/admin/settings",
    ):
        answer = httpx.get(proxy.base_url + path)
        assert answer.status_code == 303, path
        assert answer.headers["location"] == "/solaris/admin/login?next=" + quote(path, safe="")


def test_forms_without_a_session_are_refused_and_change_nothing(proxy, admin, user_id):
    admin.add_tokens(user_id, 10)
    before = admin.account(user_id)
    answer = httpx.post(
        f"{proxy.base_url}/solaris/admin/users/add-tokens",
        data={"user_id": user_id, "tokens": "500", "csrf": "anything"},
    )
    assert answer.status_code == 401
    assert "Entre de novo" in answer.text and "Traceback" not in answer.text
    assert admin.account(user_id) == before


def test_forms_without_the_csrf_token_are_refused(admin_browser, admin, user_id):
    admin.add_tokens(user_id, 10)
    before = admin.account(user_id)
    for token in (None, "", "forged-" + "x" * 20):
        data = {"user_id": user_id, "tokens": "500", "reason": "csrf"}
        if token is not None:
            data["csrf"] = token
        answer = admin_browser.post("/solaris/admin/users/add-tokens", data=data)
        assert answer.status_code == 403
        assert "Recarregue a página" in answer.text
    assert admin.account(user_id) == before
    # The same form with the session's token goes through.
    answer = admin_browser.post(
        "/solaris/admin/users/add-tokens",
        data={"user_id": user_id, "tokens": "500", "reason": "csrf", "csrf": csrf_of(admin_browser)},
    )
    assert answer.status_code == 303
    assert admin.account(user_id)["credited_tokens"] == before["credited_tokens"] + 500


def test_another_sessions_csrf_token_is_refused(proxy, admin_browser, admin, user_id):
    admin.add_tokens(user_id, 10)
    other = log_in(proxy.base_url, master_key)
    foreign_token = csrf_of(other)
    other.close()
    answer = admin_browser.post(
        "/solaris/admin/users/add-tokens", data={"user_id": user_id, "tokens": "5", "csrf": foreign_token}
    )
    assert answer.status_code == 403


def test_session_cookie_is_signed_http_only_and_same_site(proxy):
    with httpx.Client(base_url=proxy.base_url, follow_redirects=False) as browser:
        form = browser.get("/solaris/admin/login").text
        answer = browser.post(
            "/solaris/admin/login", data={"key": master_key, "form_token": hidden(form, "form_token")}
        )
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("solaris_admin=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/solaris/admin" in cookie
    assert "Max-Age=" in cookie
    assert master_key not in cookie
    # A cookie altered by one character is no session.
    value = cookie.split(";")[0].split("=", 1)[1]
    payload, signature = value.rsplit(".", 1)
    forged = payload + "." + tampered(signature)
    answer = httpx.get(f"{proxy.base_url}/solaris/admin", cookies={"solaris_admin": forged})
    assert answer.status_code == 303


def test_wrong_key_gets_a_clear_message_after_a_delay(proxy):
    with httpx.Client(base_url=proxy.base_url, follow_redirects=False, timeout=30) as browser:
        form = browser.get("/solaris/admin/login").text
        started = time.monotonic()
        answer = browser.post(
            "/solaris/admin/login", data={"key": master_key + "x", "form_token": hidden(form, "form_token")}
        )
        elapsed_s = time.monotonic() - started
    assert answer.status_code == 200  # the form again, with the message
    assert "Chave inválida" in answer.text
    assert "set-cookie" not in answer.headers
    assert elapsed_s >= 0.9  # a lower bound only: a slow machine makes it longer, never shorter


def test_login_without_the_form_token_is_refused(proxy):
    answer = httpx.post(f"{proxy.base_url}/solaris/admin/login", data={"key": master_key})
    assert answer.status_code == 403
    assert "set-cookie" not in answer.headers


def test_login_never_redirects_off_site(proxy):
    with httpx.Client(base_url=proxy.base_url, follow_redirects=False) as browser:
        for target in ("https://evil.example/", "//evil.example/solaris/admin", "/solaris/admin//evil.example"):
            form = browser.get("/solaris/admin/login").text
            answer = browser.post(
                "/solaris/admin/login",
                data={"key": master_key, "next": target, "form_token": hidden(form, "form_token")},
            )
            assert answer.headers["location"] == "/solaris/admin"


def test_logout_ends_the_session(proxy):
    browser = log_in(proxy.base_url, master_key)
    csrf = csrf_of(browser)
    answer = browser.post("/solaris/admin/logout", data={"csrf": csrf})
    assert answer.status_code == 303
    assert 'solaris_admin=""' in answer.headers["set-cookie"] or "Max-Age=0" in answer.headers["set-cookie"]
    assert browser.get("/solaris/admin/users").status_code == 303
    browser.close()


def test_viewer_key_sees_pages_without_forms_and_cannot_post(proxy, admin, user_id):
    admin.add_tokens(user_id, 10)
    before = admin.account(user_id)
    browser = log_in(proxy.base_url, viewer_key)
    page = browser.get("/solaris/admin/users", params={"q": user_id})
    assert page.status_code == 200
    assert user_id in page.text and "somente leitura" in page.text
    assert "/solaris/admin/users/add-tokens" not in page.text
    answer = browser.post(
        "/solaris/admin/users/add-tokens", data={"user_id": user_id, "tokens": "5", "csrf": hidden(page.text, "csrf")}
    )
    assert answer.status_code == 403
    assert "somente leitura" in answer.text
    browser.close()
    assert admin.account(user_id) == before


def test_admin_actions_through_pages_are_audited_under_the_key_alias(proxy, admin_browser, admin, user_id):
    csrf = csrf_of(admin_browser)
    answer = admin_browser.post(
        "/solaris/admin/users", data={"user_id": user_id, "name": "Zé <b>", "tokens": "300", "csrf": csrf}
    )
    assert answer.status_code == 303
    answer = admin_browser.post(
        "/solaris/admin/users/status", data={"user_id": user_id, "status": "blocked", "csrf": csrf}
    )
    assert answer.status_code == 303
    page = admin_browser.get(answer.headers["location"]).text
    assert "agora está: Bloqueado" in page  # the one-time notice
    assert "Zé &lt;b&gt;" in page and "Zé <b>" not in page
    account = admin.account(user_id)
    assert account["status"] == "blocked" and account["credited_tokens"] == 300
    audit = httpx.get(
        f"{proxy.base_url}/solaris/audit",
        params={"user_id": user_id},
        headers={"Authorization": f"Bearer {master_key}"},
    ).json()["rows"]
    assert [row["actor"] for row in audit] == ["ana", "ana"]


def test_resubmitted_add_tokens_form_credits_once(admin_browser, admin, user_id):
    admin.add_tokens(user_id, 10)
    page = admin_browser.get("/solaris/admin/user", params={"id": user_id}).text
    form = {
        "user_id": user_id,
        "tokens": "77",
        "reason": "twice",
        "csrf": hidden(page, "csrf"),
        "idempotency_key": hidden(page, "idempotency_key"),
    }
    notices = []
    for _ in range(2):
        answer = admin_browser.post("/solaris/admin/users/add-tokens", data=form)
        assert answer.status_code == 303
        notices.append(admin_browser.get(answer.headers["location"]).text)
    assert admin.account(user_id)["credited_tokens"] == 1010 + 77
    # The second notice says nothing was added, not that 77 tokens were.
    assert "77 tokens adicionados" in notices[0] and "nada foi creditado de novo" not in notices[0]
    assert "nada foi creditado de novo" in notices[1] and "77 tokens adicionados" not in notices[1]


def test_bad_form_values_give_a_readable_notice(admin_browser, admin, user_id):
    admin.add_tokens(user_id, 10)
    csrf = csrf_of(admin_browser)
    for tokens in ("-5", "abc", "0"):
        answer = admin_browser.post(
            "/solaris/admin/users/add-tokens", data={"user_id": user_id, "tokens": tokens, "csrf": csrf}
        )
        assert answer.status_code == 303
        assert "número inteiro de tokens" in admin_browser.get(answer.headers["location"]).text
    answer = admin_browser.post("/solaris/admin/users", data={"user_id": user_id, "csrf": csrf})
    assert "Não foi feito" in admin_browser.get(answer.headers["location"]).text  # exists already
    assert admin_browser.get("/solaris/admin/user", params={"id": "nobody-" + user_id}).status_code == 404
    assert (
        admin_browser.get("/solaris/admin/users", params={"page": "x", "sort": "evil;", "order": "?"}).status_code
        == 200
    )
    assert (
        admin_browser.get(
            "/solaris/admin/user", params={"id": user_id, "start": "not-a-date", "kind": "bogus"}
        ).status_code
        == 200
    )


def test_overview_counts_what_the_ledger_holds(admin_browser, admin, client, user_id):
    client.chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": "[[tokens=100]] oi"}],
        extra_headers={"x-litellm-end-user-id": user_id},
    )
    admin.settles(user_id, 1)  # the overview counts what the ledger holds: the call's settle first
    page = admin_browser.get("/solaris/admin").text
    assert "<svg" in page and "Tokens por dia" in page
    assert user_id in page or "Os 10 que mais usaram" in page
    assert re.search(r'data-stat="active_24h">[1-9]', page)
    assert "fake-model" in page


def test_personal_link_shows_only_that_users_balance(proxy, admin, client, user_id):
    admin.add_tokens(user_id, 500)
    link = web_signing.usage_path(user_id, Settings(), {"LITELLM_MASTER_KEY": master_key})
    page = httpx.get(proxy.base_url + link)
    assert page.status_code == 200
    assert user_id in page.text and "1.500" in page.text and "creditos@example.com" in page.text
    assert "<svg" in page.text and "/solaris/admin/users" not in page.text
    english = httpx.get(proxy.base_url + link, params={"lang": "en"}).text
    assert "Tokens remaining" in english


def test_tampered_or_expired_personal_link_gets_a_friendly_page(proxy, user_id):
    environ = {"LITELLM_MASTER_KEY": master_key}
    token = web_signing.usage_token(user_id, Settings(), environ)
    payload, signature = token.split(".")
    other = web_signing.usage_token("someone-else@example.com", Settings(), environ)
    for forged in (payload + "." + signature[::-1], other.split(".")[0] + "." + signature, "garbage", "x" * 5000):
        page = httpx.get(f"{proxy.base_url}/solaris/me/{forged}")
        assert page.status_code == 404
        assert "Link inválido" in page.text and "Traceback" not in page.text and user_id not in page.text
    expired = web_signing.sign("usage link", {"user": user_id}, -1, environ)
    page = httpx.get(f"{proxy.base_url}/solaris/me/{expired}")
    assert page.status_code == 410 and "Link expirado" in page.text
    # A session cookie is signed for another purpose: it is no usage link.
    session_value = web_signing.sign("admin session", {"user": user_id}, 60, environ)
    assert httpx.get(f"{proxy.base_url}/solaris/me/{session_value}").status_code == 404


def test_alert_emails_link_to_the_personal_page(proxy, admin, mail_catcher, user_id):
    admin.add_tokens(user_id, 50)  # a credit receipt goes out
    message = mail_catcher.wait_for(user_id, 1)[0]
    link = re.search(r"(http://127\.0\.0\.1:\d+/solaris/me/\S+)", text_part(message)).group(1)
    assert link in unescape(html_part(message))
    page = httpx.get(link)
    assert page.status_code == 200 and user_id in page.text


def test_pages_are_not_in_the_api_schema(proxy):
    paths = httpx.get(f"{proxy.base_url}/openapi.json").json()["paths"]
    assert not [path for path in paths if path.startswith(("/solaris/admin", "/solaris/me/"))]


def test_bulk_grant_form_credits_the_listed_users_once(admin_browser, admin, user_id):
    other = "other-" + user_id
    for user in (user_id, other):
        admin.add_tokens(user, 10)
    page = admin_browser.get("/solaris/admin/users").text
    form = {
        "csrf": hidden(page, "csrf"),
        "idempotency_key": hidden(page, "idempotency_key"),
        "tokens": "40",
        "reason": "campanha",
        "scope": "listed",
        "user_ids": f"{user_id}\r\n{other}\r\n",
    }
    for _ in range(2):  # a resubmitted page grants once
        answer = admin_browser.post("/solaris/admin/users/bulk-grant", data=form)
        assert answer.status_code == 303
    assert "já foi enviado" in admin_browser.get(answer.headers["location"]).text
    assert [admin.account(user)["credited_tokens"] for user in (user_id, other)] == [1050, 1050]
    # One unknown id: nothing is credited to anyone, and the notice names it.
    form.update(idempotency_key="another", user_ids=f"{user_id}\nnobody-{user_id}")
    answer = admin_browser.post("/solaris/admin/users/bulk-grant", data=form)
    notice = admin_browser.get(answer.headers["location"]).text
    assert "Não foi feito" in notice and f"nobody-{user_id}" in notice
    assert admin.account(user_id)["credited_tokens"] == 1050


def test_csv_import_form_creates_users_or_explains_the_bad_line(admin_browser, admin, user_id):
    csrf = csrf_of(admin_browser)
    good = f"user_id,name,tokens\n{user_id},Maria Lima,700\n".encode()
    answer = admin_browser.post(
        "/solaris/admin/users/import", data={"csrf": csrf}, files={"file": ("users.csv", good, "text/csv")}
    )
    assert "1 criados" in admin_browser.get(answer.headers["location"]).text
    assert admin.account(user_id)["credited_tokens"] == 700
    bad = f"user_id,tokens\nnew-{user_id},lots\n".encode()
    answer = admin_browser.post(
        "/solaris/admin/users/import", data={"csrf": csrf}, files={"file": ("users.csv", bad, "text/csv")}
    )
    assert "Não foi feito" in admin_browser.get(answer.headers["location"]).text
    assert admin.account(f"new-{user_id}") is None
    answer = admin_browser.post(
        "/solaris/admin/users/import",
        data={"csrf": csrf},
        files={"file": ("users.csv", b"\xff\xfe\x00bad", "text/csv")},
    )
    assert "UTF-8" in admin_browser.get(answer.headers["location"]).text
    huge = b"user_id\n" + b"x" * (3 * 1024 * 1024)
    answer = admin_browser.post(
        "/solaris/admin/users/import", data={"csrf": csrf}, files={"file": ("users.csv", huge, "text/csv")}
    )
    assert answer.status_code == 413 and "2 MiB" in answer.text


def test_retrying_a_dead_alert_from_the_page_requeues_and_audits_it(
    admin_browser, admin, database_url, mail_catcher, user_id
):
    import psycopg

    admin.add_tokens(user_id, 10)  # a credit receipt: one alert
    mail_catcher.wait_for(user_id, 1)
    with psycopg.connect(database_url, autocommit=True) as connection:
        alert_id = connection.execute(
            "UPDATE solaris.alerts SET status = 'dead', attempts = 8 WHERE user_id = %s RETURNING id", (user_id,)
        ).fetchone()[0]
    csrf = csrf_of(admin_browser, "/solaris/admin/alerts?status=dead")
    answer = admin_browser.post("/solaris/admin/alerts/retry", data={"alert_id": str(alert_id), "csrf": csrf})
    assert f"Alerta {alert_id} recolocado na fila" in admin_browser.get(answer.headers["location"]).text
    mail_catcher.wait_for(user_id, 2)
    answer = admin_browser.post("/solaris/admin/alerts/retry", data={"alert_id": str(alert_id), "csrf": csrf})
    assert f"O alerta {alert_id} não está em falha" in admin_browser.get(answer.headers["location"]).text
    with psycopg.connect(database_url) as connection:
        audited = connection.execute(
            "SELECT actor FROM solaris.audit WHERE action = 'alert.retry' AND user_id = %s", (user_id,)
        ).fetchall()
    assert audited == [("ana",)]


def alert_row(html: str, alert_id: int) -> str:
    """The alerts page's row of one alert."""
    match = re.search(rf'<tr data-alert="{alert_id}">(.*?)</tr>', html, re.S)
    assert match, f"no row for alert {alert_id}"
    return match.group(1)


def test_a_dead_webhook_delivery_is_shown_and_retried_from_the_page(admin_browser, admin, database_url, user_id):
    """An alert whose e-mail went out but whose webhook delivery is dead (a 410) shows the channel,
    "Falha", its attempts and the receiver's answer, and a retry button; the retry puts the
    delivery back in the queue with fresh attempts, and the page then shows it pending."""
    import psycopg

    channel = f"page-{uuid.uuid4().hex[:12]}"
    admin.add_tokens(user_id, 10)  # a credit receipt: one alert
    # The session's proxy has no webhook: the channel is inactive, so no other alert fans out to it.
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("INSERT INTO solaris.alert_channels (channel, active) VALUES (%s, false)", (channel,))
        alert_id = connection.execute(
            "INSERT INTO solaris.webhook_deliveries (alert_id, channel, status, attempts, last_error, response_status)"
            " SELECT id, %s, 'dead', 1, 'HTTP 410: gone', 410 FROM solaris.alerts WHERE user_id = %s"
            " RETURNING alert_id",
            (channel, user_id),
        ).fetchone()[0]
    try:
        row = alert_row(admin_browser.get("/solaris/admin/alerts").text, alert_id)
        assert f'data-channel="{channel}"' in row and "HTTP 410: gone" in row and "1 tentativa(s)" in row
        assert '<span class="badge dead">Falha</span>' in row and 'action="/solaris/admin/alerts/retry"' in row
        csrf = csrf_of(admin_browser, "/solaris/admin/alerts")
        answer = admin_browser.post("/solaris/admin/alerts/retry", data={"alert_id": str(alert_id), "csrf": csrf})
        assert f"Alerta {alert_id} recolocado na fila" in admin_browser.get(answer.headers["location"]).text
        with psycopg.connect(database_url) as connection:
            delivery = connection.execute(
                "SELECT status, attempts, last_error FROM solaris.webhook_deliveries WHERE channel = %s", (channel,)
            ).fetchone()
        assert delivery == ("pending", 0, None)
        row = alert_row(admin_browser.get("/solaris/admin/alerts").text, alert_id)
        assert '<span class="badge pending">Pendente</span>' in row and "0 tentativa(s)" in row
        assert "alerts/retry" not in row  # nothing of it is dead any more
    finally:
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute("DELETE FROM solaris.webhook_deliveries WHERE channel = %s", (channel,))
            connection.execute("DELETE FROM solaris.alert_channels WHERE channel = %s", (channel,))
