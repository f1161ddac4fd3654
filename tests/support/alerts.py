"""Alerts as the tests raise and deliver them: settings with fast retries, an SMTP server
that is a catcher, spends that cross thresholds, and an Alert to render."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import TYPE_CHECKING

from solaris_hooks.mail.emails import Alert
from solaris_hooks.mail.smtp import SmtpSettings
from solaris_hooks.settings import Settings

if TYPE_CHECKING:  # the unit tests render alerts without the service and its pool
    from solaris_hooks.quota.service import QuotaService

thresholds = [0.8, 0.95]
fast_retries = {"mail_backoff_base_s": 0.05, "mail_backoff_max_s": 0.2, "mail_lease_s": 30}


def alert_fields(**overrides: object) -> dict[str, object]:
    """Settings fields whose mail retries and leases are short enough for a test to wait them out."""
    return {"credits_email": "creditos@example.com", **fast_retries, **overrides}


def alert_settings(**overrides: object) -> Settings:
    return Settings(**alert_fields(**overrides))


def smtp_for(catcher_port: int, **overrides) -> SmtpSettings:
    return SmtpSettings(
        host="127.0.0.1", port=catcher_port, from_address="IA SOLARIS <quota@solaris.example>", timeout_s=5, **overrides
    )


async def spend(service: QuotaService, user_id: str, tokens: int) -> None:
    """One call of `tokens` platform tokens (factor 1), reserved and settled."""
    from solaris_hooks.db import ledger
    from tests.support import ledger_calls

    call_id = uuid.uuid4().hex
    async with service.connection() as connection:
        reservation = await ledger_calls.reserve(
            connection, user_id, call_id, tokens, factor=1.0, thresholds=thresholds
        )
        assert reservation.outcome == "reserved", reservation
        await ledger.resolve(connection, call_id=call_id, kind="settle", raw_tokens=tokens, thresholds=thresholds)


def alert(**overrides) -> Alert:
    values = {
        "id": 41,
        "user_id": "ana@example.com",
        "kind": "usage",
        "threshold": Decimal("0.8"),
        "credited_tokens": 1000,
        "used_tokens": 812,
        "tokens": None,
        "attempts": 1,
        "email": None,
        "name": "Ana",
        "locale": None,
    }
    return Alert(**{**values, **overrides})
