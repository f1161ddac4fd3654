"""Rate limits counted in LiteLLM's Redis directly, reached from the cache the pre-call hook is
given: 1.110's `redis_connection` (its cache refuses increments), 1.108's `redis_cache`.

In-process stand-ins for LiteLLM's RedisCache and its redis.asyncio client; the real
redis-server and LiteLLM's own classes: tests/e2e/test_rate_limits_redis.py."""

from __future__ import annotations

import asyncio
import logging

import pytest
from litellm.caching.dual_cache import DualCache

from solaris_hooks.exceptions import RateLimited
from solaris_hooks.quota import rate_limits
from solaris_hooks.quota.metrics import Metrics
from solaris_hooks.settings import Settings
from tests.support.degraded import FailingCache, degraded_lines, second_call_of_one_per_minute_is_refused


class StandInRedis:
    """redis.asyncio's client as far as a pipeline of INCRBYFLOAT and EXPIRE goes, in a dict."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.counts: dict[str, float] = {}
        self.ttls_s: dict[str, int] = {}
        self.round_trips = 0
        self.error = error

    def pipeline(self, transaction: bool = True) -> StandInPipeline:
        return StandInPipeline(self)


class StandInPipeline:
    def __init__(self, redis: StandInRedis) -> None:
        self.redis = redis
        self.commands: list[tuple[str, str, float]] = []

    async def __aenter__(self) -> StandInPipeline:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None

    def incrbyfloat(self, name: str, amount: float) -> StandInPipeline:
        self.commands.append(("incrbyfloat", name, amount))
        return self

    def expire(self, name: str, time: int) -> StandInPipeline:
        self.commands.append(("expire", name, time))
        return self

    async def execute(self) -> list[object]:
        self.redis.round_trips += 1
        if self.redis.error is not None:
            raise self.redis.error
        results: list[object] = []
        for command, name, argument in self.commands:
            if command == "incrbyfloat":
                self.redis.counts[name] = self.redis.counts.get(name, 0.0) + argument
                results.append(self.redis.counts[name])
            else:
                self.redis.ttls_s[name] = int(argument)
                results.append(True)
        return results


class StandInRedisCache:
    """LiteLLM's RedisCache as the limits use it: its async client and its key namespace."""

    def __init__(self, client: StandInRedis, namespace: str | None = None) -> None:
        self.client = client
        self.namespace = namespace

    def init_async_client(self) -> StandInRedis:
        return self.client

    def check_and_fix_namespace(self, key: str) -> str:
        return f"{self.namespace}:{key}" if self.namespace else key


def cache_of(version: str, redis_cache: object) -> object:
    """The cache the hook gets when LiteLLM has a Redis: 1.110's refuses increments and keeps the
    Redis as `redis_connection`; 1.108's is a DualCache with it as `redis_cache`."""
    if version == "1.110":
        cache = FailingCache(NotImplementedError("UserApiKeyCache.async_increment_cache is not part of ..."))
        cache.redis_connection = redis_cache
        return cache
    dual = DualCache()
    dual.redis_cache = redis_cache
    return dual


def degraded_count(what: str, error: str) -> float:
    value = Metrics().registry.get_sample_value("solaris_litellm_degraded_total", {"what": what, "error": error})
    return value or 0.0


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


