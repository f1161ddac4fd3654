"""Leases through real proxies (issue 16): two replicas and a kill -9, with leases on.

Each replica reserves a busy user's calls from a lease of its own and writes their charges
in batches; what they let through together never passes the allowance, and a proxy killed
with charges still in memory loses none of them.
"""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor

import openai
import psutil
import psycopg

from tests.e2e.test_reliability import (
    account_row,
    assert_readable_refusals,
    burst,
    cost_per_call,
    kill_tree,
    own_proxy,
    process_tree,
    solaris_cli,
    split,
    stop,
)
from tests.support.harness import ProxyProcess, assert_ledger_consistent, wait_for
from tests.support.suite import charged, master_key, record_figure

# 200 calls' worth: a lease (32 worst cases, at most a quarter of what is free) fits until
# the last few hundred tokens, where calls fall back to per-call reservations.
leased_allowance = 200 * cost_per_call
lease_settings = {"leases": True, "default_tokens_per_user": leased_allowance, "lease_idle_s": 1}


def leased_settles(url: str, user_id: str) -> dict[str, int]:
    """Settle rows per lease that covered them (None: reserved on its own)."""
    with psycopg.connect(url) as connection:
        return dict(
            connection.execute(
                "SELECT coalesce(lease_id, 'none'), count(*) FROM solaris.ledger"
                " WHERE user_id = %s AND kind = 'settle' GROUP BY 1",
                (user_id,),
            ).fetchall()
        )


class TestLeasedReplicas:
    calls = 300

    def test_two_replicas_with_leases_spend_the_allowance_and_not_a_token_more(
        self, own_database, fake_provider, tmp_path
    ):
        user_id = f"leased-{uuid.uuid4().hex[:12]}@example.com"
        replicas: list[ProxyProcess] = []
        try:
            for name in ("a", "b"):
                replicas.append(
                    own_proxy(f"leases-{name}", own_database, fake_provider.base_url, lease_settings, tmp_path / name)
                )
            for replica in replicas:
                replica.wait_ready()
            outcomes = asyncio.run(burst([replica.base_url for replica in replicas], user_id, self.calls))
            served, refused = split(outcomes)
            assert_readable_refusals(refused)
            # Written in batches, then each lease returned once idle (lease_idle_s: 1).
            account = wait_for(
                lambda: (row := account_row(own_database, user_id))["reserved_tokens"] == 0 and row,
                60,
                what="every lease returned",
            )
        finally:
            for replica in replicas:
                stop(replica)
        assert account["used_tokens"] <= account["credited_tokens"] == leased_allowance
        assert account["used_tokens"] == sum(charged(response.usage.total_tokens) for response in served)
        # Leases held by the other replica refuse a few calls near the edge, never many.
        assert len(served) >= leased_allowance // cost_per_call - 10, (len(served), len(refused))
        settles = leased_settles(own_database, user_id)
        assert len([lease for lease in settles if lease != "none"]) >= 2, settles  # a lease per replica, at least
        assert sum(settles.values()) == len(served)
        assert_ledger_consistent(own_database)
        record_figure(
            f"leases: {self.calls} concurrent calls, 1 user, 2 replicas with leases: {len(served)} served "
            f"({sum(count for lease, count in settles.items() if lease != 'none')} from {len(settles) - 1} leases), "
            f"{len(refused)} refused; used {account['used_tokens']} of credited {account['credited_tokens']}"
        )


class TestLeasedCrash:
    served_calls = 12
    in_flight = 4

    def test_a_killed_proxy_loses_no_charge_and_its_lease_expires(self, own_database, fake_provider, tmp_path):
        """kill -9 with charges still in memory and calls in flight: the restart charges every
        served call once, from the journal, and the dead proxy's lease comes back when it expires."""
        user_id = f"leased-crash-{uuid.uuid4().hex[:12]}@example.com"
        # Batches every 5 s: the kill comes before the first one is written.
        settings = {
            **lease_settings,
            "settle_batch_interval_ms": 5000,
            "lease_ttl_s": 5,
            "sweep_interval_s": 0.5,
            "spool_dir": str(tmp_path / "spool"),
        }
        first = own_proxy("leases-crash-first", own_database, fake_provider.base_url, settings, tmp_path / "first")
        trees: list[psutil.Process] = []
        try:
            first.wait_ready()
            trees += process_tree(first)
            client = openai.OpenAI(base_url=f"{first.base_url}/v1", api_key=master_key, max_retries=0, timeout=60)

            def ask(text: str) -> object:
                try:
                    return client.chat.completions.create(
                        model="fake-model",
                        messages=[{"role": "user", "content": text}],
                        max_tokens=38,
                        extra_headers={"x-litellm-end-user-id": user_id},
                    )
                except openai.APIError as error:
                    return error

            served = [ask(f"[[tokens=38]] servida {index}") for index in range(self.served_calls)]
            assert not [outcome for outcome in served if isinstance(outcome, openai.APIError)]
            with ThreadPoolExecutor(self.in_flight) as pool:
                marker = f"pendente-{uuid.uuid4().hex[:8]}"
                hanging = [
                    pool.submit(ask, f"[[sleep=15]] [[tokens=38]] {marker} {index}") for index in range(self.in_flight)
                ]
                wait_for(
                    lambda: (
                        sum(marker in str(request.get("json")) for request in fake_provider.requests) >= self.in_flight
                    ),
                    30,
                    0.05,
                    what="calls in flight at the provider",
                )
                assert not kill_tree(trees), "a proxy process survived SIGKILL"
                first.stop()
                outcomes = [call.result(timeout=60) for call in hanging]
            assert all(isinstance(outcome, openai.APIConnectionError) for outcome in outcomes), outcomes
            # Nothing is in the ledger: every settle waited for a batch, the first call's too
            # (reserved on its own, since a lease is for a user who calls again).
            assert account_row(own_database, user_id)["used_tokens"] == 0

            second = own_proxy(
                "leases-crash-second", own_database, fake_provider.base_url, settings, tmp_path / "second"
            )
            try:
                second.wait_ready()
                trees += process_tree(second)
                account = wait_for(
                    lambda: (
                        (row := account_row(own_database, user_id))["reserved_tokens"] == 0
                        and row["used_tokens"] > charged(served[0].usage.total_tokens)
                        and row
                    ),
                    60,
                    0.2,
                    what="the journal replayed and the lease expired",
                )
            finally:
                stop(second)
        finally:
            kill_tree(trees)
            first.stop()
        assert account["used_tokens"] == sum(charged(response.usage.total_tokens) for response in served)
        settles = leased_settles(own_database, user_id)
        assert settles.pop("none") == 1 and list(settles.values()) == [self.served_calls - 1], settles
        assert '"event": "spool_replayed"' in second.log() or '"event": "database_recovered"' in second.log()
        assert_ledger_consistent(own_database)
        doctor = solaris_cli("doctor", database_url=own_database)
        assert doctor.returncode == 0 and "FAIL" not in doctor.stdout, doctor.stdout + doctor.stderr
        record_figure(
            f"leases crash: kill -9 with {self.served_calls - 1} served calls' charges in memory and "
            f"{self.in_flight} calls in flight: all charged once by the restart's replay; "
            f"the lease expired and returned the rest"
        )
