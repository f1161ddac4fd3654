"""Alert webhooks without a network: what each format sends, the signature a receiver checks,
and the settings that refuse a webhook that cannot work, never quoting its secret."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from solaris_hooks.exceptions import SettingsError
from solaris_hooks.mail.webhooks import Delivery, build_request, redacted
from solaris_hooks.settings import Settings, settings_from_mapping
from solaris_hooks.settings.alert_webhooks import AlertWebhook
from tests.support.webhook_receiver import Post, verify_signature

secret = "s3cret-for-the-tests-0123456789"
slack_url = "https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXXXXXX"
now_s = 1_760_000_000.0


def delivery(**overrides: object) -> Delivery:
    values: dict[str, object] = {
        "id": 7,
        "alert_id": 41,
        "channel": "ops",
        "attempts": 1,
        "user_id": "ana@example.com",
        "threshold": Decimal("0.8"),
        "credited_tokens": 1000,
        "used_tokens": 812,
        "created_at": datetime(2025, 10, 9, 12, 30, tzinfo=UTC),
        "email": None,
        "name": "Ana",
    }
    return Delivery(**{**values, **overrides})  # type: ignore[arg-type]


def sent(webhook: AlertWebhook, settings: Settings | None = None, at_s: float = now_s, **overrides: object) -> Post:
    """The request as the receiver gets it."""
    body, headers = build_request(delivery(**overrides), webhook, settings or Settings(), at_s)
    return Post("/hook", {name.lower(): value for name, value in headers.items()}, body, 200)


json_hook = AlertWebhook(url="https://alerts.example.com/hook", secret=secret, name="ops")


class TestJsonWebhook:
    def test_a_receiver_verifies_the_signature_of_the_raw_body(self):
        """The HMAC-SHA256 of "<timestamp>." + body with the secret matches X-Solaris-Signature."""
        assert verify_signature(secret, sent(json_hook), now_s=now_s + 5)

    def test_a_changed_body_timestamp_or_secret_fails_verification(self):
        """One byte of the body, a replayed timestamp or another secret: the signature no longer holds."""
        post = sent(json_hook)
        changed_body = Post(post.path, post.headers, post.body.replace(b"812", b"813"), 200)
        replayed = Post(post.path, {**post.headers, "x-solaris-timestamp": str(int(now_s) + 600)}, post.body, 200)
        assert not verify_signature(secret, changed_body, now_s=now_s)
        assert not verify_signature(secret, replayed, now_s=now_s + 600)
        assert not verify_signature("another-secret-0123456789", post, now_s=now_s)

    def test_a_stale_timestamp_is_refused_by_the_receiver(self):
        """A request captured and sent again an hour later is refused, though its signature is genuine."""
        assert not verify_signature(secret, sent(json_hook), now_s=now_s + 3600)

    def test_the_body_says_who_crossed_what_with_the_figures(self):
        """User id, e-mail when known, threshold, used and credited tokens, alert id, time, message."""
        body = sent(json_hook, user_id="ana@example.com").json()
        assert body["event"] == "quota.threshold"
        assert (body["user_id"], body["email"], body["name"]) == ("ana@example.com", "ana@example.com", "Ana")
        assert (body["threshold"], body["used_tokens"], body["credited_tokens"]) == (0.8, 812, 1000)
        assert (body["remaining_tokens"], body["alert_id"]) == (188, 41)
        assert body["created_at"] == "2025-10-09T12:30:00Z"
        assert (
            body["message"]
            == "Ana (ana@example.com) já usou 812 dos 1.000 tokens da plataforma da sua cota (80%); restam 188."
        )

    def test_an_identity_that_is_not_an_address_has_no_email(self):
        """`email` is the stored address, else the identity when it is one, else null."""
        assert sent(json_hook, user_id="emp-1234").json()["email"] is None
        assert sent(json_hook, user_id="emp-1234", email="ana@corp.local").json()["email"] == "ana@corp.local"

    def test_the_block_notice_is_its_own_event(self):
        """At 100 % the event is quota.blocked and the message says new messages are refused."""
        post = sent(json_hook, threshold=Decimal("1.0"), used_tokens=1000)
        assert post.headers["x-solaris-event"] == "quota.blocked"
        assert "recusadas" in post.json()["message"]

    def test_the_delivery_id_is_the_same_on_every_attempt_and_differs_per_channel(self):
        """Retries carry one delivery id (and Idempotency-Key); another webhook gets another."""
        first, retry = sent(json_hook, attempts=1), sent(json_hook, at_s=now_s + 60, attempts=2)
        other = sent(json_hook, channel="finance")
        assert first.headers["x-solaris-delivery"] == retry.headers["x-solaris-delivery"]
        assert first.headers["idempotency-key"] == first.headers["x-solaris-delivery"] == first.json()["delivery_id"]
        assert other.headers["x-solaris-delivery"] != first.headers["x-solaris-delivery"]
        assert first.headers["x-solaris-signature"] != retry.headers["x-solaris-signature"]

    def test_english_when_the_webhook_asks_for_it(self):
        """The text is pt-BR by default and English for a webhook with locale: en."""
        english = json_hook.model_copy(update={"locale": "en"})
        body = sent(english).json()
        assert body["locale"] == "en"
        assert body["message"].startswith("Ana (ana@example.com) has used 812 of the 1,000 platform tokens")


class TestSlackWebhook:
    hook = AlertWebhook(url=slack_url, format="slack")

    def test_the_payload_is_slack_text_and_blocks(self):
        """An incoming-webhook payload: a fallback `text` and Block Kit header, section and context."""
        payload = sent(self.hook).json()
        assert "80%" in payload["text"]
        assert [block["type"] for block in payload["blocks"]] == ["header", "section", "context"]
        assert payload["blocks"][0]["text"]["type"] == "plain_text"
        assert payload["blocks"][1]["text"] == {"type": "mrkdwn", "text": payload["blocks"][1]["text"]["text"]}
        assert "812" in payload["blocks"][1]["text"]["text"]

    def test_a_user_id_cannot_ping_the_channel(self):
        """`<!channel>` in a user id is escaped, so Slack shows it instead of notifying everyone."""
        payload = sent(self.hook, user_id="<!channel>", name=None).json()
        assert "<!channel>" not in json.dumps(payload["text"]) + json.dumps(payload["blocks"][1:])
        assert "&lt;!channel&gt;" in payload["blocks"][1]["text"]["text"]

    def test_slack_gets_no_signature_headers(self):
        """The URL is Slack's credential; our signature headers are for json receivers."""
        assert "x-solaris-signature" not in sent(self.hook).headers


