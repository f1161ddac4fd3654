"""Alert webhooks end to end: a user driven through the real proxy past 80 % and 95 % makes
real HTTP receivers on loopback get exactly one alert per crossing, signed (json) or in
Slack's and Teams' formats, through a receiver that is down or answers 503 in between; and
a proxy without SMTP sends its webhooks all the same, with the webhooks a reload adds."""

from __future__ import annotations

import uuid
from decimal import Decimal

import openai
import psycopg
import pytest

from tests.support.harness import ProxyProcess, api_client, scratch_database, wait_for
from tests.support.proxy_calls import ask
from tests.support.suite import artifacts_dir, master_key, proxy_env, proxy_settings, write_proxy_config
from tests.support.webhook_receiver import Post, WebhookReceiver, verify_signature

secret = "whsec-" + uuid.uuid4().hex
# Paths that stand for the credential part of a Slack or Teams URL: they must not leak either.
slack_path = f"/services/T0/B0/{uuid.uuid4().hex}"
teams_path = f"/workflows/{uuid.uuid4().hex}"
# Fast retries, and enough attempts to outlast the outages these tests make.
retries = {"mail_backoff_base_s": 0.1, "mail_backoff_max_s": 0.3, "mail_attempts_max": 100, "mail_lease_s": 30}


@pytest.fixture(scope="module")
def json_receiver() -> WebhookReceiver:
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def chat_receiver() -> WebhookReceiver:
    """Slack and Teams, on two paths of one server."""
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def webhook_proxy(database_url, fake_provider, mail_catcher, json_receiver, chat_receiver, tmp_path_factory):
    """A proxy of its own (its outbox owns the webhook channels of its database) with three webhooks."""
    webhooks = [
        {"url": json_receiver.url("/alerts"), "format": "json", "secret": secret, "name": "ops-json"},
        {"url": chat_receiver.url(slack_path), "format": "slack"},
        {"url": chat_receiver.url(teams_path), "format": "teams", "locale": "en"},
    ]
    settings = {**proxy_settings, **retries, "alert_webhooks": webhooks}
    work = tmp_path_factory.mktemp("webhook-proxy")
    mail_env = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(mail_catcher.port), "SMTP_SECURITY": "none"}
    with scratch_database(database_url) as url:
        config = write_proxy_config(work / "litellm-config.yaml", fake_provider.base_url, settings)
        process = ProxyProcess(config, {**proxy_env(url, work), **mail_env}, artifacts_dir / "proxy-webhooks.log")
        process.database_url = url  # type: ignore[attr-defined]
        try:
            yield process.wait_ready()
        finally:
            process.stop()


@pytest.fixture(scope="module")
def proxy_without_smtp(database_url, fake_provider, json_receiver, tmp_path_factory):
    """A proxy with no SMTP_HOST (its e-mails wait in the outbox) and one json webhook, on a
    scratch database of its own; `config` is its YAML, for a reload to change."""
    settings = {**proxy_settings, **retries, "alert_webhooks": [no_smtp_webhook(json_receiver)]}
    work = tmp_path_factory.mktemp("webhook-proxy-no-smtp")
    with scratch_database(database_url) as url:
        config = write_proxy_config(work / "litellm-config.yaml", fake_provider.base_url, settings)
        env = {**proxy_env(url, work), "SMTP_HOST": None}
        process = ProxyProcess(config, env, artifacts_dir / "proxy-webhooks-no-smtp.log")
        process.database_url = url  # type: ignore[attr-defined]
        process.config = config  # type: ignore[attr-defined]
        try:
            yield process.wait_ready()
        finally:
            process.stop()


def no_smtp_webhook(receiver: WebhookReceiver) -> dict:
    return {"url": receiver.url("/no-smtp"), "format": "json", "secret": secret, "name": "no-smtp-json"}


@pytest.fixture
def client(webhook_proxy):
    return openai.OpenAI(base_url=f"{webhook_proxy.base_url}/v1", api_key=master_key)


def cross_80(client, user_id: str) -> None:
    ask(client, user_id, "[[tokens=2250]] longa", max_tokens=2250)  # 846 of 1000 tokens


