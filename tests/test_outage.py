"""Database outage (issue 7): Postgres stops under load and comes back.

fail_mode closed: every call gets a readable 503 while Postgres is down, and the proxy
recovers by itself. fail_mode open: calls go through, their usage waits in the spool, and
is charged once, and only once, when Postgres is back. Real parts only: a Postgres of our
own (pgserver) that the tests stop and start with pg_ctl, `solaris run` as a child
process, the fake provider, the official openai client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import psycopg
import pytest
from conftest import artifacts_dir, charged, master_key, proxy_env, proxy_settings, record_figure, write_proxy_config
from litellm.proxy._types import UserAPIKeyAuth

from solaris_hooks.admin.doctor import diagnose, overspend_invariant
from solaris_hooks.db import ledger
from solaris_hooks.db.migrations import migrate
from solaris_hooks.exceptions import DatabaseUnavailable
from solaris_hooks.mail.outbox import Outbox
from solaris_hooks.mail.smtp import SmtpSettings
from solaris_hooks.quota.service import QuotaService
from solaris_hooks.quota.spool import Spool, SpoolEntry, read_entries, rejected_name, segment_suffix
from solaris_hooks.settings import Settings
from tests.support.harness import MailCatcher, ProxyProcess, assert_ledger_consistent, wait_for

allowance = proxy_settings["default_tokens_per_user"]


class StoppablePostgres:
    """A pgserver of our own, so stopping it disturbs no other test."""

    def __init__(self, directory: Path) -> None:
        import pgserver

        self.server = pgserver.get_server(directory, cleanup_mode="delete")
        self.url = self.server.get_uri()
        migrate(self.url)

    def stop(self) -> None:
        from pgserver._commands import pg_ctl

        # -m fast: what a crash or a restart looks like to clients (their sessions are ended).
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user, timeout=30)

    def start(self) -> None:
        self.server.ensure_postgres_running()

    def close(self) -> None:
        self.server.cleanup()


def balance(url: str, user_id: str) -> tuple[int, int, int] | None:
    """(credited, debited, reserved) of a user."""
    with psycopg.connect(url) as connection:
        return connection.execute(
            "SELECT credited_tokens, debited_tokens, reserved_tokens FROM solaris.accounts WHERE user_id = %s",
            (user_id,),
        ).fetchone()


def settle_rows(url: str, user_id: str) -> list[tuple[str, int]]:
    with psycopg.connect(url) as connection:
        return connection.execute(
            "SELECT call_id, count(*) FROM solaris.ledger WHERE user_id = %s AND kind = 'settle' GROUP BY call_id",
            (user_id,),
        ).fetchall()


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*" + segment_suffix)) if directory.exists() else []


def ask(client: openai.OpenAI, user_id: str, text: str):
    # A small max_tokens keeps each reservation small, so concurrent calls fit the allowance.
    return client.chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": text}],
        max_tokens=40,
        extra_headers={"x-litellm-end-user-id": user_id},
    )


# -- the spool file on its own -----------------------------------------------------------


def entry(call_id: str | None = None, raw_tokens: int = 100, **fields) -> SpoolEntry:
    return SpoolEntry(call_id=call_id or uuid.uuid4().hex, raw_tokens=raw_tokens, **fields)


class TestSpool:
    def test_entries_come_back_in_order_and_the_segment_goes(self, tmp_path):
        """A replay charges every appended entry in order, then deletes the segment."""
        spool = Spool(tmp_path)
        written = [entry(raw_tokens=n, user_id="ana", factor=0.5, model="m") for n in (1, 2, 3)]
        for item in written:
            assert spool.append(item)
        assert spool.pending()
        charged_entries: list[SpoolEntry] = []

        async def charge(item: SpoolEntry) -> None:
            charged_entries.append(item)

        assert asyncio.run(spool.replay(charge)) == 3
        assert [(item.call_id, item.raw_tokens, item.user_id, item.factor) for item in charged_entries] == [
            (item.call_id, item.raw_tokens, item.user_id, item.factor) for item in written
        ]
        assert all(item.spooled_at for item in charged_entries)
        assert not spool.pending() and segments(tmp_path) == []

    def test_the_default_directory_is_under_the_data_dir(self, tmp_path):
        """spool_dir unset: SOLARIS_DATA_DIR/spool, else ./.solaris/spool."""
        assert Settings().spool_path({"SOLARIS_DATA_DIR": str(tmp_path)}) == tmp_path / "spool"
        assert Settings().spool_path({}) == Path(".solaris") / "spool"
        assert Settings(spool_dir="/var/lib/solaris/spool").spool_path({}) == Path("/var/lib/solaris/spool")

    def test_a_line_cut_by_a_crash_mid_write_is_skipped(self, tmp_path):
        """A torn last line (the writer died in os.write) costs that line only."""
        whole = entry(raw_tokens=7)
        (tmp_path / f"dead-1{segment_suffix}").write_bytes(whole.to_line() + entry().to_line()[:25])
        assert [item.call_id for item in read_entries(tmp_path / f"dead-1{segment_suffix}")] == [whole.call_id]
        seen: list[str] = []

        async def charge(item: SpoolEntry) -> None:
            seen.append(item.call_id)

        assert asyncio.run(Spool(tmp_path).replay(charge)) == 1
        assert seen == [whole.call_id]

    def test_an_outage_during_the_replay_keeps_the_segment(self, tmp_path):
        """DatabaseUnavailable stops the replay; the next one starts the segment over."""
        spool = Spool(tmp_path)
        for _ in range(3):
            spool.append(entry())
        calls: list[str] = []

        async def flaky(item: SpoolEntry) -> None:
            calls.append(item.call_id)
            if len(calls) == 2:
                raise DatabaseUnavailable("gone")

        with pytest.raises(DatabaseUnavailable):
            asyncio.run(spool.replay(flaky))
        assert len(segments(tmp_path)) == 1
        assert asyncio.run(spool.replay(flaky)) == 3
        assert segments(tmp_path) == []

    def test_a_segment_being_written_is_not_taken(self, tmp_path):
        """Another process's open segment (flock held) waits until its writer seals it."""
        writer, replayer = Spool(tmp_path), Spool(tmp_path)
        writer.append(entry())

        async def charge(item: SpoolEntry) -> None:
            pass

        assert asyncio.run(replayer.replay(charge)) == 0
        writer.seal()
        assert asyncio.run(replayer.replay(charge)) == 1

    def test_an_entry_that_cannot_be_charged_is_set_aside(self, tmp_path):
        """One bad entry goes to rejected.jsonl; the others are charged and the segment goes."""
        spool = Spool(tmp_path)
        bad, good = entry(raw_tokens=1), entry(raw_tokens=2)
        spool.append(bad)
        spool.append(good)

        async def charge(item: SpoolEntry) -> None:
            if item.call_id == bad.call_id:
                raise ValueError("broken")

        assert asyncio.run(spool.replay(charge)) == 1
        assert [item.call_id for item in read_entries(tmp_path / rejected_name)] == [bad.call_id]
        assert segments(tmp_path) == []