class TestTeamsWebhook:
    hook = AlertWebhook(url="https://prod.westeurope.logic.azure.com/workflows/abc?sig=xyz", format="teams")

    def test_the_payload_is_a_message_with_one_adaptive_card(self):
        """What Teams' Workflows webhooks take: type message, one Adaptive Card attachment."""
        payload = sent(self.hook).json()
        (attachment,) = payload["attachments"]
        assert payload["type"] == "message"
        assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        card = attachment["content"]
        assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
        assert [part["type"] for part in card["body"]] == ["TextBlock", "TextBlock", "FactSet"]
        facts = {fact["title"]: fact["value"] for fact in card["body"][2]["facts"]}
        assert facts == {"Usuário": "ana@example.com", "Uso": "812 / 1.000 (80%)", "Alerta": "41"}


def load(webhook: dict, **settings: object) -> Settings:
    return settings_from_mapping({"alert_webhooks": [webhook], **settings}, environ={})


class TestWebhookSettings:
    def test_a_url_that_is_not_http_is_refused_at_load_with_a_clear_message(self):
        """ftp://, a bare host or a mail address: the proxy refuses to start, naming the key."""
        for url in ("ftp://alerts.example.com/hook", "alerts.example.com/hook", "mailto:ops@example.com"):
            with pytest.raises(SettingsError) as refused:
                load({"url": url, "secret": secret})
            assert "solaris_settings.alert_webhooks.0.url" in str(refused.value)
            assert "must be an http:// or https:// URL" in str(refused.value)
            assert url not in str(refused.value)

    def test_a_json_webhook_without_a_secret_is_refused(self):
        """Unsigned alerts would let anyone post fake ones to the receiver."""
        with pytest.raises(SettingsError, match="needs a `secret`"):
            load({"url": "https://alerts.example.com/hook"})

    def test_a_short_secret_is_refused_without_being_quoted(self):
        """The error names the key and the rule, never the value."""
        with pytest.raises(SettingsError) as refused:
            load({"url": slack_url, "secret": "tiny-secret"})
        assert "alert_webhooks.0.secret" in str(refused.value)
        assert "tiny-secret" not in str(refused.value) and "XXXXXXXXXXXXXXXX" not in str(refused.value)

    def test_secret_and_url_never_show_in_a_dump_or_repr(self):
        """The settings page and the reload audit dump settings: scheme and host only, no secret."""
        slack = load({"url": slack_url, "format": "slack"})
        settings = load({"url": "https://alerts.example.com/hook/abc", "secret": secret})
        shown = "".join(json.dumps(each.model_dump(mode="json")) + repr(each) for each in (slack, settings))
        assert secret not in shown and "/hook/abc" not in shown and "XXXXXXXXXXXXXXXX" not in shown
        assert settings.model_dump(mode="json")["alert_webhooks"][0]["url"] == "https://alerts.example.com/…"

    def test_the_secret_may_come_from_the_environment(self):
        """`os.environ/NAME`, as LiteLLM's own config does, keeps the secret out of the YAML."""
        block = {"alert_webhooks": [{"url": "https://alerts.example.com/hook", "secret": "os.environ/HOOK_SECRET"}]}
        settings = settings_from_mapping(block, environ={"HOOK_SECRET": secret})
        assert settings.alert_webhooks[0].secret.get_secret_value() == secret

    def test_two_webhooks_on_one_channel_are_refused(self):
        """Each webhook is a channel of its own; two with one name would share their deliveries."""
        hooks = [{"url": slack_url, "format": "slack", "name": "ops"}, {"url": slack_url + "2", "format": "slack"}]
        assert len(settings_from_mapping({"alert_webhooks": hooks}, environ={}).alert_webhooks) == 2
        hooks[1]["name"] = "ops"
        with pytest.raises(SettingsError, match="two webhooks are the channel 'ops'"):
            settings_from_mapping({"alert_webhooks": hooks}, environ={})

    def test_an_unnamed_webhook_is_named_by_format_host_and_a_hash(self):
        """Stable across restarts, distinct per URL, and without the URL's path in it."""
        hook = AlertWebhook(url=slack_url, format="slack")
        assert hook.channel.startswith("slack-hooks.slack.com-") and "XXXX" not in hook.channel
        assert hook.channel == AlertWebhook(url=slack_url, format="slack").channel
        assert hook.channel != AlertWebhook(url=slack_url + "2", format="slack").channel

    def test_errors_from_a_receiver_lose_the_url_and_the_secret(self):
        """What is kept in last_error and logged names neither."""
        hook = AlertWebhook(url="https://alerts.example.com/hook", secret=secret)
        text = redacted(f"ConnectError: https://alerts.example.com/hook refused; echoed {secret}", hook)
        assert "alerts.example.com/hook" not in text and secret not in text