def cross_95(client, user_id: str) -> None:
    ask(client, user_id, "[[tokens=300]] mais", max_tokens=300)  # 959 of 1000 tokens


def deliveries(proxy: ProxyProcess, user_id: str, channel: str | None = None) -> list[tuple]:
    """(threshold, status, attempts) of the user's webhook deliveries, oldest first."""
    with psycopg.connect(proxy.database_url, autocommit=True) as connection:  # type: ignore[attr-defined]
        return connection.execute(
            "SELECT a.threshold, d.status, d.attempts FROM solaris.webhook_deliveries d"
            " JOIN solaris.alerts a ON a.id = d.alert_id"
            " WHERE a.user_id = %s AND (%s::text IS NULL OR d.channel = %s) ORDER BY d.id",
            (user_id, channel, channel),
        ).fetchall()


def all_sent(proxy: ProxyProcess, user_id: str, count: int) -> list[tuple]:
    """Wait until count deliveries of the user are recorded sent: a sent delivery is never
    posted again, so what the receivers hold then is all they will ever get."""
    return wait_for(
        lambda: (
            (rows := deliveries(proxy, user_id)) and len(rows) == count and all(r[1] == "sent" for r in rows) and rows
        ),
        30,
        what=f"{count} webhook deliveries of {user_id} sent",
    )


def of_user(posts: list[Post], user_id: str) -> list[Post]:
    return [post for post in posts if user_id in post.body.decode()]


class TestSignedJsonAlerts:
    def test_each_crossing_reaches_the_receiver_exactly_once_signed(self, webhook_proxy, client, json_receiver):
        """80 % then 95 %: two posts, one per crossing, each with a signature the receiver verifies."""
        user_id = f"wh-{uuid.uuid4().hex[:10]}@example.com"
        cross_80(client, user_id)
        wait_for(lambda: of_user(json_receiver.accepted("/alerts"), user_id), 30, what="the 80 % alert")
        cross_95(client, user_id)
        all_sent(webhook_proxy, user_id, 2 * 3)
        posts = of_user(json_receiver.accepted("/alerts"), user_id)
        assert [post.json()["threshold"] for post in posts] == [0.8, 0.95]
        assert all(verify_signature(secret, post) for post in posts)
        assert len({post.headers["x-solaris-delivery"] for post in posts}) == 2
        first = posts[0].json()
        assert (first["user_id"], first["email"], first["event"]) == (user_id, user_id, "quota.threshold")
        assert first["used_tokens"] / first["credited_tokens"] >= 0.8
        assert "80%" in first["message"] and "restam" in first["message"]

    def test_an_alert_is_retried_while_the_receiver_is_down_and_arrives_once(
        self, webhook_proxy, client, json_receiver
    ):
        """Receiver stopped: the delivery fails and is retried; once it is back, it arrives exactly once."""
        user_id = f"wh-{uuid.uuid4().hex[:10]}@example.com"
        json_receiver.stop()
        try:
            cross_80(client, user_id)
            wait_for(
                lambda: any(attempts >= 2 for _, _, attempts in deliveries(webhook_proxy, user_id, "ops-json")),
                30,
                what="a retried delivery",
            )
        finally:
            json_receiver.start()
        all_sent(webhook_proxy, user_id, 3)
        (post,) = of_user(json_receiver.accepted("/alerts"), user_id)
        assert verify_signature(secret, post) and post.json()["threshold"] == 0.8

    def test_an_alert_answered_503_is_retried_and_arrives_once(self, webhook_proxy, client, json_receiver):
        """Receiver answering 503: refused posts are retried with the same delivery id until one is accepted."""
        user_id = f"wh-{uuid.uuid4().hex[:10]}@example.com"
        json_receiver.answer = 503
        try:
            cross_80(client, user_id)
            wait_for(lambda: len(of_user(json_receiver.refused("/alerts"), user_id)) >= 2, 30, what="two 503s")
        finally:
            json_receiver.answer = 200
        all_sent(webhook_proxy, user_id, 3)
        (post,) = of_user(json_receiver.accepted("/alerts"), user_id)
        refused = of_user(json_receiver.refused("/alerts"), user_id)
        assert {each.headers["x-solaris-delivery"] for each in refused} == {post.headers["x-solaris-delivery"]}

    def test_a_dead_delivery_is_retried_by_the_admin_api(self, webhook_proxy, client, json_receiver):
        """A 410 is dead at once; POST /solaris/alerts/{id}/retry sends it again, and it arrives."""
        user_id = f"wh-{uuid.uuid4().hex[:10]}@example.com"
        cross_80_refused_with_410(webhook_proxy, client, json_receiver, user_id)
        assert len(of_user(json_receiver.refused("/alerts"), user_id)) == 1
        with api_client(webhook_proxy.base_url, master_key) as http:
            (alert,) = http.get("/solaris/alerts", params={"user_id": user_id}).json()["alerts"]
            assert http.post(f"/solaris/alerts/{alert['id']}/retry").status_code == 200
        all_sent(webhook_proxy, user_id, 3)
        assert len(of_user(json_receiver.accepted("/alerts"), user_id)) == 1


