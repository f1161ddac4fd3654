"""The outbox worker: claims due alerts, sends them after the claim commits, records the outcome.

Claims use `FOR UPDATE SKIP LOCKED`, so replicas never claim the same row at once; a
claim is a lease (`claimed_until`), so a sender that crashed between claim and send has
its rows taken over once the lease runs out. Delivery is therefore at least once, and
the stable Message-ID lets a mail system drop the rare duplicate. Failures are retried
with exponential backoff and jitter, then marked `dead` for an admin to look at.
The alert webhooks ride the same outbox with the same rules (solaris_hooks.mail.webhook_outbox):
the worker runs their sender next to the mailer, and an admin's retry re-queues both.
"""

from __future__ import annotations

import asyncio
import logging
import os
import smtplib
import socket
import time
import uuid

from psycopg import AsyncConnection
from psycopg.rows import class_row, dict_row

from solaris_hooks.db import audit
from solaris_hooks.db.pages import fetch_page
from solaris_hooks.db.queries import sql
from solaris_hooks.exceptions import Conflict, DatabaseUnavailable, NotFound
from solaris_hooks.logs import log_event
from solaris_hooks.mail import emails, smtp
from solaris_hooks.mail.delivery import Connect, Report, backoff_s, claim_batch_size_max, record, record_until
from solaris_hooks.mail.emails import Alert
from solaris_hooks.mail.smtp import SmtpSettings
from solaris_hooks.mail.webhook_outbox import WebhookOutbox
from solaris_hooks.settings import Settings

error_length_max = 500


def loggable_error(error: Exception) -> str:
    """What went wrong, for the log: SMTP replies and refusals may quote the recipient's
    address, so only their class and codes are kept (the full text is in `last_error`)."""
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{type(error).__name__}: {error.smtp_code}"
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return f"{type(error).__name__}: {', '.join(sorted({str(code) for code, _ in error.recipients.values()}))}"
    if isinstance(error, smtplib.SMTPException):
        return type(error).__name__
    return f"{type(error).__name__}: {error}"[:error_length_max]


def _alert_fields(alert: Alert) -> dict[str, object]:
    """What identifies an alert in a log line. Never the recipient's address: the user id
    finds it, and log lines travel further and live longer than the database."""
    threshold = None if alert.threshold is None else float(alert.threshold)
    return {"user_id": alert.user_id, "alert_id": alert.id, "kind": alert.template, "threshold": threshold}


class Outbox:
    def __init__(
        self, connect: Connect, settings: Settings, smtp_settings: SmtpSettings, worker_id: str | None = None
    ) -> None:
        self._connect = connect
        self.smtp = smtp_settings
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.webhooks = WebhookOutbox(connect, settings, self.worker_id)
        self.settings = settings

    @property
    def settings(self) -> Settings:
        return self._settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        # A reload (QuotaService.on_reload sets this) reaches the webhook sender too.
        self._settings = settings
        self.webhooks.settings = settings

    async def claim(self, limit: int = claim_batch_size_max) -> list[Alert]:
        async with self._connect() as connection, connection.cursor(row_factory=class_row(Alert)) as cursor:
            await cursor.execute(
                sql("mail/claim_alerts"),
                {"worker": self.worker_id, "lease_s": self.settings.mail_lease_s, "limit": limit},
            )
            return await cursor.fetchall()

    async def deliver(self, alert: Alert, report: Report, claim_ends_at_s: float | None = None) -> None:
        """Send one claimed alert and record the outcome. claim_ends_at_s (time.monotonic)
        is when the claim's lease runs out: until then, recording waits out a database
        outage rather than leave a sent alert to be sent again by the next claimant."""
        if claim_ends_at_s is None:
            claim_ends_at_s = time.monotonic() + self.settings.mail_lease_s
        message = emails.compose(alert, self.settings, self.smtp)
        if message is None:
            await self._record("mail/alert_no_address", id=alert.id)
            report.no_address += 1
            log_event("mail_no_address", logging.INFO, **_alert_fields(alert))
            return
        recipients = ", ".join(filter(None, [message["To"], message["Bcc"]]))
        try:
            await asyncio.to_thread(smtp.send, self.smtp, message)
        except (OSError, smtplib.SMTPException) as error:
            text = f"{type(error).__name__}: {error}"[:error_length_max]
            delay_s = backoff_s(alert.attempts, self.settings)
            status = await self._record_until(
                claim_ends_at_s,
                "mail/alert_failed",
                id=alert.id,
                error=text,
                delay_s=delay_s,
                attempts_max=self.settings.mail_attempts_max,
            )
            if status == "dead":
                report.dead += 1
            else:
                report.failed += 1
            report.errors.append(text)
            if status == "dead":
                log_event(
                    "mail_dead",
                    logging.ERROR,
                    **_alert_fields(alert),
                    attempts=alert.attempts,
                    error=loggable_error(error),
                )
            else:
                # status None: our lease ran out and another worker owns the row now.
                log_event(
                    "mail_failed",
                    logging.WARNING,
                    **_alert_fields(alert),
                    attempts=alert.attempts,
                    status=status,
                    retry_in_s=round(delay_s, 1),
                    error=loggable_error(error),
                )
            return
        await self._record_until(claim_ends_at_s, "mail/alert_sent", id=alert.id, recipients=recipients)
        report.sent += 1
        log_event(
            "mail_sent", logging.INFO, **_alert_fields(alert), attempts=alert.attempts, message_id=message["Message-ID"]
        )

    async def _record(self, statement: str, **params: object) -> str | None:
        """Run the outcome statement db/queries/<statement>.sql for one claimed alert."""
        return await record(self._connect, self.worker_id, statement, **params)

    async def _record_until(self, claim_ends_at_s: float, statement: str, **params: object) -> str | None:
        return await record_until(self._connect, self.worker_id, self.settings, claim_ends_at_s, statement, **params)

    async def deliver_due(self, limit: int = claim_batch_size_max) -> Report:
        """One pass: claim what is due (up to limit) and send it, in claim order."""
        report = Report()
        claimed_at_s = time.monotonic()
        for alert in await self.claim(limit):
            await self.deliver(alert, report, claimed_at_s + self.settings.mail_lease_s)
        return report

    async def flush(self, rounds_max: int = 1000) -> Report:
        """Send until nothing is due (what failed waits for its next attempt), e-mails and
        then webhooks, in one report."""
        total = Report()
        for _ in range(rounds_max):
            report = await self.deliver_due()
            total.add(report)
            if report.handled < claim_batch_size_max:
                break
        total.add(await self.webhooks.flush(rounds_max))
        return total

    async def run_forever(self) -> None:
        # Side by side: a receiver that times out must not hold the e-mails back, nor SMTP the webhooks.
        await asyncio.gather(self._mail_forever(), self.webhooks.run_forever())

    async def _mail_forever(self) -> None:
        while True:
            try:
                report = await self.deliver_due()
            except DatabaseUnavailable as error:
                log_event("outbox_failed", logging.WARNING, error=str(error))
                report = Report()
            except Exception as error:  # a dead worker would leave every alert unsent
                log_event("outbox_failed", logging.ERROR, error=repr(error))
                report = Report()
            if report.handled < claim_batch_size_max:
                await asyncio.sleep(self.settings.mail_poll_interval_s)


