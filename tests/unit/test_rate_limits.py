"""Per-user rate limits, counted in LiteLLM's own cache (DualCache: memory here, Redis when configured)
and in a counter of this process's own, which holds the limit when that cache fails.

Through the pre-call hook on a real database: tests/integration/test_rate_limits.py."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from litellm.caching.dual_cache import DualCache

from solaris_hooks.exceptions import RateLimited
from solaris_hooks.quota import rate_limits
from solaris_hooks.quota.metrics import Metrics
from solaris_hooks.settings import Settings
from tests.support.degraded import FailingCache, degraded_lines, second_call_of_one_per_minute_is_refused


class AnswerCache:
    """A cache whose increment answers the same thing every time (None, or nonsense)."""

    def __init__(self, answer: object) -> None:
        self.answer = answer

    async def async_increment_cache(self, **_: object) -> object:
        return self.answer


def degraded_count(what: str, error: str) -> float:
    """solaris_litellm_degraded_total{what, error} as /solaris/metrics exposes it."""
    value = Metrics().registry.get_sample_value("solaris_litellm_degraded_total", {"what": what, "error": error})
    return value or 0.0


class TestEnforce:
    def test_requests_over_the_limit_in_one_minute_are_refused_with_the_wait(self):
        """The 4th request of a 3-per-minute user is refused, saying how many seconds remain."""
        cache, local = DualCache(), rate_limits.LocalWindows()
        settings = Settings(requests_per_minute=3)

        async def calls():
            for _ in range(3):
                await rate_limits.enforce(cache, "ana", 10, settings, now_s=120.0, local=local)
            with pytest.raises(RateLimited) as refused:
                await rate_limits.enforce(cache, "ana", 10, settings, now_s=135.5, local=local)
            return refused.value

        refusal = asyncio.run(calls())
        assert refusal.params == {"limit": 3, "retry_after_s": 45}  # the window ends at 180 s

    def test_a_new_minute_starts_afresh_and_users_are_counted_apart(self):
        """Limits reset with the window and never mix two users."""
        cache, local = DualCache(), rate_limits.LocalWindows()
        settings = Settings(requests_per_minute=1)

        async def calls():
            await rate_limits.enforce(cache, "ana", 1, settings, now_s=60.0, local=local)
            await rate_limits.enforce(cache, "bia", 1, settings, now_s=61.0, local=local)
            await rate_limits.enforce(cache, "ana", 1, settings, now_s=120.0, local=local)

        asyncio.run(calls())

    @pytest.mark.parametrize("cache_kind", ["working", "failing"])
    def test_tokens_per_minute_count_the_reserved_platform_tokens(self, cache_kind):
        """A user with 100 tokens per minute gets two calls of 40, not a third, even when the cache fails."""
        cache = DualCache() if cache_kind == "working" else FailingCache(NotImplementedError())
        local = rate_limits.LocalWindows()
        settings = Settings(tokens_per_minute=100)

        async def calls():
            for _ in range(2):
                await rate_limits.enforce(cache, "ana", 40, settings, now_s=0.0, local=local)
            with pytest.raises(RateLimited) as refused:
                await rate_limits.enforce(cache, "ana", 40, settings, now_s=1.0, local=local)
            return refused.value

        assert asyncio.run(calls()).message_key == "rate_limited_tokens"

    def test_no_limits_configured_touches_nothing(self):
        """Without limits the cache is not even consulted."""
        asyncio.run(rate_limits.enforce(object(), "ana", 10, Settings()))


class TestWhenTheCacheFails:
    @pytest.mark.parametrize(
        "error",
        [
            NotImplementedError("UserApiKeyCache.async_increment_cache is not part of the shared auth cache keyspace"),
            RuntimeError("something new broke"),
        ],
        ids=["NotImplementedError", "RuntimeError"],
    )
    def test_the_limit_holds_per_process_with_one_log_line_and_a_metric_per_failure(
        self, error, fresh_degraded, caplog
    ):
        """A cache that raises on every increment: the 4th request of a 3-per-minute user is still
        refused, one litellm_degraded WARNING names the failure, and the metric counts all four."""
        cache, local = FailingCache(error), rate_limits.LocalWindows()
        settings = Settings(requests_per_minute=3)
        error_type = type(error).__name__
        before = degraded_count("rate_limit_cache", error_type)

        async def calls():
            for _ in range(3):
                await rate_limits.enforce(cache, "ana", 10, settings, now_s=120.0, local=local)
            with pytest.raises(RateLimited) as refused:
                await rate_limits.enforce(cache, "ana", 10, settings, now_s=121.0, local=local)
            return refused.value

        with caplog.at_level(logging.INFO, logger="solaris_hooks"):
            refusal = asyncio.run(calls())
        assert refusal.message_key == "rate_limited_requests"
        assert cache.calls == 4
        lines = degraded_lines(caplog)
        assert lines == [{"event": "litellm_degraded", "what": "rate_limit_cache", "error": error_type}]
        assert [record.levelno for record in caplog.records if "litellm_degraded" in record.getMessage()] == [
            logging.WARNING
        ]
        assert degraded_count("rate_limit_cache", error_type) - before == 4

    def test_the_log_line_never_carries_the_exceptions_text(self, fresh_degraded, caplog):
        """An exception's text may quote a prompt; only its type is logged."""
        secret = f"segredo-{uuid.uuid4().hex}"
        with caplog.at_level(logging.INFO, logger="solaris_hooks"):
            asyncio.run(
                rate_limits.enforce(
                    FailingCache(ValueError(secret)),
                    "ana",
                    10,
                    Settings(requests_per_minute=3),
                    local=rate_limits.LocalWindows(),
                )
            )
        assert degraded_lines(caplog) and secret not in caplog.text

    @pytest.mark.parametrize("answer", [None, "not a number"], ids=["None", "nonsense"])
    def test_a_cache_that_cannot_say_the_count_does_not_lift_the_limit(self, answer, fresh_degraded):
        """DualCache answers None when it has no backend left; the 2nd request of a 1-per-minute user
        is refused all the same, and nonsense is a failure like any other."""
        second_call_of_one_per_minute_is_refused(AnswerCache(answer))

    def test_a_shared_count_above_this_processs_own_still_refuses(self):
        """With a working shared cache, calls other replicas made count: the shared count decides."""
        cache = DualCache()
        settings = Settings(requests_per_minute=2)

        async def calls():
            await cache.async_increment_cache(key="solaris:requests:ana:0", value=2, ttl=120)  # another replica
            with pytest.raises(RateLimited):
                await rate_limits.enforce(cache, "ana", 1, settings, now_s=1.0, local=rate_limits.LocalWindows())

        asyncio.run(calls())


class TestLocalWindows:
    def test_counts_reset_with_the_window_and_keep_users_apart(self):
        """A count belongs to one (kind, user, window); a new window starts from the amount."""
        local = rate_limits.LocalWindows()
        assert [
            local.increment("requests", "ana", 5, 1),
            local.increment("requests", "ana", 5, 1),
            local.increment("requests", "bia", 5, 1),
            local.increment("tokens", "ana", 5, 30),
            local.increment("requests", "ana", 6, 1),
        ] == [1, 2, 1, 30, 1]

    def test_the_counter_never_holds_more_than_its_bound(self):
        """Past its bound the least recently counted users are dropped, the others kept."""
        local = rate_limits.LocalWindows(counters_max=3)
        for user in ("u1", "u2", "u3", "u4", "u5"):
            local.increment("requests", user, 0, 1)
        local.increment("requests", "u3", 0, 1)
        local.increment("requests", "u6", 0, 1)
        assert len(local) == 3
        assert local.increment("requests", "u3", 0, 1) == 3  # kept: counted recently
        assert local.increment("requests", "u1", 0, 1) == 1  # dropped first
