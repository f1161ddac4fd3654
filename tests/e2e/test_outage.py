"""Database outage (issue 7) under a real proxy: Postgres stops under load and comes back.

fail_mode closed: every call gets a readable 503 while Postgres is down, and the proxy
recovers by itself. fail_mode open: calls go through, their usage waits in the spool, and
is charged once, and only once, when Postgres is back. A Postgres of our own (pgserver)
that the tests stop and start with pg_ctl, `solaris run` as a child process, the fake
provider, the official openai client."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import psycopg
import pytest

from solaris_hooks.quota.spool import rejected_name
from tests.support.harness import ProxyProcess, StoppablePostgres, assert_ledger_consistent, wait_for
from tests.support.ledger_sql import balance, settle_rows
from tests.support.spool_files import segments, spooled_lines
from tests.support.suite import (
    artifacts_dir,
    charged,
    master_key,
    proxy_env,
    proxy_settings,
    record_figure,
    write_proxy_config,
)

allowance = proxy_settings["default_tokens_per_user"]


def ask(client: openai.OpenAI, user_id: str, text: str):
    # A small max_tokens keeps each reservation small, so concurrent calls fit the allowance.
    return client.chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": text}],
        max_tokens=40,
        extra_headers={"x-litellm-end-user-id": user_id},
    )


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

    def use_fail_mode(self, mode: str, **settings: object) -> None:
        """Reload the proxy with this fail_mode (and these other settings)."""
        write_proxy_config(self.config, self.provider_url, {**outage_settings, "fail_mode": mode, **settings})
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
            assert response.json()["error"]["code"] == response.headers["x-solaris-refusal"] == "quota_unavailable"
        assert (admin.status_code, admin.json()["error"]["code"]) == (503, "database_unavailable")
        # Each 503 is one `database_unavailable` line of ours, and not also LiteLLM's ERROR line
        # with the traceback of the exception our hook raised to answer it.
        call_ids = {response.headers["x-litellm-call-id"] for response in responses}
        wait_for(
            lambda: call_ids <= {line["call_id"] for line in proxy.events("database_unavailable")},
            15,
            what="a database_unavailable line per 503",
        )
        log = proxy.process.log()
        for call_id in call_ids:
            (line,) = [line for line in log.splitlines() if call_id in line]
            assert json.loads(line)["event"] == "database_unavailable", line
        assert "async_pre_call_hook" not in log

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
        # Leases off: settles of calls reserved one by one, spooled (test_leases.py kills a leased proxy).
        proxy.use_fail_mode("open", leases=False)
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

        wait_for(lambda: not spooled_lines(proxy.spool_dir), 60, what="the spool replayed")
        wait_for(lambda: len(proxy.events("database_recovered")) > recovered_before, 30, what="database_recovered")
        recovered = proxy.events("database_recovered")[-1]
        assert balance(url, user_id) == (allowance, expected, 0)
        assert all(count == 1 for _, count in settle_rows(url, user_id))
        assert len(settle_rows(url, user_id)) == len(responses)

        # The same entries again, as after a crash between replay and delete: nothing changes.
        for name, content in kept.items():
            (proxy.spool_dir / f"again-{name}").write_bytes(content)
        wait_for(lambda: not spooled_lines(proxy.spool_dir), 60, what="the copies replayed")
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
