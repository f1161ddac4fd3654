"""One entry of `alert_webhooks`: where alerts go besides e-mail, in which format, signed how.

The URL and the secret are SecretStr from the first step of validation on: a Slack or Teams
webhook URL is itself a credential (whoever has it can post to the channel), and a
validation error quotes the value it refused, so neither may reach an error, a log line or
the settings page in clear. The settings page shows the URL as scheme and host only.
"""

from __future__ import annotations

import hashlib
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_serializer, field_validator, model_validator

# Long enough that a guessed or brute-forced secret is out of reach; the same floor as
# GitHub's and Stripe's generated webhook secrets (32 hex digits).
secret_length_min = 16


def shown_url(url: str) -> str:
    """What a page or a log may show of a webhook URL: its scheme and host."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}/…"


class AlertWebhook(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: SecretStr = Field(max_length=2000)
    # json: our documented body, signed with `secret`; slack and teams: their incoming-webhook
    # formats (the URL is their credential, so they carry no signature).
    format: Literal["json", "slack", "teams"] = "json"
    secret: SecretStr | None = Field(None, min_length=secret_length_min, max_length=500)
    # Names the channel in the outbox, the logs and the admin pages. Unset: the format, the
    # host and a hash of the URL, so two Slack channels stay apart without showing the URL.
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,59}$")
    # The language of the text; unset: the `locale` setting.
    locale: Literal["pt-BR", "en"] | None = None
    # Short: the sender waits for one receiver at a time, and a slow one is retried later.
    timeout_s: float = Field(5, gt=0, le=30)

    @model_validator(mode="before")
    @classmethod
    def _hidden_at_once(cls, values: object) -> object:
        # Before any check can fail and quote them: every later error shows SecretStr('**********').
        if isinstance(values, dict):
            values = dict(values)
            for key in ("url", "secret"):
                if isinstance(values.get(key), str):
                    values[key] = SecretStr(values[key])
        return values

    @field_validator("url")
    @classmethod
    def _http_or_https(cls, url: SecretStr) -> SecretStr:
        text = url.get_secret_value().strip()
        parts = urlsplit(text)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            scheme = f"{parts.scheme}:" if parts.scheme else "no scheme"
            raise ValueError(f"must be an http:// or https:// URL with a host (this one has {scheme})")
        return SecretStr(text)

    @model_validator(mode="after")
    def _json_is_signed(self) -> AlertWebhook:
        if self.format == "json" and self.secret is None:
            raise ValueError(
                f"a json webhook needs a `secret` of at least {secret_length_min} characters to sign "
                "its alerts with (e.g. os.environ/ALERT_WEBHOOK_SECRET)"
            )
        return self

    @field_serializer("url")
    def _url_shown(self, url: SecretStr) -> str:
        return shown_url(url.get_secret_value())

    @property
    def channel(self) -> str:
        if self.name:
            return self.name
        url = self.url.get_secret_value()
        digest = hashlib.sha256(url.encode()).hexdigest()[:8]
        return f"{self.format}-{urlsplit(url).hostname}-{digest}"


def unique_channels(webhooks: list[AlertWebhook]) -> list[AlertWebhook]:
    """Each webhook is one channel of the outbox: two with one name would share deliveries."""
    seen: set[str] = set()
    for webhook in webhooks:
        if webhook.channel in seen:
            raise ValueError(f"two webhooks are the channel {webhook.channel!r}: give each its own `name` or URL")
        seen.add(webhook.channel)
    return webhooks
