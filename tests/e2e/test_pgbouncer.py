"""PgBouncer in transaction mode between solaris_hooks and Postgres (issue 17).

Debian 12's pgbouncer is 1.18, older than the prepared statements of transaction mode
(1.21; on a newer one tests/support/pgbouncer.py turns them off): a statement psycopg
prepared on one server connection is missing on the next, or already there for another
client. With `db_prepare_threshold: null` a real proxy serves, charges and refuses calls
through it under concurrency, and the CLI works through it; with psycopg's default (5)
the same proxy's calls fail. The pgbouncer gives each database 3 server connections,
round robin, while the proxy's pool holds up to 10: transactions of different clients
interleave on the same server connections. Needs Debian's `pgbouncer` (.ci/run installs it).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from psycopg.conninfo import conninfo_to_dict

from solaris_hooks.db.connection import connection_pool
from solaris_hooks.settings import Settings, SettingsError, settings_from_mapping
from tests.support.cli import cli_env, solaris
from tests.support.harness import AdminClient, ProxyProcess, assert_ledger_consistent, scratch_database
from tests.support.pgbouncer import PgBouncer, find_pgbouncer
from tests.support.suite import (
    artifacts_dir,
    charged,
    credits_email,
    master_key,
    proxy_env,
    record_figure,
    write_proxy_config,
)

concurrent_calls = 20
allowance = 1000
server_connections = 3
prepares_off = {"default_tokens_per_user": allowance, "credits_email": credits_email, "db_prepare_threshold": None}


@pytest.fixture(scope="module")
def pgbouncer(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgBouncer]:
    executable = find_pgbouncer()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("pgbouncer is missing: .ci/run installs Debian's pgbouncer package")
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    artifacts_dir.mkdir(exist_ok=True)
    bouncer = PgBouncer(
        executable,
        database_url,
        tmp_path_factory.mktemp("pgbouncer"),
        artifacts_dir / "pgbouncer.log",
        server_connections=server_connections,
    )
    yield bouncer
    bouncer.stop()


@contextmanager
def proxy_through(
    bouncer: PgBouncer, database_url: str, provider_url: str, work: Path, settings: dict, log_name: str
) -> Iterator[tuple[ProxyProcess, str]]:
    """A proxy whose only database URL is pgbouncer's, on an empty scratch database that
    `solaris run` migrates through pgbouncer; yields it and the database's direct URL. Its
    ledger must replay when it stops."""
    with scratch_database(database_url, migrated=False) as direct_url:
        config = write_proxy_config(work / "litellm-config.yaml", provider_url, settings)
        log_path = artifacts_dir / log_name
        log_path.unlink(missing_ok=True)
        process = ProxyProcess(config, proxy_env(bouncer.url_of(direct_url), work), log_path).wait_ready()
        try:
            yield process, direct_url
        finally:
            process.stop()
        assert_ledger_consistent(direct_url)


def calls_at_once(base_url: str, user_ids: list[str], completion_tokens: int) -> list[httpx.Response]:
    """One chat call per entry of user_ids, all at once; every prompt is unique."""

    async def one(client: httpx.AsyncClient, user_id: str) -> httpx.Response:
        return await client.post(
            "/v1/chat/completions",
            headers={"x-litellm-end-user-id": user_id},
            json={
                "model": "fake-model",
                "max_tokens": completion_tokens,
                "messages": [{"role": "user", "content": f"[[tokens={completion_tokens}]] {uuid.uuid4().hex}"}],
            },
        )

    async def all_calls() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {master_key}"}
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60) as client:
            return await asyncio.gather(*(one(client, user_id) for user_id in user_ids))

    return asyncio.run(all_calls())


def new_user(label: str) -> str:
    return f"pgb-{label}-{uuid.uuid4().hex[:10]}@example.com"


class TestProxyThroughPgBouncer:
    def test_calls_are_served_charged_and_refused_through_transaction_pooling(
        self, pgbouncer, database_url, fake_provider, tmp_path
    ):
        """db_prepare_threshold: null. 20 calls at once from 5 users are all served and each
        charged what its usage says; 20 at once from one user near the end of the allowance
        are served while it lasts and the rest refused with a 429; then it is used up and the
        next call is refused as such. Nothing is overspent, the ledger replays."""
        started_s = time.monotonic()
        with proxy_through(
            pgbouncer, database_url, fake_provider.base_url, tmp_path, prepares_off, "pgbouncer-proxy.log"
        ) as (proxy, direct_url):
            admin = AdminClient(proxy.base_url, master_key)
            users = [new_user("many") for _ in range(5)]
            served = calls_at_once(proxy.base_url, users * (concurrent_calls // len(users)), completion_tokens=20)
            # Near the end of its allowance, one user asks 20 calls at once, then calls until refused.
            edge_user = new_user("edge")
            edge = calls_at_once(proxy.base_url, [edge_user], completion_tokens=2400)
            admin.settled_account(edge_user)
            edge += calls_at_once(proxy.base_url, [edge_user] * concurrent_calls, completion_tokens=40)
            for _call in range(5):  # one call takes all that is left, the next is refused
                admin.settled_account(edge_user)
                edge += calls_at_once(proxy.base_url, [edge_user], completion_tokens=100_000)
                if edge[-1].status_code == 429:
                    break
            accounts = {user_id: admin.settled_account(user_id) for user_id in [*users, edge_user]}
            name = conninfo_to_dict(direct_url)["dbname"]
            pools = [row for row in pgbouncer.show("POOLS") if row["database"] == name]
            log = proxy.log()
        elapsed_s = time.monotonic() - started_s

        assert [response.status_code for response in served] == [200] * concurrent_calls, served[0].text[:300]
        for user_id in users:
            mine = [response for response, caller in zip(served, users * 4, strict=True) if caller == user_id]
            expected = sum(charged(response.json()["usage"]["total_tokens"]) for response in mine)
            assert accounts[user_id]["used_tokens"] == expected
            assert accounts[user_id]["reserved_tokens"] == 0

        at_once = [response.status_code for response in edge[1 : concurrent_calls + 1]]
        assert edge[0].status_code == 200 and set(at_once) == {200, 429}, [response.text[:200] for response in edge]
        refused = [response.json()["error"]["code"] for response in edge if response.status_code == 429]
        # Refused at once: another call holds the rest (quota_held) or nothing is left (quota_exhausted).
        assert set(refused) <= {"quota_held", "quota_exhausted"}, refused
        assert refused[-1] == "quota_exhausted"
        edge_charged = sum(
            charged(response.json()["usage"]["total_tokens"]) for response in edge if response.status_code == 200
        )
        assert accounts[edge_user]["used_tokens"] == edge_charged
        assert accounts[edge_user]["used_tokens"] <= accounts[edge_user]["credited_tokens"] == allowance
        assert accounts[edge_user]["remaining_tokens"] < 100  # used up: what is left fits no call
        assert 'prepared statement "_pg3_' not in log

        # The proxy's clients shared pgbouncer's few server connections.
        (pool,) = pools
        servers = pool["sv_active"] + pool["sv_idle"] + pool["sv_used"]
        assert servers <= server_connections < pool["cl_active"] + pool["cl_waiting"]
        record_figure(
            f"pgbouncer {'.'.join(map(str, pgbouncer.version))} transaction mode, db_prepare_threshold null: "
            f"{concurrent_calls} calls at once from 5 users all served and charged; {concurrent_calls} at once "
            f"from one user near the end: {at_once.count(200)} served, {at_once.count(429)} refused (429), used "
            f"{accounts[edge_user]['used_tokens']} of {allowance}; {pool['cl_active'] + pool['cl_waiting']} proxy "
            f"connections on {servers} server connections; {elapsed_s:.1f} s with the proxy's start"
        )

    def test_with_prepared_statements_on_calls_fail_behind_pgbouncer(
        self, pgbouncer, database_url, fake_provider, tmp_path
    ):
        """What db_prepare_threshold: null fixes. With psycopg's default (5), each pooled
        connection prepares the ledger's statements after 5 runs, on whichever server
        connection it had: the calls after that fail on `prepared statement "_pg3_…" does
        not exist` (or `already exists`)."""
        settings = {key: value for key, value in prepares_off.items() if key != "db_prepare_threshold"}
        # Leases off: every call runs the ledger's statements itself (leased calls run none).
        settings["leases"] = False
        users = [new_user("prepared") for _ in range(5)]
        with proxy_through(
            pgbouncer, database_url, fake_provider.base_url, tmp_path, settings, "pgbouncer-prepared-proxy.log"
        ) as (proxy, _direct_url):
            statuses = []
            for _round in range(3):
                statuses += [
                    response.status_code for response in calls_at_once(proxy.base_url, users * 4, completion_tokens=20)
                ]
            log = proxy.log()

        failed = [status for status in statuses if status != 200]
        assert failed, "every call was served: were prepared statements ever used?"
        assert 'prepared statement "_pg3_' in log
        record_figure(
            f"pgbouncer {'.'.join(map(str, pgbouncer.version))} transaction mode, db_prepare_threshold 5 "
            f"(psycopg's default): {len(failed)} of {len(statuses)} calls failed ({sorted(set(failed))})"
        )


class TestCliThroughPgBouncer:
    def test_migrate_credits_and_users_list_work_through_transaction_pooling(self, pgbouncer, database_url):
        """`solaris migrate` on an empty database, `credits add` and `users list`, `report`, each
        run twice: every command's connection lands on other server connections than the last."""
        user_id = new_user("cli")
        with scratch_database(database_url, migrated=False) as direct_url:
            env = cli_env(pgbouncer.url_of(direct_url))
            runs = [solaris("migrate", env=env), solaris("migrate", env=env)]
            runs += [solaris("credits", "add", user_id, "200", "--reason", "pgbouncer", env=env) for _ in range(2)]
            runs += [solaris("users", "list", "--csv", env=env) for _ in range(2)]
            runs += [solaris("report", "--csv", env=env) for _ in range(2)]
            for run in runs:
                assert run.returncode == 0, run.stderr[-2000:]
            listed = runs[-3].stdout
            assert_ledger_consistent(direct_url)

        assert "migration(s) applied" in runs[0].stdout and "(0 migration(s) applied)" in runs[1].stdout
        assert user_id in listed
        # Its first grant (default_tokens_per_user of the repository's config, or 1000) and 2 × 200.
        credited = int(listed.splitlines()[1].split(",")[4])
        assert credited >= 400
        assert 'prepared statement "_pg3_' not in "".join(run.stderr for run in runs)