def cross_80_refused_with_410(webhook_proxy, client, json_receiver, user_id: str) -> None:
    """The user crosses 80 % while the json receiver answers 410: its delivery is dead at once."""
    json_receiver.answer = 410
    try:
        cross_80(client, user_id)
        wait_for(lambda: "dead" in {r[1] for r in deliveries(webhook_proxy, user_id, "ops-json")}, 30)
    finally:
        json_receiver.answer = 200


class TestAdminApi:
    def test_alerts_carry_each_webhook_delivery_without_its_url_or_secret(self, webhook_proxy, client, json_receiver):
        """GET /solaris/alerts lists the alert's three deliveries by channel (the json one dead on a
        410, with the receiver's status and answer); the retry's answer shows it pending again.
        Neither answer holds a webhook's URL or secret."""
        user_id = f"wh-{uuid.uuid4().hex[:10]}@example.com"
        cross_80_refused_with_410(webhook_proxy, client, json_receiver, user_id)
        wait_for(lambda: [r[1] for r in deliveries(webhook_proxy, user_id)].count("sent") == 2, 30)
        with api_client(webhook_proxy.base_url, master_key) as http:
            listed = http.get("/solaris/alerts", params={"user_id": user_id})
            (alert,) = listed.json()["alerts"]
            retried = http.post(f"/solaris/alerts/{alert['id']}/retry")
        dead, slack, teams = alert["webhooks"]
        assert (dead["channel"], dead["status"], dead["attempts"], dead["response_status"]) == (
            "ops-json",
            "dead",
            1,
            410,
        )
        assert dead["last_error"] == "HTTP 410: unavailable" and dead["sent_at"] is None
        assert [slack["channel"][:6], teams["channel"][:6]] == ["slack-", "teams-"]
        assert [(each["status"], each["response_status"]) for each in (slack, teams)] == [("sent", 200)] * 2
        assert set(dead) == {
            "id",
            "channel",
            "status",
            "attempts",
            "last_error",
            "response_status",
            "next_attempt_at",
            "sent_at",
        }
        assert retried.status_code == 200
        again = {each["channel"]: (each["status"], each["attempts"]) for each in retried.json()["webhooks"]}
        assert again["ops-json"] == ("pending", 0) and list(again) == [
            dead["channel"],
            slack["channel"],
            teams["channel"],
        ]
        for answer in (listed.text, retried.text):
            assert secret not in answer and slack_path not in answer and teams_path not in answer
            assert json_receiver.url("/alerts") not in answer
        all_sent(webhook_proxy, user_id, 3)


