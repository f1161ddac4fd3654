"""Usage alerts: raised once in the ledger's transaction and delivered through a real SMTP server.

Rendering and SMTP settings: tests/unit/test_alerts.py."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest

from solaris_hooks.db import ledger
from solaris_hooks.mail.outbox import Outbox, Report, retry_dead
from solaris_hooks.quota.service import QuotaService
from tests.support import ledger_calls
from tests.support.alerts import alert_fields, smtp_for, spend, thresholds
from tests.support.event_loop import run_with_service
from tests.support.harness import MailCatcher, free_port, html_part, text_part


async def refuse(service: QuotaService, user_id: str, tokens: int) -> str:
    async with service.connection() as connection:
        reservation = await ledger_calls.reserve(
            connection, user_id, uuid.uuid4().hex, tokens, minimum_tokens=tokens, factor=1.0, thresholds=thresholds
        )
    return reservation.outcome


async def alerts_of(service: QuotaService, user_id: str) -> list[tuple]:
    async with service.connection() as connection:
        cursor = await connection.execute(
            "SELECT kind, threshold, status FROM solaris.alerts WHERE user_id = %s ORDER BY id", (user_id,)
        )
        return [
            (kind, None if level is None else float(level), status) for kind, level, status in await cursor.fetchall()
        ]


@pytest.fixture
def user_id() -> str:
    return f"alert-{uuid.uuid4().hex[:10]}@example.com"


@pytest.fixture
def catcher():
    server = MailCatcher().start()
    yield server
    server.stop()


class TestThresholds:
    def test_crossing_80_then_95_raises_one_alert_each(self, own_database, user_id):
        """Spending past 80 %, within it, then past 95 %: two alerts, in that order."""

        async def scenario(service):
            for tokens in (700, 150, 20, 100):  # 70 %, 85 %, 87 %, 97 %
                await spend(service, user_id, tokens)
            return await alerts_of(service, user_id)

        assert run_with_service(own_database, scenario, **alert_fields()) == [
            ("usage", 0.8, "pending"),
            ("usage", 0.95, "pending"),
        ]

    def test_a_jump_over_several_thresholds_sends_only_the_highest(self, own_database, user_id):
        """0 → 96 % in one call: the 95 % alert is sent, the 80 % one recorded as covered."""

        async def scenario(service):
            await spend(service, user_id, 960)
            return await alerts_of(service, user_id)

        assert run_with_service(own_database, scenario, **alert_fields()) == [
            ("usage", 0.8, "covered"),
            ("usage", 0.95, "pending"),
        ]

    def test_reaching_100_percent_raises_the_block_notice(self, own_database, user_id):
        """A settle that uses the whole allowance raises the 1.0 alert, covering those passed over."""

        async def scenario(service):
            await spend(service, user_id, 850)
            await spend(service, user_id, 150)
            return await alerts_of(service, user_id)

        assert run_with_service(own_database, scenario, **alert_fields()) == [
            ("usage", 0.8, "pending"),
            ("usage", 0.95, "covered"),
            ("usage", 1.0, "pending"),
        ]

    def test_a_refusal_past_the_last_warning_raises_the_block_notice_once(self, own_database, user_id):
        """At 96 % a refused call means the user is blocked: one notice, however often refused."""

        async def scenario(service):
            await spend(service, user_id, 960)
            outcomes = [await refuse(service, user_id, 100) for _ in range(3)]
            return outcomes, await alerts_of(service, user_id)

        outcomes, alerts = run_with_service(own_database, scenario, **alert_fields())
        assert outcomes == ["exhausted"] * 3
        assert alerts == [("usage", 0.8, "covered"), ("usage", 0.95, "pending"), ("usage", 1.0, "pending")]

    def test_a_refusal_well_before_the_end_raises_nothing(self, own_database, user_id):
        """A prompt too big for the 50 % left is refused without telling the user they are blocked."""

        async def scenario(service):
            await spend(service, user_id, 500)
            assert await refuse(service, user_id, 800) == "exhausted"
            return await alerts_of(service, user_id)

        assert run_with_service(own_database, scenario, **alert_fields()) == []

    def test_credits_re_arm_the_thresholds(self, own_database, user_id):
        """After a credit brings usage under 80 %, crossing it again alerts again; a receipt is queued."""

        async def scenario(service):
            await spend(service, user_id, 850)
            async with service.connection() as connection:
                await ledger.credit(
                    connection,
                    user_id=user_id,
                    tokens=1000,
                    default_tokens=1000,
                    actor="t",
                    reason="r",
                    thresholds=thresholds,
                )
            await spend(service, user_id, 800)  # 1650 / 2000 = 82.5 %
            return await alerts_of(service, user_id)

        assert run_with_service(own_database, scenario, **alert_fields()) == [
            ("usage", 0.8, "pending"),
            ("credit", None, "pending"),
            ("usage", 0.8, "pending"),
        ]

    def test_a_small_credit_keeps_what_is_still_true(self, own_database, user_id):
        """A credit that leaves usage above 80 % does not re-send the 80 % alert."""

        async def scenario(service):
            await spend(service, user_id, 960)
            async with service.connection() as connection:
                await ledger.credit(
                    connection,
                    user_id=user_id,
                    tokens=50,
                    default_tokens=1000,
                    actor="t",
                    reason="r",
                    thresholds=thresholds,
                )
            await spend(service, user_id, 5)
            return await alerts_of(service, user_id)

        alerts = run_with_service(own_database, scenario, **alert_fields())
        assert [alert for alert in alerts if alert[0] == "usage" and alert[2] == "pending"] == [
            ("usage", 0.95, "pending")
        ]


async def queue_alerts(service: QuotaService, user_id: str, *spends: int) -> None:
    for tokens in spends:
        await spend(service, user_id, tokens)


class TestOutbox:
    def test_80_and_95_are_each_delivered_once_with_the_right_numbers(self, own_database, user_id, catcher):
        """Two alerts, two e-mails, each with the numbers of its crossing in both parts."""

        async def scenario(service):
            outbox = Outbox(service.connection, service.settings, smtp_for(catcher.port))
            await spend(service, user_id, 810)
            await outbox.flush()
            await spend(service, user_id, 150)
            await outbox.flush()
            await outbox.flush()
            return await alerts_of(service, user_id)

        alerts = run_with_service(own_database, scenario, **alert_fields())
        assert alerts == [("usage", 0.8, "sent"), ("usage", 0.95, "sent")]
        first, second = catcher.to(user_id)
        assert (
            "80%" in first["Subject"]
            and "810 dos 1000" in text_part(first)
            and "<strong>190</strong>" in html_part(first)
        )
        assert (
            "95%" in second["Subject"]
            and "960 dos 1000" in text_part(second)
            and "<strong>40</strong>" in html_part(second)
        )

    def test_the_block_notice_names_the_credits_address_and_copies_admins(self, own_database, user_id, catcher):
        """At 100 % the user is told whom to write to; ADMIN_EMAILS get a Bcc."""

        async def scenario(service):
            smtp = smtp_for(catcher.port, admin_emails=("chefe@example.com",))
            await spend(service, user_id, 1000)
            await Outbox(service.connection, service.settings, smtp).flush()

        run_with_service(own_database, scenario, **alert_fields())
        (notice,) = catcher.to(user_id)
        assert "acabou" in notice["Subject"]
        assert "creditos@example.com" in text_part(notice)
        assert 'href="mailto:creditos@example.com"' in html_part(notice)
        assert catcher.to("chefe@example.com") == [notice]
        assert "chefe@example.com" not in notice["To"]

    def test_a_credit_sends_a_receipt(self, own_database, user_id, catcher):
        """An admin credit e-mails the user how much was added and what is left."""

        async def scenario(service):
            async with service.connection() as connection:
                await ledger.credit(
                    connection,
                    user_id=user_id,
                    tokens=500,
                    default_tokens=1000,
                    actor="t",
                    reason="r",
                    thresholds=thresholds,
                )
            await Outbox(service.connection, service.settings, smtp_for(catcher.port)).flush()

        run_with_service(own_database, scenario, **alert_fields())
        (receipt,) = catcher.to(user_id)
        assert "500 tokens" in receipt["Subject"]
        assert "restam 1500" in text_part(receipt)

    def test_an_smtp_outage_is_retried_then_delivered_once(self, own_database, user_id):
        """Mail server down: the alert fails and waits; once it is back, exactly one e-mail arrives."""
        port = free_port()

        async def scenario(service):
            outbox = Outbox(service.connection, service.settings, smtp_for(port))
            await spend(service, user_id, 850)
            down = await outbox.flush()
            failed = await alerts_of(service, user_id)
            catcher = MailCatcher(port).start()
            try:
                await asyncio.sleep(0.25)  # past the backoff
                up = await outbox.flush()
                again = await outbox.flush()
                return down, failed, up, again, await alerts_of(service, user_id), catcher.to(user_id)
            finally:
                catcher.stop()

        down, failed, up, again, alerts, received = run_with_service(own_database, scenario, **alert_fields())
        assert (down.failed, down.sent) == (1, 0) and "Connection refused" in down.errors[0]
        assert failed == [("usage", 0.8, "failed")]
        assert (up.sent, again.handled) == (1, 0)
        assert alerts == [("usage", 0.8, "sent")]
        assert len(received) == 1

    def test_after_the_last_attempt_an_alert_is_dead_and_can_be_requeued(self, own_database, user_id, catcher):
        """attempts_max failures make it dead; retry_dead puts it back and it is delivered."""

        async def scenario(service):
            broken = Outbox(service.connection, service.settings, smtp_for(free_port()))
            await spend(service, user_id, 850)
            for _ in range(3):
                await asyncio.sleep(0.25)
                await broken.flush()
            dead = await alerts_of(service, user_id)
            async with service.connection() as connection:
                alert_id = (
                    await (
                        await connection.execute("SELECT id FROM solaris.alerts WHERE user_id = %s", (user_id,))
                    ).fetchone()
                )[0]
                row, previous = await retry_dead(connection, alert_id)
            await Outbox(service.connection, service.settings, smtp_for(catcher.port)).flush()
            return dead, previous, row, await alerts_of(service, user_id)

        dead, previous, row, alerts = run_with_service(own_database, scenario, **alert_fields(mail_attempts_max=3))
        assert dead == [("usage", 0.8, "dead")]
        assert previous == "dead" and row["status"] == "pending" and row["attempts"] == 0
        assert alerts == [("usage", 0.8, "sent")]
        assert len(catcher.to(user_id)) == 1

    def test_two_workers_never_deliver_the_same_alert_twice(self, own_database, catcher):
        """Two outboxes on one database, flushing at once: every alert arrives exactly once."""
        users = [f"pair-{index}-{uuid.uuid4().hex[:6]}@example.com" for index in range(20)]

        async def scenario(service):
            for user in users:
                await spend(service, user, 850)
            workers = [
                Outbox(service.connection, service.settings, smtp_for(catcher.port), worker_id=f"w{n}")
                for n in range(2)
            ]
            return await asyncio.gather(*(worker.flush() for worker in workers))

        reports = run_with_service(own_database, scenario, **alert_fields())
        assert sum(report.sent for report in reports) == 20
        received = [message for user in users for message in catcher.to(user)]
        assert len(received) == 20
        assert len({message["Message-ID"] for message in received}) == 20

    def test_a_crash_between_claim_and_send_still_delivers(self, own_database, user_id, catcher):
        """A worker that claimed and died: its lease runs out, another worker delivers, once."""

        async def scenario(service):
            await spend(service, user_id, 850)
            # Its mail server is unreachable, so when it comes back its only effect is a failure report.
            crashed = Outbox(service.connection, service.settings, smtp_for(free_port()), worker_id="crashed")
            claimed = await crashed.claim()
            assert [alert.user_id for alert in claimed if alert.user_id == user_id] == [user_id]
            survivor = Outbox(service.connection, service.settings, smtp_for(catcher.port), worker_id="survivor")
            before_expiry = await survivor.flush()
            await asyncio.sleep(1.2)
            after_expiry = await survivor.flush()
            # The crashed worker comes back and reports a failure: too late, nothing changes.
            await crashed.deliver([alert for alert in claimed if alert.user_id == user_id][0], Report())
            return before_expiry, after_expiry, await alerts_of(service, user_id)

        before, after, alerts = run_with_service(own_database, scenario, **alert_fields(mail_lease_s=1))
        assert before.sent == 0 and after.sent >= 1
        assert alerts == [("usage", 0.8, "sent")]
        assert len(catcher.to(user_id)) == 1

    def test_an_alert_without_address_is_recorded_and_not_retried(self, own_database, catcher):
        """A user known only by a LibreChat id gets no e-mail: status no_address, once."""
        user = "65f0c0ffee" + uuid.uuid4().hex[:14]

        async def scenario(service):
            outbox = Outbox(service.connection, service.settings, smtp_for(catcher.port))
            await spend(service, user, 850)
            first = await outbox.flush()
            second = await outbox.flush()
            return first, second, await alerts_of(service, user)

        first, second, alerts = run_with_service(own_database, scenario, **alert_fields())
        assert (first.no_address, second.handled) == (1, 0)
        assert alerts == [("usage", 0.8, "no_address")]

    def test_smtp_passwords_never_reach_the_logs(self, own_database, user_id, caplog):
        """A login the server refuses is logged with the alert id, never with the password."""
        from aiosmtpd.smtp import AuthResult

        password = "s3cr3t-" + uuid.uuid4().hex
        catcher = MailCatcher(
            auth_require_tls=False, authenticator=lambda *args: AuthResult(success=False, handled=False)
        ).start()

        async def scenario(service):
            smtp = smtp_for(catcher.port, username="quota", password=password)
            await spend(service, user_id, 850)
            return await Outbox(service.connection, service.settings, smtp).flush()

        try:
            with caplog.at_level(logging.INFO, logger="solaris_hooks"):
                report = run_with_service(own_database, scenario, **alert_fields())
        finally:
            catcher.stop()
        assert report.failed == 1
        assert "mail_failed" in caplog.text and user_id in caplog.text
        assert password not in caplog.text
        assert password not in repr(smtp_for(25, username="u", password=password))
