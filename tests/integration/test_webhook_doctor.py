"""`solaris doctor`'s webhooks check, against Postgres: webhook deliveries that are dead, or
waiting longer than the outbox's backlog age, fail it as dead or late e-mails fail the
outbox check. The deliveries are real ones: an alert raised by the ledger's functions, fanned
out by migration 0012's trigger, posted by the webhook sender to a receiver on loopback."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from solaris_hooks.admin import doctor
from solaris_hooks.mail.webhook_outbox import WebhookOutbox
from tests.support.alerts import alert_fields, spend
from tests.support.event_loop import run_with_service
from tests.support.webhook_receiver import WebhookReceiver

secret = "whsec-" + uuid.uuid4().hex


@pytest.fixture
def receiver() -> WebhookReceiver:
    started = WebhookReceiver().start()
    yield started
    started.stop()


def deliver_an_80_percent_alert(database_url: str, receiver: WebhookReceiver, user_id: str) -> list[str]:
    """Raise the user's 80 % alert with one json webhook configured and let the sender post it
    once; returns the statuses of the user's deliveries after that pass."""
    webhook = {"url": receiver.url("/alerts"), "format": "json", "secret": secret, "name": "ops"}

    async def scenario(service) -> None:
        webhooks = WebhookOutbox(service.connection, service.settings)
        await webhooks.sync_channels()  # as the sender does at start: the alert fans out to "ops"
        await spend(service, user_id, 810)
        await webhooks.flush()

    run_with_service(database_url, scenario, **alert_fields(alert_webhooks=[webhook]))
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT d.status FROM solaris.webhook_deliveries d JOIN solaris.alerts a ON a.id = d.alert_id"
            " WHERE a.user_id = %s",
            (user_id,),
        ).fetchall()
    return [status for (status,) in rows]


def check(database_url: str, name: str) -> doctor.CheckResult:
    (result,) = [result for result in doctor.run_checks(lambda: database_url) if result.name == name]
    return result


class TestWebhooksCheck:
    def test_a_delivered_webhook_alert_passes(self, own_database, receiver, user_id):
        """The receiver answered 200: no backlog, no dead letters."""
        assert deliver_an_80_percent_alert(own_database, receiver, user_id) == ["sent"]
        assert check(own_database, "webhooks") == doctor.CheckResult("webhooks", True, "no backlog, no dead letters")

    def test_a_dead_delivery_fails_the_check_and_says_where_to_look(self, own_database, receiver, user_id):
        """A 410 is dead at once: the webhooks line fails with one dead; the e-mail of the same
        alert, new and unsent, leaves the outbox line passing."""
        receiver.answer = 410
        assert deliver_an_80_percent_alert(own_database, receiver, user_id) == ["dead"]
        result = check(own_database, "webhooks")
        assert not result.ok
        assert result.detail == "0 webhook delivery(ies) waiting over 60 min, 1 dead (see GET /solaris/alerts)"
        assert check(own_database, "outbox").ok

    def test_a_delivery_failing_for_over_an_hour_fails_the_check(self, own_database, user_id):
        """No receiver at all: the delivery fails and waits for its retry; an hour and more later
        (its row made older) it is a backlog."""
        nobody = WebhookReceiver()  # a free port, never started
        assert deliver_an_80_percent_alert(own_database, nobody, user_id) == ["failed"]
        assert check(own_database, "webhooks").ok  # failing for a moment is not a finding yet
        with psycopg.connect(own_database, autocommit=True) as connection:
            connection.execute("UPDATE solaris.webhook_deliveries SET created_at = now() - interval '61 minutes'")
        result = check(own_database, "webhooks")
        assert not result.ok
        assert result.detail == "1 webhook delivery(ies) waiting over 60 min, 0 dead (see GET /solaris/alerts)"
