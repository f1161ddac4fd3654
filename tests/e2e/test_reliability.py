"""Reliability (issue 7): the quota and the ledger hold under a burst, a crash and two replicas.

Everything runs through real proxies (`solaris run`), the official `openai` client and the
fake provider on loopback. Figures worth quoting in docs/reliability.md are appended to
test-artifacts/reliability.txt.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import openai
import psutil
import psycopg

from solaris_hooks.db.migrations import available_migrations
from solaris_hooks.settings.refill import RefillSettings, local_today, period_key
from tests.support.harness import AdminClient, MailCatcher, ProxyProcess, assert_ledger_consistent, wait_for
from tests.support.suite import (
    artifacts_dir,
    charged,
    credits_email,
    master_key,
    proxy_env,
    proxy_settings,
    record_figure,
    write_proxy_config,
)

allowance = proxy_settings["default_tokens_per_user"]
# 15 prompt tokens + 38 completion tokens = 53 raw = ceil(19.928) = 20 platform tokens, so
# an allowance of 1000 covers exactly 50 calls; max_tokens = 38 makes the reservation
# (the worst case) equal to the charge.
burst_text, burst_max_tokens = "[[tokens=38]] paralelo", 38
cost_per_call = 20
# What our own proxies run with: the session's settings, minus its mail/title extras.
base_settings = {
    name: proxy_settings[name] for name in ("default_tokens_per_user", "conversion_factor", "credits_email")
}


async def burst(
    base_urls: list[str], user_id: str, calls: int, text: str = burst_text, max_tokens: int = burst_max_tokens
) -> list[object]:
    """`calls` chat calls at once, spread over the proxies; each outcome is a response or
    the openai.APIStatusError it raised (anything else fails the test)."""
    # The SDK's default pool (100 connections) would queue part of the burst in the client.
    clients = [
        openai.AsyncOpenAI(
            base_url=f"{url}/v1",
            api_key=master_key,
            max_retries=0,
            http_client=httpx.AsyncClient(
                limits=httpx.Limits(max_connections=calls, max_keepalive_connections=calls), timeout=httpx.Timeout(120)
            ),
        )
        for url in base_urls
    ]

    async def one(index: int) -> object:
        try:
            return await clients[index % len(clients)].chat.completions.create(
                model="fake-model",
                messages=[{"role": "user", "content": text}],
                max_tokens=max_tokens,
                extra_headers={"x-litellm-end-user-id": user_id},
            )
        except openai.APIStatusError as error:
            return error

    try:
        return await asyncio.gather(*(one(index) for index in range(calls)))
    finally:
        for client in clients:
            await client.close()


def split(outcomes: list[object]) -> tuple[list, list[openai.APIStatusError]]:
    served = [outcome for outcome in outcomes if not isinstance(outcome, openai.APIStatusError)]
    failed = [outcome for outcome in outcomes if isinstance(outcome, openai.APIStatusError)]
    return served, failed


def assert_readable_refusals(refused: list[openai.APIStatusError]) -> None:
    """Every refusal is a 429 that SDKs must not retry, with a message a person can act on."""
    assert Counter(error.status_code for error in refused) == {429: len(refused)}, [
        error.message for error in refused if error.status_code != 429
    ][:3]
    for error in refused:
        assert error.response.headers["x-should-retry"] == "false"
        message = error.body["message"]
        assert "tokens" in message and credits_email in message, message


def ledger_kinds(url: str, user_id: str) -> Counter:
    with psycopg.connect(url) as connection:
        return Counter(
            dict(
                connection.execute(
                    "SELECT kind, count(*) FROM solaris.ledger WHERE user_id = %s GROUP BY kind", (user_id,)
                ).fetchall()
            )
        )


def account_row(url: str, user_id: str) -> dict:
    with psycopg.connect(url) as connection:
        credited, debited, reserved = connection.execute(
            "SELECT credited_tokens, debited_tokens, reserved_tokens FROM solaris.accounts WHERE user_id = %s",
            (user_id,),
        ).fetchone()
    return {"credited_tokens": credited, "used_tokens": debited, "reserved_tokens": reserved}


def process_tree(proxy: ProxyProcess) -> list[psutil.Process]:
    """`solaris run` and what it started (the LiteLLM/uvicorn process that serves the calls)."""
    parent = psutil.Process(proxy.process.pid)
    return [parent, *parent.children(recursive=True)]


def kill_tree(processes: list[psutil.Process]) -> list[psutil.Process]:
    """SIGKILL every process (children first, so none outlives its parent); returns survivors."""
    for process in reversed(processes):
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    with contextlib.suppress(TimeoutError):
        wait_for(lambda: not any(running(process) for process in processes), 15, what="the processes gone")
    return [process for process in processes if running(process)]


def running(process: psutil.Process) -> bool:
    """A zombie is dead: it only waits for whoever adopted it to reap it."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop(proxy: ProxyProcess) -> None:
    """A clean stop, and then nothing of that proxy may be left running."""
    try:
        tree = process_tree(proxy)
    except psutil.NoSuchProcess:
        tree = []
    proxy.stop()
    assert not kill_tree(tree), "a proxy process survived SIGKILL"