# -- charging spooled usage in a real ledger -----------------------------------------------


def run_service(url: str, scenario, **settings):
    async def main():
        service = QuotaService(Settings(**settings), url)
        try:
            return await scenario(service)
        finally:
            await service.close()

    return asyncio.run(main())


async def reserve(service: QuotaService, user_id: str, call_id: str, wanted_tokens: int = 50) -> None:
    async with service.connection() as connection:
        outcome = await ledger.reserve(
            connection,
            user_id=user_id,
            call_id=call_id,
            wanted_tokens=wanted_tokens,
            minimum_tokens=1,
            default_tokens=1000,
            ttl_s=900,
            model="m",
            factor=0.5,
        )
    assert outcome.outcome == "reserved"


async def resolve(service: QuotaService, call_id: str, kind: str) -> None:
    async with service.connection() as connection:
        await ledger.resolve(connection, call_id=call_id, kind=kind)


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

        first, again, after = run_service(own_database, scenario)
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

        first, again, after = run_service(own_database, scenario, default_tokens_per_user=1000)
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

        run_service(own_database, credit)

    def test_an_expired_reservation_gets_a_late_settle(self, own_database):
        """The sweeper returned the reservation during the outage; the usage is still charged, once."""
        user_id, call_id = f"late-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex

        async def scenario(service):
            await reserve(service, user_id, call_id)
            await resolve(service, call_id, "expire")
            first = await service.charge_spooled(entry(call_id, 40))
            again = await service.charge_spooled(entry(call_id, 40))
            return first, again, await account(service, user_id)

        first, again, after = run_service(own_database, scenario)
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

        before, again, after = run_service(own_database, scenario)
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

        first, again, after = run_service(own_database, scenario)
        assert (first.charged_tokens, again.charged_tokens) == (5, 0)  # at the reservation's factor, 0.5
        assert (after.debited_tokens, after.reserved_tokens) == (5, 0)

    def test_a_settle_with_no_reservation_and_no_user_is_left_unmatched(self, own_database):
        """Nobody to charge: state unknown, no ledger row."""
        result = run_service(own_database, lambda service: service.charge_spooled(entry()))
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

        replayed, after_first = run_service(own_database, first_process, spool_dir=str(tmp_path))
        replayed_again, after_restart = run_service(own_database, restarted_process, spool_dir=str(tmp_path))
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

        assert run_service(own_database, scenario, spool_dir=str(tmp_path)) == (0, "settled")


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
            replayed = await service.replay_once()
            return spooled, replayed, await account(service, user_id)

        try:
            spooled, replayed, after = run_service(url, scenario, spool_dir=str(tmp_path), db_timeout_s=1)
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
            resolution = await service.settle_call(data["litellm_call_id"], 90, "m", None)
            return resolution, await account(service, user_id)

        resolution, after = run_service(url, scenario, spool_dir=str(tmp_path), db_timeout_s=1, fail_mode="open")
        assert (resolution.state, resolution.charged_tokens) == ("settled", charged(90))
        assert (after.credited_tokens, after.debited_tokens, after.reserved_tokens) == (1000, charged(90), 0)
        assert segments(tmp_path) == []
        assert_ledger_consistent(url)


