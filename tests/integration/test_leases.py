"""Calls reserved from leases (issue 16) through the hooks, in-process: no round trip per call,
one settle row per call, nothing overspent, nothing lost when the process dies."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest
from fastapi import HTTPException

from solaris_hooks.quota import leasing
from tests.integration.test_hooks import key, model_response
from tests.support.event_loop import run_with_callback
from tests.support.ledger_sql import account_balances
from tests.support.payloads import request_data


@pytest.fixture
def user_id() -> str:
    return f"leased-{uuid.uuid4().hex}"


def lease_settings(spool_dir, **overrides) -> dict:
    return {"leases": True, "spool_dir": str(spool_dir), "settle_batch_interval_ms": 5, **overrides}


async def call(callback, user_id: str, prompt_tokens: int = 100, completion_tokens: int | None = 50) -> str:
    """One call; completion_tokens None: the provider answers all the hook let it (max_tokens)."""
    data = request_data(user_id, uuid.uuid4().hex, max_tokens=100)
    await callback.async_pre_call_hook(key, None, data, "acompletion")
    if completion_tokens is None:
        completion_tokens = data["max_tokens"]
    kwargs = {"litellm_call_id": data["litellm_call_id"], "model": data["model"]}
    await callback.async_log_success_event(kwargs, model_response(prompt_tokens, completion_tokens), None, None)
    return data["litellm_call_id"]


def rows(database_url: str, query: str, *params) -> list[tuple]:
    with psycopg.connect(database_url) as connection:
        return connection.execute(query, params).fetchall()


class TestLeasedCalls:
    def test_calls_are_reserved_from_one_lease_and_settled_one_row_each(self, own_database, user_id, tmp_path):
        async def scenario(callback, service):
            call_ids = [await call(callback, user_id) for _ in range(20)]
            await leasing.flush_once(service)
            held = account_balances(own_database, user_id)
            return call_ids, held

        call_ids, held = run_with_callback(
            own_database, scenario, **lease_settings(tmp_path, default_tokens_per_user=100_000)
        )
        charged = 57  # ceil(150 × 0.376)
        credited, debited, reserved = held
        assert (credited, debited) == (100_000, 20 * charged)
        assert reserved > 0  # the lease, still held while the service ran
        # The first call is reserved on its own: a lease is for a user who calls again.
        reservations = rows(
            own_database,
            "SELECT call_id, state FROM solaris.reservations WHERE user_id = %s ORDER BY created_at",
            user_id,
        )
        assert reservations[0] == (call_ids[0], "settled")
        [(lease_id, lease_state)] = reservations[1:]
        assert lease_state == "released"  # one lease, returned at close
        # In the order of the calls, not of the rows: a batch writes its leased calls first,
        # so the first call's settle (batched too) may come after some of theirs.
        settles = sorted(
            rows(
                own_database,
                "SELECT call_id, lease_id, tokens FROM solaris.ledger WHERE user_id = %s AND kind = 'settle'",
                user_id,
            ),
            key=lambda row: call_ids.index(row[0]),
        )
        assert settles == [(call_ids[0], None, charged)] + [(call_id, lease_id, charged) for call_id in call_ids[1:]]
        assert account_balances(own_database, user_id) == (100_000, 20 * charged, 0)

    def test_a_lease_half_used_is_topped_up_at_once_not_by_the_next_batch(self, own_database, user_id, tmp_path):
        """No batch runs (one in 5 s, after the calls): the call that leaves a lease less than half free starts
        its top-up, so every call after the first is still reserved from the lease."""

        async def scenario(callback, service):
            for _ in range(16):
                await call(callback, user_id)
                await service.tasks.side_tasks_done()  # the top-up, when one started
            count = "SELECT count(*) FROM solaris.{} WHERE user_id = %s AND {}"
            [(per_call,)] = rows(own_database, count.format("reservations", "lease_owner IS NULL"), user_id)
            [(top_ups,)] = rows(own_database, count.format("ledger", "kind = 'extend'"), user_id)
            [(settles,)] = rows(own_database, count.format("ledger", "kind = 'settle'"), user_id)
            return per_call, top_ups, settles

        per_call, top_ups, settles = run_with_callback(
            own_database,
            scenario,
            **lease_settings(tmp_path, default_tokens_per_user=100_000, lease_calls=4, settle_batch_interval_ms=5000),
        )
        assert per_call == 1  # the first call: a lease is for a user who calls again
        assert top_ups >= 3
        assert settles == 0  # every settle waits for a batch, which never came: the first call's too

    def test_a_leased_call_whose_provider_counted_more_prompt_teaches_the_margin(self, own_database, user_id, tmp_path):
        """The provider reports 100 prompt tokens for a prompt we bound far lower: the model's
        margin is learned from a leased call too, and only the first such call writes it."""

        async def scenario(callback, service):
            await call(callback, user_id, prompt_tokens=5)  # the first call, on its own reservation
            await call(callback, user_id, prompt_tokens=5)  # leased; nothing to learn
            await service.tasks.side_tasks_done()
            before = rows(own_database, "SELECT count(*) FROM solaris.model_margins")
            await call(callback, user_id, prompt_tokens=100)  # leased
            await service.tasks.side_tasks_done()
            return before, rows(own_database, "SELECT excess_tokens FROM solaris.model_margins")

        before, after = run_with_callback(
            own_database, scenario, **lease_settings(tmp_path, default_tokens_per_user=100_000)
        )
        assert before == [(0,)]
        [(excess_tokens,)] = after
        assert excess_tokens > 0

    def test_near_the_edge_calls_are_reserved_one_by_one(self, own_database, user_id, tmp_path):
        """No lease of two worst cases fits in a quarter of 300 tokens: the ledger reserves each call."""

        async def scenario(callback, service):
            return [await call(callback, user_id) for _ in range(3)]

        call_ids = run_with_callback(own_database, scenario, **lease_settings(tmp_path, default_tokens_per_user=300))
        assert rows(
            own_database,
            "SELECT call_id, state FROM solaris.reservations WHERE user_id = %s ORDER BY created_at",
            user_id,
        ) == [(call_id, "settled") for call_id in call_ids]

    def test_concurrent_calls_never_spend_more_than_the_allowance(self, own_database, user_id, tmp_path):
        """200 calls at once, each using all it may: what leases and per-call reservations
        let through together stays within the allowance."""

        async def one(callback) -> bool:
            try:
                # The provider reports the whole bound: our prompt count and the max_tokens it got.
                await call(callback, user_id, prompt_tokens=9, completion_tokens=None)
            except HTTPException:
                return False
            return True

        async def scenario(callback, service):
            served = await asyncio.gather(*(one(callback) for _ in range(200)))
            await leasing.flush_once(service)
            return sum(served)

        served = run_with_callback(own_database, scenario, **lease_settings(tmp_path, default_tokens_per_user=5_000))
        credited, debited, reserved = account_balances(own_database, user_id)
        assert debited <= credited
        assert served < 200 and reserved == 0
        assert debited > credited - 41  # all of it spent but less than one call: none refused in vain

    def test_a_blocked_account_gets_no_more_calls_from_its_lease(self, own_database, user_id, tmp_path):
        async def scenario(callback, service):
            await call(callback, user_id)
            await call(callback, user_id)  # a busy user: a lease, reserved from by the next call
            with psycopg.connect(own_database, autocommit=True) as connection:
                connection.execute("UPDATE solaris.accounts SET status = 'blocked' WHERE user_id = %s", (user_id,))
            await call(callback, user_id)  # served from the lease: its batch learns of the block
            await leasing.flush_once(service)
            with pytest.raises(HTTPException) as refused:
                await call(callback, user_id)
            return refused.value

        refusal = run_with_callback(own_database, scenario, **lease_settings(tmp_path, default_tokens_per_user=100_000))
        assert "account_blocked" in str(refusal.detail)
        assert account_balances(own_database, user_id)[2] == 0


class TestCrash:
    def test_calls_charged_in_memory_survive_the_process_and_are_charged_once(self, own_database, user_id, tmp_path):
        """A process killed between a call's success and its batch: the next one replays its journal."""

        async def killed(callback, service):
            call_ids = [await call(callback, user_id) for _ in range(5)]
            # What kill -9 leaves: the journal on disk, its lock gone, no batch written.
            service.settle_batches.journal.close()
            service.settle_batches = type(service.settle_batches)(type(service.settle_batches.journal)(tmp_path / "x"))
            service.leases = type(service.leases)()
            return call_ids

        call_ids = run_with_callback(
            own_database,
            killed,
            **lease_settings(tmp_path, default_tokens_per_user=100_000, settle_batch_interval_ms=5000),
        )
        # Nothing written: every settle waited for the batch, the first call's (reserved on its own) too.
        assert account_balances(own_database, user_id)[1] == 0

        async def next_process(callback, service):
            await service.replay_once()
            await service.replay_once()  # a second replay charges nothing more

        run_with_callback(own_database, next_process, **lease_settings(tmp_path, default_tokens_per_user=100_000))
        settles = rows(
            own_database, "SELECT call_id FROM solaris.ledger WHERE kind = 'settle' AND user_id = %s", user_id
        )
        assert sorted(settles) == sorted((call_id,) for call_id in call_ids)
        first = rows(own_database, "SELECT state FROM solaris.reservations WHERE call_id = %s", call_ids[0])
        assert first == [("settled",)]  # its own reservation, settled by the replay as the batch would have
        credited, debited, reserved = account_balances(own_database, user_id)
        assert debited == 5 * 57
        # The dead process's lease is still held until it expires (lease_ttl_s).
        assert reserved > 0
        with psycopg.connect(own_database, autocommit=True) as connection:
            connection.execute("UPDATE solaris.reservations SET expires_at = now() WHERE user_id = %s", (user_id,))
            connection.execute("SELECT solaris.expire_due(100)")
        assert account_balances(own_database, user_id) == (100_000, 5 * 57, 0)