def own_proxy(
    name: str, database_url: str, provider_url: str, settings: dict, work: Path, extra_env: dict[str, str] | None = None
) -> ProxyProcess:
    """A proxy process of this test's own, on its own port; not waited for."""
    work.mkdir(parents=True, exist_ok=True)
    config = write_proxy_config(work / "litellm-config.yaml", provider_url, {**base_settings, **settings})
    env = {**proxy_env(database_url, work), **(extra_env or {})}
    for name_unset in ("SMTP_HOST", "SOLARIS_CONFIG"):
        env.setdefault(name_unset, None)
    artifacts_dir.mkdir(exist_ok=True)
    log_path = artifacts_dir / f"reliability-{name}.log"
    log_path.unlink(missing_ok=True)  # the tests read the log: only this run's lines may be in it
    return ProxyProcess(config, env, log_path)


def solaris_cli(*args: str, database_url: str) -> subprocess.CompletedProcess:
    env = {
        name: value for name, value in os.environ.items() if name not in ("DATABASE_URL", "SMTP_HOST", "SOLARIS_CONFIG")
    }
    env["SOLARIS_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "solaris_hooks.cli.main", *args], env=env, capture_output=True, text=True, timeout=120
    )


class TestConcurrency:
    def test_200_concurrent_calls_spend_the_allowance_and_not_a_token_more(
        self, own_database, fake_provider, tmp_path, user_id
    ):
        """200 calls at once from one user whose allowance covers 50: about 50 served, the rest 429."""
        # Leases off: one reserve row per served call (tests/e2e/test_leases.py bursts with leases).
        proxy = own_proxy("burst", own_database, fake_provider.base_url, {"leases": False}, tmp_path)
        try:
            proxy.wait_ready()
            outcomes = asyncio.run(burst([proxy.base_url], user_id, 200))
            served, refused = split(outcomes)
            account = AdminClient(proxy.base_url, master_key).settled_account(user_id, timeout_s=60)
        finally:
            stop(proxy)

        assert_readable_refusals(refused)
        assert account["credited_tokens"] == allowance
        assert account["used_tokens"] <= account["credited_tokens"]
        # Charged exactly what the provider reported, call by call, as the ledger rounds.
        assert account["used_tokens"] == sum(charged(response.usage.total_tokens) for response in served)
        # The allowance is spent, not left on the table: less than one call's worth remains.
        assert account["remaining_tokens"] < cost_per_call
        assert abs(len(served) - allowance // cost_per_call) <= 2, (len(served), len(refused))
        kinds = ledger_kinds(own_database, user_id)
        assert kinds == {"grant": 1, "reserve": len(served), "settle": len(served)}
        record_figure(
            f"burst: 200 concurrent calls, 1 user, 1 proxy: {len(served)} served, {len(refused)} refused (429); "
            f"used {account['used_tokens']} of credited {account['credited_tokens']}"
        )


class TestCrash:
    in_flight = 6
    hang_s = 15

    def test_a_killed_proxy_strands_reservations_that_a_restarted_one_returns(
        self, own_database, fake_provider, tmp_path, user_id
    ):
        """kill -9 with calls in flight; a restart's sweeper expires what was stranded; doctor passes."""
        # The first proxy writes reservations that expire after 2 s but never sweeps them
        # itself (its sweeper would first run after an hour): only the restart can.
        first = own_proxy(
            "crash-first",
            own_database,
            fake_provider.base_url,
            # Leases off: per-call reservations stranded (tests/e2e/test_leases.py kills a leased proxy).
            {"reservation_ttl_s": 2, "sweep_interval_s": 3600, "leases": False},
            tmp_path / "first",
        )
        trees: list[psutil.Process] = []
        try:
            first.wait_ready()
            trees += process_tree(first)
            killed = len(trees)
            client = openai.OpenAI(base_url=f"{first.base_url}/v1", api_key=master_key, max_retries=0, timeout=60)
            served = client.chat.completions.create(
                model="fake-model",
                messages=[{"role": "user", "content": "[[tokens=10]] antes"}],
                extra_headers={"x-litellm-end-user-id": user_id},
            )
            wait_for(
                lambda: account_row(own_database, user_id)["reserved_tokens"] == 0, 30, what="the first call settled"
            )

            def hang(index: int) -> object:
                try:
                    return client.chat.completions.create(
                        model="fake-model",
                        messages=[{"role": "user", "content": f"[[sleep={self.hang_s}]] [[tokens=50]] {index}"}],
                        max_tokens=50,
                        extra_headers={"x-litellm-end-user-id": user_id},
                    )
                except openai.APIError as error:
                    return error

            with ThreadPoolExecutor(self.in_flight) as pool:
                calls = [pool.submit(hang, index) for index in range(self.in_flight)]
                wait_for(
                    lambda: self.pending(own_database) == self.in_flight,
                    60,
                    0.1,
                    what=f"{self.in_flight} calls in flight",
                )
                killed_at = time.monotonic()
                assert not kill_tree(trees), "a proxy process survived SIGKILL"
                first.stop()
                outcomes = [call.result(timeout=60) for call in calls]
            assert all(isinstance(outcome, openai.APIConnectionError) for outcome in outcomes), outcomes
            stranded = account_row(own_database, user_id)
            assert self.pending(own_database) == self.in_flight
            assert stranded["reserved_tokens"] > 0

            second = own_proxy(
                "crash-second",
                own_database,
                fake_provider.base_url,
                {"reservation_ttl_s": 2, "sweep_interval_s": 0.5, "leases": False},
                tmp_path / "second",
            )
            try:
                second.wait_ready()
                trees += process_tree(second)
                restarted_at = time.monotonic()
                wait_for(lambda: self.pending(own_database) == 0, 60, 0.1, what="stranded reservations swept")
                swept_at = time.monotonic()
            finally:
                stop(second)
        finally:
            kill_tree(trees)
            first.stop()

        account = account_row(own_database, user_id)
        assert account == {
            "credited_tokens": allowance,
            "used_tokens": charged(served.usage.total_tokens),
            "reserved_tokens": 0,
        }
        assert ledger_kinds(own_database, user_id) == {
            "grant": 1,
            "reserve": 1 + self.in_flight,
            "settle": 1,
            "expire": self.in_flight,
        }
        assert '"event": "reservations_expired"' in second.log()
        assert_ledger_consistent(own_database)
        doctor = solaris_cli("doctor", database_url=own_database)
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "FAIL" not in doctor.stdout
        assert "ok    replaying the ledger gives every account's balances: holds" in doctor.stdout
        record_figure(
            f"crash: kill -9 of the proxy ({killed} processes: solaris run and LiteLLM) with "
            f"{self.in_flight} calls in flight: {self.in_flight} reservations "
            f"({stranded['reserved_tokens']} tokens) stranded; swept {swept_at - killed_at:.1f} s after the kill, "
            f"{swept_at - restarted_at:.1f} s after the restarted proxy was ready"
        )
        record_figure("crash: solaris doctor after the restart:\n" + doctor.stdout.rstrip())

    @staticmethod
    def pending(url: str) -> int:
        with psycopg.connect(url) as connection:
            return connection.execute("SELECT count(*) FROM solaris.reservations WHERE state = 'pending'").fetchone()[0]


class TestReplicas:
    calls = 120

    def test_two_replicas_on_one_database_share_the_quota_refill_and_alerts(
        self, empty_database, fake_provider, tmp_path
    ):
        """Two proxies started at once on a never-migrated database: migrations once, one quota,
        one refill grant per period, and each alert e-mailed once."""
        user_id = f"replica-{uuid.uuid4().hex[:12]}@example.com"
        refill = {"every": "day", "mode": "reset_to", "amount": allowance, "check_interval_s": 0.5}
        # Leases off: the burst spends the allowance to the last call (a replica's lease would hold some back).
        settings = {"sweep_interval_s": 0.5, "mail_poll_interval_s": 0.2, "refill": refill, "leases": False}
        catcher = MailCatcher().start()
        mail_env = {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(catcher.port),
            "SMTP_SECURITY": "none",
            "SMTP_FROM": "IA SOLARIS <quota@solaris.example>",
        }
        replicas: list[ProxyProcess] = []
        try:
            # Both spawned before either is waited for: their migrations race.
            for name in ("a", "b"):
                replicas.append(
                    own_proxy(
                        f"replica-{name}", empty_database, fake_provider.base_url, settings, tmp_path / name, mail_env
                    )
                )
            for replica in replicas:
                replica.wait_ready()

            with psycopg.connect(empty_database) as connection:
                applied = connection.execute(
                    "SELECT version, applied_at FROM solaris.schema_migrations ORDER BY version"
                ).fetchall()
            assert [version for version, _ in applied] == [migration.version for migration in available_migrations()]
            assert len({applied_at for _, applied_at in applied}) == 1, "migrations applied in one transaction"
            for replica in replicas:
                log = replica.log()
                assert "Traceback" not in log and "MigrationError" not in log, replica.log_path

            outcomes = asyncio.run(burst([replica.base_url for replica in replicas], user_id, self.calls))
            served, refused = split(outcomes)
            assert_readable_refusals(refused)
            account = wait_for(
                lambda: (row := account_row(empty_database, user_id))["reserved_tokens"] == 0 and row,
                60,
                what="no call in flight",
            )
            assert account["used_tokens"] <= account["credited_tokens"] == allowance
            assert account["used_tokens"] == sum(charged(response.usage.total_tokens) for response in served)
            assert abs(len(served) - allowance // cost_per_call) <= 2, (len(served), len(refused))
            # Whatever the burst left is spent, then the next call is refused (the 100 % notice).
            for index in range(5):
                last = asyncio.run(burst([replicas[index % 2].base_url], user_id, 1, "[[tokens=100000]] fim", 100000))[
                    0
                ]
                if isinstance(last, openai.APIStatusError):
                    break
            assert isinstance(last, openai.RateLimitError)
            assert "acabou" in last.body["message"]

            # The refill: the account was last refilled yesterday; both replicas check every 0.5 s.
            refill_settings = RefillSettings(**refill)
            yesterday = period_key(local_today(refill_settings) - timedelta(days=1), "day")
            with psycopg.connect(empty_database, autocommit=True) as connection:
                connection.execute("UPDATE solaris.accounts SET period = %s WHERE user_id = %s", (yesterday, user_id))
            wait_for(lambda: self.refill_grants(empty_database, user_id), 30, what="the refill grant")
            time.sleep(2)  # four more refill rounds of each replica: a second grant would show by now
            grants = self.refill_grants(empty_database, user_id)
            ((reason, count),) = grants.items()
            assert count == 1 and reason != f"refill {yesterday}", grants
            refilled_logs = sum(replica.log().count('"event": "refilled"') for replica in replicas)
            assert refilled_logs == 1
            after_refill = account_row(empty_database, user_id)
            assert after_refill["credited_tokens"] - after_refill["used_tokens"] == allowance

            received = catcher.wait_for(user_id, 3, timeout_s=30)
            time.sleep(1.5)  # a duplicate from the other replica's mailer (polling every 0.2 s) would be here
            received = catcher.to(user_id)
            subjects = [message["Subject"] for message in received]
            assert len(received) == 3, subjects
            # Two mail workers send concurrently: the three may arrive in any order.
            assert sorted(("80%" in subject, "95%" in subject, "acabou" in subject) for subject in subjects) == [
                (False, False, True),
                (False, True, False),
                (True, False, False),
            ], subjects
            assert len({message["Message-ID"] for message in received}) == 3
            with psycopg.connect(empty_database) as connection:
                alerts = connection.execute(
                    "SELECT threshold, status, attempts, claimed_by FROM solaris.alerts WHERE user_id = %s "
                    "AND status <> 'covered' ORDER BY id",
                    (user_id,),
                ).fetchall()
            assert [(float(threshold), status, attempts) for threshold, status, attempts, _ in alerts] == [
                (0.8, "sent", 1),
                (0.95, "sent", 1),
                (1.0, "sent", 1),
            ]
        finally:
            for replica in replicas:
                stop(replica)
            catcher.stop()
        assert_ledger_consistent(empty_database)
        senders = Counter(claimed_by.rsplit(":", 1)[0] for *_, claimed_by in alerts)
        record_figure(
            f"replicas: 2 proxies started together on a fresh database: {len(applied)} migrations applied once "
            f"(one transaction); {self.calls} concurrent calls over 2 ports: {len(served)} served, "
            f"{len(refused)} refused; used {account['used_tokens']} of credited {account['credited_tokens']}; "
            f"refill grants ({reason}): {count}; e-mails to the user: {len(received)} "
            f"(senders: {dict(senders)})"
        )

    @staticmethod
    def refill_grants(url: str, user_id: str) -> dict[str, int]:
        with psycopg.connect(url) as connection:
            return dict(
                connection.execute(
                    "SELECT reason, count(*) FROM solaris.ledger WHERE user_id = %s AND kind = 'grant' "
                    "AND reason LIKE 'refill %%' GROUP BY reason",
                    (user_id,),
                ).fetchall()
            )
