"""Signed sessions and links, and the server-side chart, without a proxy."""

from __future__ import annotations

import pytest
from starlette.requests import Request
from starlette.responses import Response

from solaris_hooks.exceptions import LinkExpired, LinkInvalid, SettingsError
from solaris_hooks.mail import links as web_signing
from solaris_hooks.settings import Settings
from solaris_hooks.web.auth import Actor
from solaris_hooks.web.pages import session as web_session
from solaris_hooks.web.pages.charts import bar_chart, nice_ceiling
from tests.support.suite import tampered

environ = {"LITELLM_MASTER_KEY": "sk-master-for-signing"}


def test_usage_link_round_trips_and_rejects_tampering():
    token = web_signing.usage_token("maria@example.com", Settings(), environ)
    assert web_signing.usage_user(token, environ) == "maria@example.com"
    payload, signature = token.split(".")
    with pytest.raises(LinkInvalid):
        web_signing.usage_user(payload + "." + tampered(signature), environ)
    with pytest.raises(LinkInvalid):
        web_signing.usage_user(token, {"LITELLM_MASTER_KEY": "another master key"})


def test_usage_link_expires():
    token = web_signing.sign("usage link", {"user": "maria"}, ttl_s=60, environ=environ, now_s=1_000_000)
    assert web_signing.unsign("usage link", token, environ, now_s=1_000_059)["user"] == "maria"
    with pytest.raises(LinkExpired):
        web_signing.unsign("usage link", token, environ, now_s=1_000_060)


def test_a_value_signed_for_one_purpose_is_refused_for_another():
    token = web_signing.sign("admin session", {"user": "maria"}, 60, environ)
    with pytest.raises(LinkInvalid):
        web_signing.usage_user(token, environ)


def test_explicit_secret_key_wins_and_no_key_is_a_settings_error():
    with_secret = {**environ, "SOLARIS_SECRET_KEY": "s3cret"}
    token = web_signing.usage_token("maria", Settings(), with_secret)
    with pytest.raises(LinkInvalid):
        web_signing.usage_user(token, environ)
    with pytest.raises(SettingsError):
        web_signing.secret_key({})


def test_usage_url_needs_public_url():
    assert web_signing.usage_url("maria", Settings(), environ) is None
    url = web_signing.usage_url("maria@example.com", Settings(public_url="https://ia.example.com/"), environ)
    assert url.startswith("https://ia.example.com/solaris/me/")
    assert web_signing.usage_user(url.rsplit("/", 1)[1], environ) == "maria@example.com"


def request_with(cookie: str) -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/solaris/admin",
            "query_string": b"",
            "scheme": "http",
            "server": ("127.0.0.1", 4000),
            "headers": [(b"cookie", f"solaris_admin={cookie}".encode())],
        }
    )


def session_cookie(key: str, actor: Actor) -> str:
    response = Response()
    web_session.start(response, request_with(""), actor, key, "pt-BR", ttl_s=600)
    return response.headers["set-cookie"].split(";")[0].split("=", 1)[1]


def test_a_session_ends_when_its_key_is_removed(monkeypatch):
    monkeypatch.setenv("LITELLM_MASTER_KEY", environ["LITELLM_MASTER_KEY"])
    monkeypatch.setenv("SOLARIS_ADMIN_KEYS", "bia=sk-admin-bia")
    cookie = session_cookie("sk-admin-bia", Actor("bia", "admin"))
    session = web_session.current(request_with(cookie))
    assert session is not None and session.actor == Actor("bia", "admin") and session.can_write
    monkeypatch.setenv("SOLARIS_ADMIN_KEYS", "")
    assert web_session.current(request_with(cookie)) is None


def test_a_key_moved_to_viewer_keys_reads_only_from_the_next_request(monkeypatch):
    monkeypatch.setenv("LITELLM_MASTER_KEY", environ["LITELLM_MASTER_KEY"])
    monkeypatch.setenv("SOLARIS_ADMIN_KEYS", "bia=sk-admin-bia")
    cookie = session_cookie("sk-admin-bia", Actor("bia", "admin"))
    monkeypatch.setenv("SOLARIS_ADMIN_KEYS", "")
    monkeypatch.setenv("SOLARIS_VIEWER_KEYS", "bia=sk-admin-bia")
    session = web_session.current(request_with(cookie))
    assert session is not None and not session.can_write


def test_nice_ceiling_rounds_up_to_1_2_5():
    assert [nice_ceiling(value) for value in (0, 1, 3, 7, 10, 11, 180, 627, 5001)] == [
        1,
        1,
        5,
        10,
        10,
        20,
        200,
        1000,
        10000,
    ]


def test_bar_chart_scales_bars_to_the_tallest_and_labels_today():
    points = [(f"{day:02d}/11", f"{day:02d}/11/2026", day * 10) for day in range(1, 31)]
    chart = bar_chart(points, str)
    assert len(chart.bars) == 30 and not chart.empty
    tallest = max(chart.bars, key=lambda bar: bar.height)
    assert tallest.value == 300 and tallest.label == "30/11/2026: 300"
    assert chart.bars[0].height == pytest.approx(tallest.height / 30, rel=0.01)
    assert chart.axis_labels[-1][1] == "30/11"
    assert bar_chart([("a", "a", 0)], str).empty