@pytest.mark.parametrize("version", ["1.110", "1.108"])
class TestCountingInLiteLLMsRedis:
    def test_the_count_lands_in_redis_under_the_namespaced_key_and_other_replicas_count_too(
        self, version, fresh_degraded, caplog
    ):
        """3 per minute, 2 calls already counted by another replica: this replica serves one and
        refuses the next, though it saw only 2; one round trip per call, the key expires with its
        window plus slack, LiteLLM's own increment is never asked, nothing is logged as degraded."""
        redis = StandInRedis()
        key = "litellm:solaris:requests:ana:2"
        redis.counts[key] = 2.0  # another replica's calls of this minute
        cache = cache_of(version, StandInRedisCache(redis, namespace="litellm"))
        local, shared = rate_limits.LocalWindows(), rate_limits.SharedCounts()
        settings = Settings(requests_per_minute=3)

        async def calls():
            await rate_limits.enforce(cache, "ana", 10, settings, now_s=120.0, local=local, shared=shared)
            with pytest.raises(RateLimited):
                await rate_limits.enforce(cache, "ana", 10, settings, now_s=121.0, local=local, shared=shared)

        with caplog.at_level(logging.INFO, logger="solaris_hooks"):
            asyncio.run(calls())
        assert redis.counts == {key: 4.0}
        assert redis.ttls_s == {key: 2 * rate_limits.window_s}
        assert redis.round_trips == 2
        assert getattr(cache, "calls", 0) == 0
        assert degraded_lines(caplog) == []

    def test_requests_and_tokens_count_under_keys_of_their_own(self, version):
        """Both limits set: one key per kind, the tokens key counts the call's platform tokens."""
        redis = StandInRedis()
        cache = cache_of(version, StandInRedisCache(redis))
        settings = Settings(requests_per_minute=10, tokens_per_minute=1000)
        asyncio.run(
            rate_limits.enforce(
                cache,
                "ana",
                42,
                settings,
                now_s=60.0,
                local=rate_limits.LocalWindows(),
                shared=rate_limits.SharedCounts(),
            )
        )
        assert redis.counts == {"solaris:requests:ana:1": 1.0, "solaris:tokens:ana:1": 42.0}

    def test_when_redis_fails_the_process_counts_alone_logs_once_and_pauses_redis(
        self, version, fresh_degraded, caplog
    ):
        """Redis refuses connections: the 4th call of a 3-per-minute user is still refused by this
        process's own count, one litellm_degraded line names rate_limit_redis, the metric counts
        every call; Redis is tried once, then again only after the pause."""
        redis = StandInRedis(error=ConnectionError("Connection refused"))
        cache = cache_of(version, StandInRedisCache(redis))
        clock = Clock()
        local, shared = rate_limits.LocalWindows(), rate_limits.SharedCounts(pause_s=5.0, clock=clock)
        settings = Settings(requests_per_minute=3)
        before = degraded_count("rate_limit_redis", "ConnectionError")

        async def calls():
            for _ in range(3):
                await rate_limits.enforce(cache, "ana", 10, settings, now_s=120.0, local=local, shared=shared)
            with pytest.raises(RateLimited):
                await rate_limits.enforce(cache, "ana", 10, settings, now_s=121.0, local=local, shared=shared)

        with caplog.at_level(logging.INFO, logger="solaris_hooks"):
            asyncio.run(calls())
        assert redis.round_trips == 1
        assert degraded_lines(caplog) == [
            {"event": "litellm_degraded", "what": "rate_limit_redis", "error": "ConnectionError"}
        ]
        assert degraded_count("rate_limit_redis", "ConnectionError") - before == 4

        redis.error = None
        clock.now_s += 5.0
        asyncio.run(rate_limits.enforce(cache, "bia", 1, settings, now_s=122.0, local=local, shared=shared))
        assert redis.round_trips == 2
        assert redis.counts == {"solaris:requests:bia:2": 1.0}


class TestWhatIsNotARedis:
    @pytest.mark.parametrize("attribute", ["redis_connection", "redis_cache"])
    def test_an_attribute_without_a_client_is_not_used_and_litellms_increment_counts(self, attribute, fresh_degraded):
        """A `redis_connection` or `redis_cache` of another kind (a release that renamed things): the
        cache's own increment counts, and when it refuses, this process's own count holds."""
        cache = FailingCache(NotImplementedError())
        setattr(cache, attribute, object())
        second_call_of_one_per_minute_is_refused(cache)
        assert cache.calls == 2

    def test_a_property_that_raises_counts_as_no_redis(self, fresh_degraded):
        """Looking for the Redis never turns a call into a 500."""

        class Changed(FailingCache):
            @property
            def redis_connection(self) -> object:
                raise RuntimeError("not attached")

        cache = Changed(NotImplementedError())
        asyncio.run(
            rate_limits.enforce(cache, "ana", 1, Settings(requests_per_minute=5), local=rate_limits.LocalWindows())
        )
        assert cache.calls == 1
