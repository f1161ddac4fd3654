"""Per-user rate limits, counted in LiteLLM's own cache (DualCache: memory here, Redis when configured)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from fastapi import HTTPException
from litellm.caching.dual_cache import DualCache
from litellm.proxy._types import UserAPIKeyAuth

from solaris_hooks import rate_limits
from solaris_hooks.exceptions import RateLimited
from solaris_hooks.settings import Settings
from test_hooks import request_data, run_with_callback

key = UserAPIKeyAuth(user_id="key-owner")


class TestEnforce:
    def test_requests_over_the_limit_in_one_minute_are_refused_with_the_wait(self):
        """The 4th request of a 3-per-minute user is refused, saying how many seconds remain."""
        cache = DualCache()
        settings = Settings(requests_per_minute=3)

        async def calls():
            for _ in range(3):
                await rate_limits.enforce(cache, "ana", 10, settings, now_s=120.0)
            with pytest.raises(RateLimited) as refused:
                await rate_limits.enforce(cache, "ana", 10, settings, now_s=135.5)
            return refused.value

        refusal = asyncio.run(calls())
        assert refusal.params == {"limit": 3, "retry_after_s": 45}  # the window ends at 180 s

    def test_a_new_minute_starts_afresh_and_users_are_counted_apart(self):
        """Limits reset with the window and never mix two users."""
        cache = DualCache()
        settings = Settings(requests_per_minute=1)

        async def calls():
            await rate_limits.enforce(cache, "ana", 1, settings, now_s=60.0)
            await rate_limits.enforce(cache, "bia", 1, settings, now_s=61.0)
            await rate_limits.enforce(cache, "ana", 1, settings, now_s=120.0)

        asyncio.run(calls())

    def test_tokens_per_minute_count_the_reserved_platform_tokens(self):
        """A user with 100 tokens per minute gets two calls of 40, not a third."""
        cache = DualCache()
        settings = Settings(tokens_per_minute=100)

        async def calls():
            for _ in range(2):
                await rate_limits.enforce(cache, "ana", 40, settings, now_s=0.0)
            with pytest.raises(RateLimited) as refused:
                await rate_limits.enforce(cache, "ana", 40, settings, now_s=1.0)
            return refused.value

        assert asyncio.run(calls()).message_key == "rate_limited_tokens"

    def test_no_limits_configured_touches_nothing(self):
        """Without limits the cache is not even consulted."""
        asyncio.run(rate_limits.enforce(object(), "ana", 10, Settings()))


class TestThroughTheHook:
    def test_a_rate_limited_call_gets_429_retry_after_and_a_readable_message(self, database_url):
        """The pre-call hook answers 429 with Retry-After and pt-BR text, and reserves nothing."""
        user_id = f"rl-{uuid.uuid4().hex}"
        cache = DualCache()

        async def scenario(callback, service):
            await callback.async_pre_call_hook(key, cache, request_data(user_id, uuid.uuid4().hex), "acompletion")
            with pytest.raises(HTTPException) as refused:
                await callback.async_pre_call_hook(key, cache, request_data(user_id, uuid.uuid4().hex), "acompletion")
            async with service.connection() as connection:
                cursor = await connection.execute("SELECT count(*) FROM solaris.reservations WHERE user_id = %s",
                                                  (user_id,))
                return refused.value, (await cursor.fetchone())[0]

        error, reservations = run_with_callback(database_url, scenario, requests_per_minute=1)
        assert error.status_code == 429
        assert 1 <= int(error.headers["retry-after"]) <= 60
        assert "muitas mensagens" in error.detail["error"]["message"]
        assert reservations == 1
