"""The outbox's webhook sender: claims due webhook deliveries, posts them, records the outcome.

The same machinery as the e-mails (solaris_hooks.mail.outbox): a delivery row per (alert,
webhook) is written with the alert itself (migration 0012's trigger), claimed with `FOR
UPDATE SKIP LOCKED` and a lease, posted after the claim commits, and retried with the same
backoff and number of attempts before it is dead. A timeout, a refused connection, a 408,
a 429 or a 5xx is retried; any other answer but a 2xx cannot change by retrying (a wrong
URL, a payload refused) and is dead at once, for an admin to retry once it is fixed.
The URL and the secret never reach a log line or `last_error`: the channel names the webhook.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid

import httpx
import psycopg
from psycopg.rows import class_row, dict_row

from solaris_hooks.db.queries import sql
from solaris_hooks.exceptions import DatabaseUnavailable
from solaris_hooks.logs import log_event
from solaris_hooks.mail.delivery import Connect, Report, backoff_s, claim_batch_size_max, record_until
from solaris_hooks.mail.webhooks import Delivery, build_request, redacted
from solaris_hooks.settings import Settings
from solaris_hooks.settings.alert_webhooks import AlertWebhook

error_length_max = 500
answer_length_max = 200
retried_statuses = frozenset({408, 429})


def _fields(delivery: Delivery) -> dict[str, object]:
    return {
        "channel": delivery.channel,
        "alert_id": delivery.alert_id,
        "user_id": delivery.user_id,
        "threshold": float(delivery.threshold),
        "delivery_id": delivery.delivery_id,
    }


class WebhookOutbox:
    def __init__(self, connect: Connect, settings: Settings, worker_id: str | None = None) -> None:
        self._connect = connect
        self.settings = settings
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._synced: tuple[str, ...] | None = None

    @property
    def webhooks(self) -> dict[str, AlertWebhook]:
        return {webhook.channel: webhook for webhook in self.settings.alert_webhooks}

    async def sync_channels(self) -> None:
        """Make the configured webhooks the channels new alerts fan out to (once per change of
        the settings: a reload may add or remove some)."""
        channels = tuple(sorted(self.webhooks))
        if channels == self._synced:
            return
        async with self._connect() as connection:
            await connection.execute(sql("mail/sync_webhook_channels"), {"channels": list(channels)})
        self._synced = channels
        log_event("webhook_channels", channels=list(channels))

    async def claim(self, limit: int = claim_batch_size_max) -> list[Delivery]:
        channels = list(self.webhooks)
        if not channels:
            return []
        async with self._connect() as connection, connection.cursor(row_factory=class_row(Delivery)) as cursor:
            params = {"worker": self.worker_id, "lease_s": self.settings.mail_lease_s, "limit": limit}
            await cursor.execute(sql("mail/claim_webhook_deliveries"), {**params, "channels": channels})
            return await cursor.fetchall()

    async def deliver(
        self, delivery: Delivery, client: httpx.AsyncClient, report: Report, claim_ends_at_s: float
    ) -> None:
        """Post one claimed delivery and record the outcome (through a database outage while
        the claim lasts, as the e-mails are)."""
        webhook = self.webhooks.get(delivery.channel)
        if webhook is None:  # removed by a reload after the claim: it waits for the webhook to come back
            return
        body, headers = build_request(delivery, webhook, self.settings, time.time())
        status: int | None = None
        try:
            response = await client.post(
                webhook.url.get_secret_value(), content=body, headers=headers, timeout=webhook.timeout_s
            )
            status = response.status_code
            if 200 <= status < 300:
                await self._record(claim_ends_at_s, "mail/webhook_sent", id=delivery.id, response_status=status)
                report.sent += 1
                log_event(
                    "webhook_sent",
                    logging.INFO,
                    **_fields(delivery),
                    attempts=delivery.attempts,
                    response_status=status,
                )
                return
            error = f"HTTP {status}: {' '.join(response.text[:answer_length_max].split())}"
        except httpx.TimeoutException:
            error = f"timeout after {webhook.timeout_s} s"
        except (httpx.HTTPError, httpx.InvalidURL, OSError) as failure:
            error = f"{type(failure).__name__}: {failure}"
        await self._failed(delivery, report, claim_ends_at_s, redacted(error, webhook)[:error_length_max], status)

    async def _failed(
        self, delivery: Delivery, report: Report, claim_ends_at_s: float, error: str, status: int | None
    ) -> None:
        permanent = status is not None and status < 500 and status not in retried_statuses
        delay_s = backoff_s(delivery.attempts, self.settings)
        outcome = await self._record(
            claim_ends_at_s,
            "mail/webhook_failed",
            id=delivery.id,
            error=error,
            delay_s=delay_s,
            attempts_max=self.settings.mail_attempts_max,
            permanent=permanent,
            response_status=status,
        )
        report.errors.append(f"webhook {delivery.channel}: {error}")
        fields = {**_fields(delivery), "attempts": delivery.attempts, "error": error}
        if outcome == "dead":
            report.dead += 1
            log_event("webhook_dead", logging.ERROR, **fields)
        else:
            # outcome None: our lease ran out and another worker owns the row now.
            report.failed += 1
            log_event("webhook_failed", logging.WARNING, **fields, status=outcome, retry_in_s=round(delay_s, 1))

    async def _record(self, claim_ends_at_s: float, statement: str, **params: object) -> str | None:
        return await record_until(self._connect, self.worker_id, self.settings, claim_ends_at_s, statement, **params)

    async def deliver_due(self, limit: int = claim_batch_size_max) -> Report:
        """One pass: claim what is due (up to limit) and post it, in claim order."""
        report = Report()
        await self.sync_channels()
        claimed_at_s = time.monotonic()
        deliveries = await self.claim(limit)
        if not deliveries:
            return report
        # Redirects are not followed: a receiver that moved answers 3xx, which is dead at once.
        async with httpx.AsyncClient(follow_redirects=False) as client:
            for delivery in deliveries:
                await self.deliver(delivery, client, report, claimed_at_s + self.settings.mail_lease_s)
        return report

    async def flush(self, rounds_max: int = 1000) -> Report:
        """Post until nothing is due (what failed waits for its next attempt)."""
        total = Report()
        for _ in range(rounds_max):
            report = await self.deliver_due()
            total.add(report)
            if report.handled < claim_batch_size_max:
                break
        return total

    async def run_forever(self) -> None:
        while True:
            try:
                report = await self.deliver_due()
            except DatabaseUnavailable as error:
                log_event("webhook_outbox_failed", logging.WARNING, error=str(error))
                report = Report()
            except Exception as error:  # a dead worker would leave every webhook alert unsent
                log_event("webhook_outbox_failed", logging.ERROR, error=repr(error))
                report = Report()
            if report.handled < claim_batch_size_max:
                await asyncio.sleep(self.settings.mail_poll_interval_s)


def webhook_backlog(connection: psycopg.Connection, backlog_age_max_s: float) -> dict[str, int]:
    """Dead webhook deliveries, and ones waiting longer than backlog_age_max_s, by status:
    what `solaris doctor` reports for the e-mails (admin/outbox_backlog), for the webhooks."""
    rows = connection.execute(sql("mail/webhook_backlog"), {"backlog_age_max_s": backlog_age_max_s}).fetchall()
    return dict(rows)


async def deliveries_of_alert(connection: psycopg.AsyncConnection, alert_id: int) -> list[dict]:
    """One alert's webhook deliveries (channel, status, attempts, last error…), by channel:
    what an admin sees of it next to its e-mail (outbox.list_alerts does the same for a page)."""
    async with connection.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(sql("mail/webhook_deliveries_of_alerts"), {"alert_ids": [alert_id]})
        return [{key: value for key, value in row.items() if key != "alert_id"} for row in await cursor.fetchall()]