# -- a real proxy while Postgres stops and starts -----------------------------------------

outage_settings = {
    **{name: proxy_settings[name] for name in ("default_tokens_per_user", "conversion_factor", "credits_email")},
    "db_timeout_s": 1,
    "replay_interval_s": 0.5,
    "sweep_interval_s": 1,
}


class OutageProxy:
    def __init__(
        self, postgres: StoppablePostgres, process: ProxyProcess, config: Path, provider_url: str, data_dir: Path
    ) -> None:
        self.postgres, self.process, self.config = postgres, process, config
        self.provider_url, self.spool_dir = provider_url, data_dir / "spool"
        self.admin = httpx.Client(
            base_url=process.base_url, headers={"Authorization": f"Bearer {master_key}"}, timeout=30
        )

    def client(self) -> openai.OpenAI:
        """As LibreChat configures it: the SDK's default retries (x-should-retry: false stops them)."""
        return openai.OpenAI(base_url=f"{self.process.base_url}/v1", api_key=master_key)

    def use_fail_mode(self, mode: str) -> None:
        write_proxy_config(self.config, self.provider_url, {**outage_settings, "fail_mode": mode})
        response = self.admin.post("/solaris/settings/reload")
        assert response.status_code == 200, response.text
        assert response.json()["settings"]["fail_mode"]["value"] == mode

    def events(self, name: str) -> list[dict]:
        found = []
        for line in self.process.log().splitlines():
            if line.startswith("{") and f'"event": "{name}"' in line:
                found.append(json.loads(line))
        return found


@pytest.fixture(scope="module")
def outage_proxy(fake_provider, tmp_path_factory) -> OutageProxy:
    postgres = StoppablePostgres(tmp_path_factory.mktemp("pg-proxy-outage"))
    work = tmp_path_factory.mktemp("outage-proxy")
    config = write_proxy_config(
        work / "litellm-config.yaml", fake_provider.base_url, {**outage_settings, "fail_mode": "closed"}
    )
    artifacts_dir.mkdir(exist_ok=True)
    log_path = artifacts_dir / "proxy-outage.log"
    log_path.unlink(missing_ok=True)
    process = ProxyProcess(config, proxy_env(postgres.url, work), log_path)
    try:
        process.wait_ready()
        yield OutageProxy(postgres, process, config, fake_provider.base_url, work)
    finally:
        process.stop()
        postgres.start()
        postgres.close()