class TestChatFormats:
    def test_slack_and_teams_get_their_own_formats(self, webhook_proxy, client, chat_receiver):
        """Slack gets text and blocks in pt-BR; Teams an Adaptive Card in English (its locale)."""
        user_id = f"wh-{uuid.uuid4().hex[:10]}@example.com"
        cross_80(client, user_id)
        all_sent(webhook_proxy, user_id, 3)
        (slack,) = of_user(chat_receiver.accepted(slack_path), user_id)
        (teams,) = of_user(chat_receiver.accepted(teams_path), user_id)
        assert "cota" in slack.json()["text"] and slack.json()["blocks"][0]["type"] == "header"
        card = teams.json()["attachments"][0]
        assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
        assert "allowance" in card["content"]["body"][0]["text"]


class TestSecretsStayHidden:
    def test_the_secret_and_the_urls_reach_no_log_and_no_admin_page(self, webhook_proxy, client, chat_receiver):
        """After alerts were sent, the proxy's log and GET /solaris/settings hold neither."""
        user_id = f"wh-{uuid.uuid4().hex[:10]}@example.com"
        cross_80(client, user_id)
        all_sent(webhook_proxy, user_id, 3)
        with api_client(webhook_proxy.base_url, master_key) as http:
            settings = http.get("/solaris/settings").text
        assert "alert_webhooks" in settings and "webhook_sent" in webhook_proxy.log()
        for shown in (settings, webhook_proxy.log()):
            assert secret not in shown and slack_path not in shown and teams_path not in shown


class TestWithoutSmtp:
    def test_the_80_percent_alert_reaches_the_webhook_while_its_email_waits(self, proxy_without_smtp, json_receiver):
        """No SMTP_HOST: the 80 % alert is posted, signed, to the json webhook; its e-mail stays pending."""
        user_id = f"wh-{uuid.uuid4().hex[:10]}@example.com"
        cross_80(openai.OpenAI(base_url=f"{proxy_without_smtp.base_url}/v1", api_key=master_key), user_id)
        (post,) = wait_for(lambda: of_user(json_receiver.accepted("/no-smtp"), user_id), 30, what="the 80 % alert")
        assert verify_signature(secret, post) and post.json()["threshold"] == 0.8
        assert all_sent(proxy_without_smtp, user_id, 1) == [(Decimal("0.8"), "sent", 1)]
        with api_client(proxy_without_smtp.base_url, master_key) as http:
            (alert,) = http.get("/solaris/alerts", params={"user_id": user_id}).json()["alerts"]
        assert alert["status"] == "pending" and alert["sent_at"] is None

    def test_a_webhook_added_by_a_reload_gets_the_next_alert(
        self, proxy_without_smtp, fake_provider, json_receiver, chat_receiver
    ):
        """A Slack webhook added to the YAML and POST /solaris/settings/reload: once its channel is
        active, the next crossing reaches it as well as the json webhook."""
        slack = {"url": chat_receiver.url("/no-smtp-slack"), "format": "slack", "name": "no-smtp-slack"}
        settings = {**proxy_settings, **retries, "alert_webhooks": [no_smtp_webhook(json_receiver), slack]}
        write_proxy_config(proxy_without_smtp.config, fake_provider.base_url, settings)  # type: ignore[attr-defined]
        with api_client(proxy_without_smtp.base_url, master_key) as http:
            assert http.post("/solaris/settings/reload").status_code == 200
        wait_for(lambda: channel_active(proxy_without_smtp, "no-smtp-slack"), 30, what="the Slack channel active")
        user_id = f"wh-{uuid.uuid4().hex[:10]}@example.com"
        cross_80(openai.OpenAI(base_url=f"{proxy_without_smtp.base_url}/v1", api_key=master_key), user_id)
        all_sent(proxy_without_smtp, user_id, 2)
        (post,) = of_user(chat_receiver.accepted("/no-smtp-slack"), user_id)
        assert "80%" in post.json()["text"]
        assert len(of_user(json_receiver.accepted("/no-smtp"), user_id)) == 1


def channel_active(proxy: ProxyProcess, channel: str) -> bool:
    with psycopg.connect(proxy.database_url, autocommit=True) as connection:  # type: ignore[attr-defined]
        row = connection.execute("SELECT active FROM solaris.alert_channels WHERE channel = %s", (channel,)).fetchone()
    return bool(row and row[0])
