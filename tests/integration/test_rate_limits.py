"""Per-user rate limits through the pre-call hook on a real database: a refusal is a 429 with
Retry-After and a readable message. The counting itself: tests/unit/test_rate_limits.py."""

from __future__ import annotations

import logging
import uuid

import pytest
from fastapi import HTTPException
from litellm.caching.dual_cache import DualCache
from litellm.proxy._types import UserAPIKeyAuth

from tests.support.degraded import FailingCache, degraded_lines
from tests.support.event_loop import run_with_callback
from tests.support.payloads import request_data

# LibreChat's key, trusted to name the end user each call is for (see trusted_keys).
key = UserAPIKeyAuth(api_key="sk-librechat-" + uuid.uuid4().hex, key_alias="librechat")


trusted = {"trusted_keys": ["librechat"]}


class TestThroughTheHook:
    @pytest.mark.parametrize(
        "error",
        [None, NotImplementedError(), RuntimeError("boom")],
        ids=["working cache", "NotImplementedError", "RuntimeError"],
    )
    def test_a_rate_limited_call_gets_429_retry_after_and_a_readable_message(
        self, error, database_url, fresh_degraded, caplog
    ):
        """The 2nd call of a 1-per-minute user gets 429 with Retry-After and pt-BR text and reserves
        nothing, also when the cache LiteLLM 1.110 hands the hook raises (then never a 500, and
        one litellm_degraded line)."""
        user_id = f"rl-{uuid.uuid4().hex}"
        cache = DualCache() if error is None else FailingCache(error)

        async def scenario(callback, service):
            await callback.async_pre_call_hook(key, cache, request_data(user_id, uuid.uuid4().hex), "acompletion")
            with pytest.raises(HTTPException) as refused:
                await callback.async_pre_call_hook(key, cache, request_data(user_id, uuid.uuid4().hex), "acompletion")
            async with service.connection() as connection:
                cursor = await connection.execute(
                    "SELECT count(*) FROM solaris.reservations WHERE user_id = %s", (user_id,)
                )
                return refused.value, (await cursor.fetchone())[0]

        with caplog.at_level(logging.INFO, logger="solaris_hooks"):
            refusal, reservations = run_with_callback(database_url, scenario, requests_per_minute=1, **trusted)
        assert refusal.status_code == 429
        assert 1 <= int(refusal.headers["retry-after"]) <= 60
        assert "muitas mensagens" in refusal.detail["error"]["message"]
        assert reservations == 1
        assert [line["error"] for line in degraded_lines(caplog)] == ([] if error is None else [type(error).__name__])