class TestProxyOutage:
    def test_fail_closed_answers_a_readable_503_and_recovers_without_restart(self, outage_proxy):
        """Postgres down: N calls, all 503 with the pt-BR message, no traceback; back up: calls succeed."""
        proxy, user_id, calls = outage_proxy, f"closed-{uuid.uuid4().hex[:8]}@example.com", 12
        proxy.use_fail_mode("closed")
        client = proxy.client()
        recovered_before = len(proxy.events("database_recovered"))
        before = ask(client, user_id, "[[tokens=10]] antes")
        wait_for(lambda: balance(proxy.postgres.url, user_id)[2] == 0, 15, what="the first call settled")

        proxy.postgres.stop()
        try:
            first_started = time.monotonic()
            raw = [
                httpx.post(
                    f"{proxy.process.base_url}/v1/chat/completions",
                    timeout=30,
                    headers={"Authorization": f"Bearer {master_key}", "x-litellm-end-user-id": user_id},
                    json={"model": "fake-model", "messages": [{"role": "user", "content": "oi"}]},
                )
            ]

            first_wait_s = time.monotonic() - first_started

            def refused(_: int) -> tuple[openai.APIStatusError, float]:
                started = time.monotonic()
                with pytest.raises(openai.APIStatusError) as error:
                    ask(client, user_id, "[[tokens=10]] durante")
                return error.value, time.monotonic() - started

            with ThreadPoolExecutor(calls) as pool:
                errors, waits_s = zip(*pool.map(refused, range(calls - 1)), strict=False)
            admin = proxy.admin.get(f"/solaris/users/{user_id}")
        finally:
            proxy.postgres.start()
        restarted_at = time.monotonic()

        responses = [error.response for error in errors] + raw
        assert [response.status_code for response in responses] == [503] * calls
        for response in responses:
            message = response.json()["error"]["message"]
            assert "temporariamente indisponível" in message, message
            assert "Traceback" not in response.text and 'File "' not in response.text
            assert response.headers.get("x-should-retry") == "false"
        assert (admin.status_code, admin.json()["error"]["code"]) == (503, "database_unavailable")

        # Back up: the same process serves again; count the 503s between restart and recovery.
        refused_after_restart = 0

        def recovered():
            nonlocal refused_after_restart
            try:
                return ask(client.with_options(max_retries=0), user_id, "[[tokens=10]] depois")
            except openai.APIStatusError as error:
                assert error.status_code == 503, error
                refused_after_restart += 1
                time.sleep(0.1)
                return None

        first_after = wait_for(recovered, 60, interval_s=0, what="a call served after Postgres restarted")
        recovery_s = time.monotonic() - restarted_at
        with ThreadPoolExecutor(8) as pool:
            after = list(pool.map(lambda _: ask(client, user_id, "[[tokens=10]] depois"), range(8)))
        wait_for(lambda: balance(proxy.postgres.url, user_id)[2] == 0, 15, what="calls settled")
        served = [before, first_after, *after]
        credited, debited, reserved = balance(proxy.postgres.url, user_id)
        assert (credited, debited, reserved) == (allowance, sum(charged(r.usage.total_tokens) for r in served), 0)
        assert_ledger_consistent(proxy.postgres.url)
        wait_for(lambda: len(proxy.events("database_recovered")) > recovered_before, 30, what="database_recovered")
        assert proxy.events("database_recovered")[-1]["replayed_entries"] == 0
        record_figure(
            f"outage: fail_mode closed: {calls} calls while Postgres was stopped, "
            f"{sum(r.status_code == 503 for r in responses)} answered 503 with the readable message "
            f"(the first after {first_wait_s:.2f} s, the next {calls - 1} within {max(waits_s):.2f} s); "
            f"first call served {recovery_s:.2f} s after Postgres restarted "
            f"({refused_after_restart} refused in between), then 8/8 served; no proxy restart"
        )

    def test_fail_open_spools_usage_and_replays_it_once(self, outage_proxy):
        """Postgres down under load: calls go through, usage is spooled, charged exactly once when it returns."""
        proxy, user_id = outage_proxy, f"open-{uuid.uuid4().hex[:8]}@example.com"
        proxy.use_fail_mode("open")
        client = proxy.client()
        url = proxy.postgres.url
        spooled_before = len(proxy.events("usage_spooled"))
        recovered_before = len(proxy.events("database_recovered"))
        in_flight_calls, outage_calls = 3, 9

        def pending() -> int:
            with psycopg.connect(url) as connection:
                return connection.execute(
                    "SELECT count(*) FROM solaris.reservations WHERE user_id = %s AND state = 'pending'", (user_id,)
                ).fetchone()[0]

        with ThreadPoolExecutor(in_flight_calls + outage_calls) as pool:
            # Reserved before the outage, answered during it: their settles fail and are spooled.
            in_flight = [
                pool.submit(ask, client, user_id, "[[sleep=3]] [[tokens=9]] em voo") for _ in range(in_flight_calls)
            ]
            wait_for(lambda: pending() == in_flight_calls, 30, what="the in-flight calls reserved")
            proxy.postgres.stop()
            try:
                # Never reserved: fail_mode open lets them through unmetered.
                during = [
                    pool.submit(ask, client, user_id, f"[[tokens={5 + n}]] sem banco") for n in range(outage_calls)
                ]
                responses = [future.result() for future in in_flight + during]
                wait_for(
                    lambda: len(proxy.events("usage_spooled")) - spooled_before >= len(responses),
                    30,
                    what="every call's usage spooled",
                )
                spooled = proxy.events("usage_spooled")[spooled_before:]
                kept = {path.name: path.read_bytes() for path in segments(proxy.spool_dir)}
            finally:
                proxy.postgres.start()

        expected = sum(charged(response.usage.total_tokens) for response in responses)
        assert len({line["call_id"] for line in spooled}) == len(spooled) == len(responses)
        assert all(line["user_id"] == user_id and line["raw_tokens"] > 0 for line in spooled)
        assert sum(line["metered"] is True for line in spooled) == in_flight_calls
        assert all("sem banco" not in json.dumps(line) for line in spooled)  # ids and numbers, never content
        assert sum(len(content.splitlines()) for content in kept.values()) == len(responses)

        wait_for(lambda: not segments(proxy.spool_dir), 60, what="the spool replayed")
        wait_for(lambda: len(proxy.events("database_recovered")) > recovered_before, 30, what="database_recovered")
        recovered = proxy.events("database_recovered")[-1]
        assert balance(url, user_id) == (allowance, expected, 0)
        assert all(count == 1 for _, count in settle_rows(url, user_id))
        assert len(settle_rows(url, user_id)) == len(responses)

        # The same entries again, as after a crash between replay and delete: nothing changes.
        for name, content in kept.items():
            (proxy.spool_dir / f"again-{name}").write_bytes(content)
        wait_for(lambda: not segments(proxy.spool_dir), 60, what="the copies replayed")
        assert balance(url, user_id) == (allowance, expected, 0)
        assert_ledger_consistent(url)
        assert not (proxy.spool_dir / rejected_name).exists()
        record_figure(
            f"outage: fail_mode open: {len(responses)} calls served while Postgres was stopped "
            f"({in_flight_calls} reserved before and settled during the outage, {outage_calls} unmetered), "
            f"{len(spooled)} usage_spooled, {recovered['replayed_entries']} replayed at recovery "
            f"(down {recovered['down_s']} s); charged {balance(url, user_id)[1]} platform tokens, "
            f"expected {expected}; a second replay of the same segments charged 0"
        )


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
                await ledger.reserve(
                    connection,
                    user_id=user_id,
                    call_id=call_id,
                    wanted_tokens=810,
                    minimum_tokens=1,
                    default_tokens=1000,
                    ttl_s=60,
                    model="m",
                    factor=1.0,
                    thresholds=[0.8, 0.95],
                )
                await ledger.resolve(connection, call_id=call_id, kind="settle", raw_tokens=810, thresholds=[0.8, 0.95])
            report = await Outbox(service.connection, service.settings, smtp_settings).deliver_due()
            async with service.connection() as connection:
                cursor = await connection.execute(
                    "SELECT status, attempts FROM solaris.alerts WHERE user_id = %s", (user_id,)
                )
                return report, await cursor.fetchall()

        try:
            report, alerts = run_service(stoppable_postgres.url, scenario, db_timeout_s=1, mail_lease_s=30)
        finally:
            catcher.stop()
        assert catcher.restarted.wait(30), "Postgres was not restarted"
        assert (report.sent, report.failed, alerts) == (1, 0, [("sent", 1)])
        assert len(catcher.to(user_id)) == 1
