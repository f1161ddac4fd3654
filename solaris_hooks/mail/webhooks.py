"""Alert webhooks: what each format sends, and how the JSON one is signed.

`json` posts our own body (below) with four headers:

    X-Solaris-Event: quota.threshold | quota.blocked
    X-Solaris-Delivery: <uuid>        the same on every retry of one alert to one webhook,
                                      and in Idempotency-Key: a receiver drops duplicates by it
    X-Solaris-Timestamp: <unix seconds of this attempt>
    X-Solaris-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>

The timestamp is inside what is signed, so a captured request cannot be replayed later
with a fresh one: a receiver recomputes the HMAC over the raw bytes it received, compares
in constant time, and refuses a timestamp older than a few minutes. `slack` and `teams` post
their documented incoming-webhook payloads (Block Kit; an Adaptive Card in a message).
Text is in the webhook's locale, pt-BR unless told otherwise, as the e-mails are.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from solaris_hooks.formats import format_number
from solaris_hooks.mail.emails import is_email_address
from solaris_hooks.messages import normalise_locale, render
from solaris_hooks.settings import Settings
from solaris_hooks.settings.alert_webhooks import AlertWebhook

# Fixed forever: receivers may have stored delivery ids derived from it.
_delivery_namespace = uuid.UUID("6f0b3c1e-9a43-4c55-8a8e-2f5d0c7e1a21")
# Slack's limits: 150 characters for a header's text, 3000 for a section's.
slack_header_length_max = 150
slack_section_length_max = 3000


@dataclass(frozen=True)
class Delivery:
    """A claimed webhook delivery joined with its alert and what we know of its user."""

    id: int
    alert_id: int
    channel: str
    attempts: int
    user_id: str
    threshold: Decimal
    credited_tokens: int
    used_tokens: int
    created_at: datetime
    email: str | None
    name: str | None

    @property
    def event(self) -> str:
        return "quota.blocked" if self.threshold >= 1 else "quota.threshold"

    @property
    def delivery_id(self) -> str:
        # Derived, not stored: the alert and the channel are what a duplicate shares.
        return str(uuid.uuid5(_delivery_namespace, f"{self.alert_id}/{self.channel}"))

    @property
    def address(self) -> str | None:
        """The user's stored e-mail, else the identity itself when it is an address."""
        return next((text for text in (self.email, self.user_id) if is_email_address(text)), None)


def locale_of(webhook: AlertWebhook, settings: Settings) -> str:
    return normalise_locale(webhook.locale or settings.locale)


def texts(delivery: Delivery, settings: Settings, locale: str) -> tuple[str, str]:
    """(title, message) in locale: who crossed what, with the figures."""
    user = f"{delivery.name} ({delivery.user_id})" if delivery.name else delivery.user_id
    values = {
        "brand_name": settings.brand_name,
        "user": user,
        "percent": int(delivery.threshold * 100),
        "used_tokens": format_number(delivery.used_tokens, locale),
        "credited_tokens": format_number(delivery.credited_tokens, locale),
        "remaining_tokens": format_number(max(0, delivery.credited_tokens - delivery.used_tokens), locale),
    }
    kind = "blocked" if delivery.threshold >= 1 else "warning"
    return render(f"webhook_title_{kind}", locale, **values), render(f"webhook_{kind}", locale, **values)


def json_body(delivery: Delivery, settings: Settings, locale: str) -> dict[str, object]:
    title, message = texts(delivery, settings, locale)
    return {
        "event": delivery.event,
        "delivery_id": delivery.delivery_id,
        "alert_id": delivery.alert_id,
        "created_at": delivery.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "user_id": delivery.user_id,
        "email": delivery.address,
        "name": delivery.name,
        "threshold": float(delivery.threshold),
        "used_tokens": delivery.used_tokens,
        "credited_tokens": delivery.credited_tokens,
        "remaining_tokens": max(0, delivery.credited_tokens - delivery.used_tokens),
        "locale": locale,
        "title": title,
        "message": message,
    }


def _slack_escaped(text: str) -> str:
    # Slack reads <…> as links and mentions (<!channel> pings everyone): a user id must not.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, length_max: int) -> str:
    return text if len(text) <= length_max else text[: length_max - 1] + "…"


def slack_body(delivery: Delivery, settings: Settings, locale: str) -> dict[str, object]:
    title, message = texts(delivery, settings, locale)
    when = delivery.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    context = f"{render('webhook_alert', locale)} {delivery.alert_id} · {when}"
    return {
        "text": _slack_escaped(f"{title}: {message}"),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": _cut(title, slack_header_length_max)}},
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _cut(_slack_escaped(message), slack_section_length_max)},
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": _slack_escaped(context)}]},
        ],
    }


def teams_body(delivery: Delivery, settings: Settings, locale: str) -> dict[str, object]:
    """A message with one Adaptive Card, the only format Teams' Workflows webhooks take."""
    title, message = texts(delivery, settings, locale)
    figures = (
        f"{format_number(delivery.used_tokens, locale)} / {format_number(delivery.credited_tokens, locale)}"
        f" ({int(delivery.threshold * 100)}%)"
    )
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "wrap": True},
            {"type": "TextBlock", "text": message, "wrap": True},
            {
                "type": "FactSet",
                "facts": [
                    {"title": render("webhook_user", locale), "value": delivery.user_id},
                    {"title": render("webhook_usage", locale), "value": figures},
                    {"title": render("webhook_alert", locale), "value": str(delivery.alert_id)},
                ],
            },
        ],
    }
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


_bodies = {"json": json_body, "slack": slack_body, "teams": teams_body}


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Solaris-Signature of body sent at timestamp."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def build_request(
    delivery: Delivery, webhook: AlertWebhook, settings: Settings, now_s: float
) -> tuple[bytes, dict[str, str]]:
    """The raw body and the headers of one attempt (the timestamp, hence the signature, is the attempt's)."""
    body = _bodies[webhook.format](delivery, settings, locale_of(webhook, settings))
    raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "solaris-hooks",
        "X-Solaris-Event": delivery.event,
        "X-Solaris-Delivery": delivery.delivery_id,
        "Idempotency-Key": delivery.delivery_id,
    }
    if webhook.secret is not None and webhook.format == "json":
        timestamp = int(now_s)
        headers["X-Solaris-Timestamp"] = str(timestamp)
        headers["X-Solaris-Signature"] = signature(webhook.secret.get_secret_value(), timestamp, raw)
    return raw, headers


def redacted(text: str, webhook: AlertWebhook) -> str:
    """text (an error, a receiver's answer) without the webhook's URL or secret in it."""
    for hidden in (webhook.url, webhook.secret):
        if hidden is not None and hidden.get_secret_value():
            text = text.replace(hidden.get_secret_value(), "…")
    return text