class TestSetting:
    """No process: how db_prepare_threshold is read and what the pool gets (unit tests; they
    live here, with the behaviour they switch)."""

    def test_the_default_is_psycopgs_and_null_or_none_from_the_environment_turn_prepares_off(self):
        assert Settings().db_prepare_threshold == 5
        assert settings_from_mapping({"db_prepare_threshold": None}, {}).db_prepare_threshold is None
        from_env = {"db_prepare_threshold": "os.environ/SOLARIS_DB_PREPARE_THRESHOLD"}
        for text, threshold in (("none", None), (" Null ", None), ("0", 0), ("12", 12)):
            environ = {"SOLARIS_DB_PREPARE_THRESHOLD": text}
            assert settings_from_mapping(from_env, environ).db_prepare_threshold == threshold, text
        for wrong in ("-1", "off", ""):
            with pytest.raises(SettingsError, match="db_prepare_threshold"):
                settings_from_mapping(from_env, {"SOLARIS_DB_PREPARE_THRESHOLD": wrong})

    def test_the_proxys_pool_opens_its_connections_with_the_setting(self):
        for threshold in (None, 5, 0):
            pool = connection_pool("postgresql://nobody@127.0.0.1:1/none", Settings(db_prepare_threshold=threshold))
            assert pool.kwargs["prepare_threshold"] == threshold