# -- what admins see and do ----------------------------------------------------------

statuses = ("pending", "sending", "sent", "failed", "dead", "no_address", "covered")


async def list_alerts(
    connection: AsyncConnection, *, status: str | None, user_id: str | None, limit: int, offset: int
) -> tuple[list[dict], int]:
    """A page of alerts, newest first, and how many match in all. Each alert carries its
    webhook deliveries (`webhooks`: channel, status, attempts, last error), none without webhooks."""
    params = {"status": status, "user": user_id, "limit": limit, "offset": offset}
    rows, total = await fetch_page(
        connection, columns="mail/alert_columns", rows="mail/alerts_rows", order_by="db/newest_first", params=params
    )
    deliveries: dict[int, list[dict]] = {row["id"]: [] for row in rows}
    if rows:
        async with connection.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(sql("mail/webhook_deliveries_of_alerts"), {"alert_ids": list(deliveries)})
            for delivery in await cursor.fetchall():
                deliveries[delivery.pop("alert_id")].append(delivery)
    return [{**row, "webhooks": deliveries[row["id"]]} for row in rows], total


async def retry_dead(connection: AsyncConnection, alert_id: int) -> tuple[dict | None, str | None]:
    """Re-queue a dead alert with a fresh set of attempts. Returns (alert, previous status)."""
    async with connection.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(sql("mail/retry_dead_alert"), {"id": alert_id})
        row = await cursor.fetchone()
    if row is None:
        return None, None
    return row, row.pop("previous_status")


async def retry_dead_webhooks(connection: AsyncConnection, alert_id: int) -> list[str]:
    """Re-queue the dead webhook deliveries of an alert; returns their channels."""
    cursor = await connection.execute(sql("mail/retry_dead_webhooks"), {"id": alert_id})
    return sorted(channel for (channel,) in await cursor.fetchall())


async def requeue_dead(connection: AsyncConnection, alert_id: int, actor: str) -> dict:
    """An admin's retry of a dead alert (its e-mail, its webhook deliveries, or both), with its
    audit row, in one transaction; NotFound for an unknown id, Conflict when nothing of it is dead."""
    async with connection.transaction():
        row, previous = await retry_dead(connection, alert_id)
        if row is None:
            raise NotFound(f"no alert with id {alert_id}", "alert_not_found")
        channels = await retry_dead_webhooks(connection, alert_id)
        if previous != "dead" and not channels:
            raise Conflict(f"only dead alerts can be retried; alert {alert_id} is {previous}", "alert_not_dead")
        details: dict[str, object] = {"alert_id": alert_id}
        if channels:
            details["webhooks"] = channels
        await audit.record(connection, actor=actor, action="alert.retry", user_id=row["user_id"], details=details)
    log_event("alert_requeued", alert_id=alert_id, user_id=row["user_id"], actor=actor, webhooks=channels)
    return row
