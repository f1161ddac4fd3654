"""Database outage (issue 7), in this process: spooled usage charged once in a real ledger,
and a Postgres of our own (pgserver) that the tests stop and start with pg_ctl under a
service. The spool on its own: tests/unit/test_outage.py; a proxy: tests/e2e/test_outage.py."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from decimal import Decimal

import psycopg
import pytest
from litellm.proxy._types import UserAPIKeyAuth

from solaris_hooks.admin.doctor import diagnose, overspend_invariant
from solaris_hooks.db import ledger
from solaris_hooks.exceptions import DatabaseUnavailable
from solaris_hooks.mail.outbox import Outbox
from solaris_hooks.mail.smtp import SmtpSettings
from solaris_hooks.quota.service import QuotaService
from tests.support import ledger_calls
from tests.support.event_loop import run_with_service
from tests.support.harness import MailCatcher, StoppablePostgres, assert_ledger_consistent
from tests.support.ledger_sql import settle_rows
from tests.support.spool_files import entry, segments
from tests.support.suite import (
    charged,
)

# -- the spool file on its own -----------------------------------------------------------


# -- charging spooled usage in a real ledger -----------------------------------------------


async def reserve(service: QuotaService, user_id: str, call_id: str, wanted_tokens: int = 50) -> None:
    async with service.connection() as connection:
        outcome = await ledger_calls.reserve(connection, user_id, call_id, wanted_tokens, ttl_s=900)
    assert outcome.outcome == "reserved"


async def resolve(service: QuotaService, call_id: str, kind: str) -> None:
    async with service.connection() as connection:
        await ledger.resolve(connection, call_id=call_id, kind=kind)


async def database_answers(service: QuotaService, timeout_s: float = 30) -> None:
    """Wait until the service gets a working connection again."""
    deadline_s = time.monotonic() + timeout_s
    while True:
        try:
            async with service.connection() as connection:
                await connection.execute("SELECT 1")
            return
        except DatabaseUnavailable:
            if time.monotonic() > deadline_s:
                raise
            await asyncio.sleep(0.1)


async def account(service: QuotaService, user_id: str) -> ledger.Balance:
    async with service.connection() as connection:
        found = await ledger.balance(connection, user_id)
    assert found is not None
    return found


# The master key: it may name the end user of a call.
master_key_auth = UserAPIKeyAuth(api_key="litellm_proxy_master_key")


class TestSettleSpooled:
    def test_a_pending_reservation_is_settled_at_its_own_factor_once(self, own_database):
        """The reservation's factor wins over the entry's; a second charge changes nothing."""
        user_id, call_id = f"pend-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex

        async def scenario(service):
            await reserve(service, user_id, call_id)
            first = await service.charge_spooled(entry(call_id, 101, user_id=user_id, factor=9.0))
            again = await service.charge_spooled(entry(call_id, 101, user_id=user_id, factor=9.0))
            return first, again, await account(service, user_id)

        first, again, after = run_with_service(own_database, scenario)
        assert (first.state, first.charged_tokens) == ("settled", 51)  # ceil(101 × 0.5)
        assert again.charged_tokens == 0
        assert (after.debited_tokens, after.reserved_tokens) == (51, 0)

    def test_an_unreserved_call_provisions_and_may_overspend(self, own_database):
        """A fail-open call of a new user: default grant, then the full charge, even past the allowance."""
        user_id, call_id = f"open-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex

        async def scenario(service):
            first = await service.charge_spooled(entry(call_id, 3000, user_id=user_id, factor=0.376))
            again = await service.charge_spooled(entry(call_id, 3000, user_id=user_id, factor=0.376))
            return first, again, await account(service, user_id)

        first, again, after = run_with_service(own_database, scenario, default_tokens_per_user=1000)
        assert first.charged_tokens == 1128 and again.charged_tokens == 0  # ceil(3000 × 0.376)
        assert (after.credited_tokens, after.debited_tokens, after.reserved_tokens) == (1000, 1128, 0)
        assert after.remaining_tokens == -128
        with psycopg.connect(own_database) as connection:
            reason, thresholds = connection.execute(
                """SELECT (SELECT reason FROM solaris.ledger WHERE call_id = %s AND kind = 'settle'),
                          (SELECT array_agg(threshold ORDER BY threshold) FROM solaris.alerts
                            WHERE user_id = %s AND kind = 'usage')""",
                (call_id, user_id),
            ).fetchone()
        assert "unmetered" in reason
        assert thresholds[-1] == 1  # the block notice, as a settle that crossed 100 % would raise
        # Doctor shows the overspend and the call that made it; an admin credit settles it.
        overspent = [finding for finding in diagnose(own_database) if finding.invariant == overspend_invariant]
        assert overspent and overspent[0].rows[0][0] == user_id and call_id in str(overspent[0].rows[0])

        async def credit(service):
            async with service.connection() as connection:
                await ledger.credit(
                    connection,
                    user_id=user_id,
                    tokens=128,
                    default_tokens=1000,
                    actor="test",
                    reason="overspend of an unmetered call",
                )

        run_with_service(own_database, credit)

    def test_an_expired_reservation_gets_a_late_settle(self, own_database):
        """The sweeper returned the reservation during the outage; the usage is still charged, once."""
        user_id, call_id = f"late-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex

        async def scenario(service):
            await reserve(service, user_id, call_id)
            await resolve(service, call_id, "expire")
            first = await service.charge_spooled(entry(call_id, 40))
            again = await service.charge_spooled(entry(call_id, 40))
            return first, again, await account(service, user_id)

        first, again, after = run_with_service(own_database, scenario)
        assert (first.charged_tokens, again.charged_tokens) == (20, 0)
        assert (after.debited_tokens, after.reserved_tokens) == (20, 0)
        assert_ledger_consistent(own_database)

    def test_a_call_already_settled_is_not_charged_again(self, own_database):
        """The first write committed before the connection broke: the replay changes nothing."""
        user_id, call_id = f"done-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex

        async def scenario(service):
            await reserve(service, user_id, call_id)
            async with service.connection() as connection:
                await ledger.resolve(connection, call_id=call_id, kind="settle", raw_tokens=10)
            before = await account(service, user_id)
            again = await service.charge_spooled(entry(call_id, 10, user_id=user_id, factor=0.5))
            return before, again, await account(service, user_id)

        before, again, after = run_with_service(own_database, scenario)
        assert again.charged_tokens == 0
        assert after == before

    def test_a_released_call_with_spooled_usage_is_charged_once(self, own_database):
        """A result after a release is owed (a late settle, as a late success event is); a second replay adds
        nothing."""
        user_id, call_id = f"rel-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex

        async def scenario(service):
            await reserve(service, user_id, call_id)
            async with service.connection() as connection:
                await ledger.resolve(connection, call_id=call_id, kind="release")
            first = await service.charge_spooled(entry(call_id, 10, user_id=user_id, factor=0.5))
            again = await service.charge_spooled(entry(call_id, 10, user_id=user_id, factor=0.5))
            return first, again, await account(service, user_id)

        first, again, after = run_with_service(own_database, scenario)
        assert (first.charged_tokens, again.charged_tokens) == (5, 0)  # at the reservation's factor, 0.5
        assert (after.debited_tokens, after.reserved_tokens) == (5, 0)

    def test_a_settle_with_no_reservation_and_no_user_is_left_unmatched(self, own_database):
        """Nobody to charge: state unknown, no ledger row."""
        result = run_with_service(own_database, lambda service: service.charge_spooled(entry()))
        assert (result.state, result.charged_tokens) == ("unknown", 0)


class TestReplay:
    def test_a_crash_between_replay_and_delete_charges_nothing_twice(self, own_database, tmp_path):
        """The segment survives its replay (crash before unlink); a restarted process replays it again."""
        user_id = f"crash-{uuid.uuid4().hex[:8]}"
        pending_call, unmetered_call = uuid.uuid4().hex, uuid.uuid4().hex

        async def first_process(service):
            await reserve(service, user_id, pending_call)
            service.spool.append(entry(pending_call, 30))  # a settle that failed
            service.spool.append(entry(unmetered_call, 60, user_id=user_id, factor=0.376))  # fail-open call
            service.spool.seal()
            kept = {path.name: path.read_bytes() for path in segments(tmp_path)}
            replayed = await service.replay_once()
            for name, content in kept.items():  # the crash: the segment is back as if never deleted
                (tmp_path / name).write_bytes(content)
            return replayed, await account(service, user_id)

        async def restarted_process(service):
            return await service.replay_once(), await account(service, user_id)

        replayed, after_first = run_with_service(own_database, first_process, spool_dir=str(tmp_path))
        replayed_again, after_restart = run_with_service(own_database, restarted_process, spool_dir=str(tmp_path))
        expected = charged(30, Decimal("0.5")) + charged(60)
        assert (replayed, replayed_again) == (2, 2)
        assert after_first.debited_tokens == after_restart.debited_tokens == expected
        assert after_restart.reserved_tokens == 0
        assert segments(tmp_path) == []
        assert sorted(count for _, count in settle_rows(own_database, user_id)) == [1, 1]

    def test_the_sweeper_replays_before_it_expires(self, own_database, tmp_path):
        """A spooled settle finds its reservation pending even when the reservation is past due."""
        user_id, call_id = f"sweep-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex

        async def scenario(service):
            await reserve(service, user_id, call_id)
            async with service.connection() as connection:
                await connection.execute(
                    "UPDATE solaris.reservations SET expires_at = now() WHERE call_id = %s", (call_id,)
                )
            service.spool.append(entry(call_id, 30))
            expired = await service.sweep_once()
            async with service.connection() as connection:
                state = (
                    await (
                        await connection.execute(
                            "SELECT state FROM solaris.reservations WHERE call_id = %s", (call_id,)
                        )
                    ).fetchone()
                )[0]
            return expired, state

        assert run_with_service(own_database, scenario, spool_dir=str(tmp_path)) == (0, "settled")


@pytest.fixture
def stoppable_postgres(tmp_path_factory) -> StoppablePostgres:
    server = StoppablePostgres(tmp_path_factory.mktemp("pg-outage"))
    yield server
    server.start()
    server.close()


class TestRecovery:
    def test_a_settle_during_an_outage_is_spooled_and_charged_when_postgres_returns(self, stoppable_postgres, tmp_path):
        """settle_call spools instead of failing; the replay charges it and logs database_recovered."""
        url, user_id, call_id = stoppable_postgres.url, f"rec-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
        lines: list[dict] = []
        handler = logging.Handler()
        handler.emit = lambda record: lines.append(json.loads(record.getMessage()))  # type: ignore[method-assign]
        logger = logging.getLogger("solaris_hooks")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)

        async def scenario(service):
            data = {
                "model": "m",
                "messages": [{"role": "user", "content": "oi"}],
                "litellm_call_id": call_id,
                "max_tokens": 50,
                "proxy_server_request": {"headers": {"x-litellm-end-user-id": user_id}},
            }
            await service.reserve_call(data, "acompletion", master_key_auth)
            stoppable_postgres.stop()
            # The call id is ours now, not the one the request came with.
            spooled = await service.settle_call(data["litellm_call_id"], 80, "m", 0.001)
            with pytest.raises(DatabaseUnavailable):
                await service.replay_once()
            stoppable_postgres.start()
            # Not the first try after the restart: the pool may still be waiting out its
            # reconnect backoff (up to reconnect_timeout, ~2 s), and while the outage lasts a
            # caller waits only outage_wait_s (0.5 s) for a connection, so on a loaded machine
            # that try can fail by design. What is tested is the replay once Postgres answers.
            await database_answers(service)
            replayed = await service.replay_once()
            return spooled, replayed, await account(service, user_id)

        try:
            # Leases off: the per-call settle that spools (with leases on it waits in the batch journal).
            spooled, replayed, after = run_with_service(
                url, scenario, spool_dir=str(tmp_path), db_timeout_s=1, leases=False
            )
        finally:
            logger.removeHandler(handler)
        assert spooled is None and replayed == 1
        assert (after.debited_tokens, after.reserved_tokens) == (charged(80), 0)
        events = {line["event"]: line for line in lines}
        assert events["usage_spooled"]["user_id"] == user_id and events["usage_spooled"]["raw_tokens"] == 80
        assert events["database_recovered"]["replayed_entries"] == 1
        assert events["database_recovered"]["down_s"] > 0
        assert_ledger_consistent(url)

    def test_an_unmetered_call_that_ends_after_the_outage_is_charged_directly(self, stoppable_postgres, tmp_path):
        """fail_mode open: reserved nothing while Postgres was down, succeeded once it was back."""
        url, user_id, call_id = stoppable_postgres.url, f"direct-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex

        async def scenario(service):
            data = {
                "model": "m",
                "messages": [{"role": "user", "content": "oi"}],
                "litellm_call_id": call_id,
                "proxy_server_request": {"headers": {"x-litellm-end-user-id": user_id}},
            }
            stoppable_postgres.stop()
            try:
                assert await service.reserve_call(data, "acompletion", master_key_auth) is None
                assert await service.release_call(call_id + "-other") == ledger.Resolution("unknown", 0)
            finally:
                stoppable_postgres.start()
            # "After the outage": once this service's pool reaches the restarted server again
            # (right after a restart a loaded machine can still refuse the first connection,
            # and the settle would then go to the spool, a case of its own tested elsewhere).
            await database_answers(service)
            resolution = await service.settle_call(data["litellm_call_id"], 90, "m", None)
            return resolution, await account(service, user_id)

        resolution, after = run_with_service(url, scenario, spool_dir=str(tmp_path), db_timeout_s=1, fail_mode="open")
        assert (resolution.state, resolution.charged_tokens) == ("settled", charged(90))
        assert (after.credited_tokens, after.debited_tokens, after.reserved_tokens) == (1000, charged(90), 0)
        assert segments(tmp_path) == []
        assert_ledger_consistent(url)


# -- a real proxy while Postgres stops and starts -----------------------------------------


# -- the mail worker through an outage ------------------------------------------------------


class OutageOnDelivery(MailCatcher):
    """A mail server that, on the first message, stops Postgres and restarts it shortly:
    the worker has sent the e-mail but cannot record it yet."""

    def __init__(self, postgres: StoppablePostgres, down_s: float) -> None:
        super().__init__()
        self.postgres, self.down_s = postgres, down_s
        self.restarted = threading.Event()

    async def handle_DATA(self, server, session, envelope) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        if len(self.received) == 1:
            self.postgres.stop()

            def restart() -> None:
                time.sleep(self.down_s)
                self.postgres.start()
                self.restarted.set()

            threading.Thread(target=restart, daemon=True).start()
        return answer


class TestOutboxThroughAnOutage:
    def test_an_alert_sent_just_before_postgres_stops_is_recorded_once_it_returns(self, stoppable_postgres):
        """Sent, then the database goes: the worker keeps trying to record `sent` while its
        claim lasts, so the alert is not sent again when the lease runs out."""
        user_id = f"outbox-{uuid.uuid4().hex[:8]}@example.com"
        catcher = OutageOnDelivery(stoppable_postgres, down_s=1.5).start()
        smtp_settings = SmtpSettings(
            host="127.0.0.1", port=catcher.port, from_address="quota@solaris.example", timeout_s=5
        )

        async def scenario(service):
            call_id = uuid.uuid4().hex
            async with service.connection() as connection:
                await ledger_calls.reserve(connection, user_id, call_id, 810, factor=1.0, thresholds=[0.8, 0.95])
                await ledger.resolve(connection, call_id=call_id, kind="settle", raw_tokens=810, thresholds=[0.8, 0.95])
            report = await Outbox(service.connection, service.settings, smtp_settings).deliver_due()
            async with service.connection() as connection:
                cursor = await connection.execute(
                    "SELECT status, attempts FROM solaris.alerts WHERE user_id = %s", (user_id,)
                )
                return report, await cursor.fetchall()

        try:
            report, alerts = run_with_service(stoppable_postgres.url, scenario, db_timeout_s=1, mail_lease_s=30)
        finally:
            catcher.stop()
        assert catcher.restarted.wait(30), "Postgres was not restarted"
        assert (report.sent, report.failed, alerts) == (1, 0, [("sent", 1)])
        assert len(catcher.to(user_id)) == 1
