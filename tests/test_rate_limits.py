"""Per-user rate limits, counted in LiteLLM's own cache (DualCache: memory here, Redis when configured)
and in a counter of this process's own, which holds the limit when that cache fails."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid

import httpx
import pytest
import yaml
from conftest import artifacts_dir, master_key, proxy_env, record_figure, write_proxy_config
from fastapi import HTTPException
from litellm.caching.dual_cache import DualCache
from litellm.proxy._types import UserAPIKeyAuth
from prometheus_client.parser import text_string_to_metric_families
from test_hooks import request_data, run_with_callback
from test_rate_limits_redis import chat, fresh_window, window_s

from solaris_hooks.exceptions import RateLimited
from solaris_hooks.quota import degraded, rate_limits
from solaris_hooks.quota.metrics import Metrics
from solaris_hooks.settings import Settings
from tests.support.harness import ProxyProcess

# LibreChat's key, trusted to name the end user each call is for (see trusted_keys).
key = UserAPIKeyAuth(api_key="sk-librechat-" + uuid.uuid4().hex, key_alias="librechat")
trusted = {"trusted_keys": ["librechat"]}


class FailingCache:
    """A cache whose increment raises, as LiteLLM 1.110's Redis-backed UserApiKeyCache does
    (`NotImplementedError`), or with any other unexpected exception."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.calls = 0

    async def async_increment_cache(self, **_: object) -> float:
        self.calls += 1
        raise self.error


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


def degraded_lines(caplog: pytest.LogCaptureFixture) -> list[dict]:
    lines = [json.loads(record.getMessage()) for record in caplog.records if record.name == "solaris_hooks"]
    return [line for line in lines if line["event"] == "litellm_degraded"]


@pytest.fixture
def fresh_degraded():
    """Every kind of failure is logged again on its first occurrence in the test."""
    degraded.forget_logged()
    yield
    degraded.forget_logged()


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
        cache, local = AnswerCache(answer), rate_limits.LocalWindows()
        settings = Settings(requests_per_minute=1)

        async def calls():
            await rate_limits.enforce(cache, "ana", 1, settings, now_s=0.0, local=local)
            with pytest.raises(RateLimited):
                await rate_limits.enforce(cache, "ana", 1, settings, now_s=1.0, local=local)

        asyncio.run(calls())

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


# The callback module of the proxy below: ours, with the auth cache LiteLLM hands the
# pre-call hook made to refuse increments as LiteLLM 1.110's UserApiKeyCache does when
# Redis backs it (`_python_only("async_increment_cache")`). Loaded by LiteLLM from the
# config's directory, after proxy_server built that cache.
refusing_cache_module = """
from litellm.proxy import proxy_server

from solaris_hooks.callback import quota_callback  # noqa: F401  (the callback the config names)


async def refuse_increment(*args, **kwargs):
    raise NotImplementedError("UserApiKeyCache.async_increment_cache is not part of the shared auth cache keyspace")


proxy_server.user_api_key_cache.async_increment_cache = refuse_increment
"""


class TestThroughAProxy:
    def test_a_proxy_whose_cache_refuses_increments_still_limits_and_never_answers_500(
        self, own_database, fake_provider, tmp_path
    ):
        """2 requests per minute with the 1.110 cache: calls 1-2 served, 3-4 refused 429 with the readable
        message, none a 500; the proxy logs one litellm_degraded line and counts every failure."""
        user_id = f"rl-1110-{uuid.uuid4().hex[:12]}@example.com"
        config = write_proxy_config(
            tmp_path / "litellm-config.yaml",
            fake_provider.base_url,
            {"default_tokens_per_user": 1000, "requests_per_minute": 2},
        )
        document = yaml.safe_load(config.read_text(encoding="utf-8"))
        document["litellm_settings"]["callbacks"] = "refusing_cache.quota_callback"
        config.write_text(yaml.safe_dump(document), encoding="utf-8")
        (tmp_path / "refusing_cache.py").write_text(refusing_cache_module, encoding="utf-8")
        artifacts_dir.mkdir(exist_ok=True)
        log_path = artifacts_dir / "rate-limits-refusing-cache.log"
        log_path.unlink(missing_ok=True)
        proxy = ProxyProcess(
            config, {**proxy_env(own_database, tmp_path), "SMTP_HOST": None, "SOLARIS_CONFIG": None}, log_path
        )
        try:
            proxy.wait_ready()
            window = fresh_window()
            responses = [chat(proxy, user_id, index) for index in range(4)]
            last_window = int(time.time() // window_s)
            scraped = httpx.get(
                f"{proxy.base_url}/solaris/metrics", timeout=30, headers={"Authorization": f"Bearer {master_key}"}
            )
        finally:
            proxy.stop()

        assert last_window == window, "the calls straddled a minute boundary"
        assert [response.status_code for response in responses] == [200, 200, 429, 429], [
            response.text[:300] for response in responses
        ]
        assert "muitas mensagens" in responses[2].json()["error"]["message"]
        degraded_logged = [line for line in proxy.log().splitlines() if '"litellm_degraded"' in line]
        assert len(degraded_logged) == 1, degraded_logged
        assert '"what": "rate_limit_cache"' in degraded_logged[0] and "NotImplementedError" in degraded_logged[0]
        samples = {
            (sample.labels.get("what"), sample.labels.get("error")): sample.value
            for family in text_string_to_metric_families(scraped.text)
            for sample in family.samples
            if sample.name == "solaris_litellm_degraded_total"
        }
        assert samples == {("rate_limit_cache", "NotImplementedError"): 4}
        record_figure(
            "LiteLLM 1.110 auth cache (async_increment_cache raises NotImplementedError), "
            "requests_per_minute 2, 4 calls of one user: statuses "
            f"{[response.status_code for response in responses]}, 1 litellm_degraded log line, "
            "solaris_litellm_degraded_total 4"
        )
