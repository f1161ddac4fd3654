"""Per-user rate limits shared by replicas through Redis (issue 7).

`requests_per_minute` counts in the DualCache LiteLLM hands the pre-call hook: its
`user_api_key_cache`, which LiteLLM 1.108 backs with Redis only when the proxy has a
Redis (`litellm_settings.cache` with a Redis `cache_params`, or
`general_settings.coordination_redis`) AND `litellm_settings.enable_redis_auth_cache:
true`. Two real proxies on one scratch database and a real `redis-server` on loopback
show that the limit then holds for a user whose calls alternate between the replicas,
and that without Redis each replica counts alone. Figures are appended to test-artifacts/reliability.txt.

LiteLLM 1.110's cache refuses increments once Redis backs it, so the limits count in that
Redis themselves (quota/rate_limits.py): TestCountedInRedisDirectly drives them with LiteLLM's
own cache and RedisCache objects on the same redis-server, in-process (two replicas are two
caches with two counters of their own), to run on any installed LiteLLM (`make compat`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import redis
import yaml
from litellm.caching.dual_cache import DualCache
from litellm.caching.redis_cache import RedisCache
from litellm.proxy.common_utils.user_api_key_cache import UserApiKeyCache

from solaris_hooks.exceptions import RateLimited
from solaris_hooks.quota import rate_limits
from solaris_hooks.settings import Settings
from tests.support.degraded import FailingCache, degraded_lines
from tests.support.harness import ProxyProcess, free_port, wait_for
from tests.support.proxy_calls import chat, fresh_window, window_s
from tests.support.suite import artifacts_dir, credits_email, proxy_env, record_figure, write_proxy_config

requests_per_minute = 4
# Leases off: the tests count one reserve row per served call (a lease reserves many in one row).
settings = {
    "default_tokens_per_user": 1000,
    "credits_email": credits_email,
    "requests_per_minute": requests_per_minute,
    "leases": False,
}


class RedisServer:
    """Debian's `redis-server` on a free loopback port, in memory only; its output in a log file."""

    def __init__(self, executable: str, work: Path, log_path: Path) -> None:
        self.port = free_port()
        self._log = open(log_path, "ab")  # noqa: SIM115 - open while the process runs; closed by stop()
        command = [
            executable,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(work),
        ]
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        self.client = redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True, socket_timeout=5)

        def answers() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}; see {log_path}")
            try:
                return self.client.ping()
            except redis.ConnectionError:
                return False

        wait_for(answers, 15, what=f"redis-server on port {self.port}")

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> RedisServer:
    executable = shutil.which("redis-server")
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing: .ci/run installs Debian's redis-server package")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    artifacts_dir.mkdir(exist_ok=True)
    server = RedisServer(executable, tmp_path_factory.mktemp("redis"), artifacts_dir / "redis-server.log")
    yield server
    server.stop()


def replica(name: str, database_url: str, provider_url: str, work: Path, extra: dict) -> ProxyProcess:
    """A proxy of this test's own with our settings, plus `extra` ({section: {setting: value}}
    merged into the config); not waited for."""
    work.mkdir(parents=True, exist_ok=True)
    config_path = write_proxy_config(work / "litellm-config.yaml", provider_url, settings)
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    for section, values in extra.items():
        config.setdefault(section, {}).update(values)
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {**proxy_env(database_url, work), "SMTP_HOST": None, "SOLARIS_CONFIG": None}
    # LiteLLM also builds a Redis from REDIS_* variables: only the config may name one here.
    env.update({variable: None for variable in os.environ if variable.startswith("REDIS_")})
    log_path = artifacts_dir / f"rate-limits-{name}.log"
    artifacts_dir.mkdir(exist_ok=True)
    log_path.unlink(missing_ok=True)
    return ProxyProcess(config_path, env, log_path)


def replicas(database_url: str, provider_url: str, work: Path, extra: dict, label: str) -> list[ProxyProcess]:
    """Two replicas on one database, started together."""
    started = [replica(f"{label}-{name}", database_url, provider_url, work / name, extra) for name in "ab"]
    try:
        for proxy in started:
            proxy.wait_ready()
    except BaseException:
        for proxy in started:
            proxy.stop()
        raise
    return started


def settled(database_url: str, user_id: str) -> int:
    """Reservations of the user once none is in flight (settling runs after the answer)."""

    def counts() -> tuple[int, int] | None:
        with psycopg.connect(database_url) as connection:
            reserved, reserves = connection.execute(
                "SELECT (SELECT reserved_tokens FROM solaris.accounts WHERE user_id = %s), "
                "(SELECT count(*) FROM solaris.ledger WHERE user_id = %s AND kind = 'reserve')",
                (user_id, user_id),
            ).fetchone()
        return (reserves,) if reserved == 0 else None

    return wait_for(counts, 30, what=f"no call of {user_id} in flight")[0]


def redis_config(route: str, port: int) -> dict:
    """The two ways LiteLLM gets a Redis, each with the switch that gives it to the hook's cache."""
    if route == "cache":
        # default_off: LiteLLM answers from the cache only when a request asks it to.
        return {
            "litellm_settings": {
                "cache": True,
                "enable_redis_auth_cache": True,
                "cache_params": {"type": "redis", "host": "127.0.0.1", "port": port, "mode": "default_off"},
            }
        }
    return {
        "litellm_settings": {"enable_redis_auth_cache": True},
        "general_settings": {"coordination_redis": {"host": "127.0.0.1", "port": port}},
    }


class TestSharedThroughRedis:
    @pytest.mark.parametrize("route", ["cache", "coordination_redis"])
    def test_two_replicas_count_one_users_requests_together(
        self, route, redis_server, own_database, fake_provider, tmp_path
    ):
        """4 requests per minute: calls alternating between two replicas are refused from the 5th,
        though neither replica saw more than 3; the counter lives in Redis."""
        user_id = f"rl-redis-{uuid.uuid4().hex[:12]}@example.com"
        proxies = replicas(
            own_database, fake_provider.base_url, tmp_path, redis_config(route, redis_server.port), f"redis-{route}"
        )
        try:
            window = fresh_window()
            # Calls 1..6 go to a, b, a, b, a, b: each replica sees 3.
            responses = [chat(proxies[index % 2], user_id, index) for index in range(6)]
            last_window = int(time.time() // window_s)
            key = f"solaris:requests:{user_id}:{window}"
            counted = redis_server.client.get(key)
            ttl_s = redis_server.client.ttl(key)
            reserves = settled(own_database, user_id)
        finally:
            for proxy in proxies:
                proxy.stop()

        assert last_window == window, "the calls straddled a minute boundary"
        statuses = [response.status_code for response in responses]
        assert statuses == [200] * requests_per_minute + [429, 429], [response.text[:300] for response in responses]
        for refused in responses[requests_per_minute:]:
            retry_after_s = int(refused.headers["retry-after"])
            assert 1 <= retry_after_s <= window_s
            message = refused.json()["error"]["message"]
            assert "muitas mensagens" in message, message
            assert f"limite de {requests_per_minute} por minuto" in message, message
            assert f"Tente novamente em {retry_after_s} segundos" in message, message
        # Every call was counted once, in Redis, the refused ones too; the key dies with its window.
        assert float(counted) == 6
        assert 0 < ttl_s <= 2 * window_s
        # The refused calls reserved nothing.
        assert reserves == requests_per_minute
        record_figure(
            f"rate limits via Redis ({route}): 2 proxies, requests_per_minute {requests_per_minute}, "
            f"1 user alternating: calls 1-4 served (2 per proxy), 5th (proxy a) and 6th (proxy b) refused 429, "
            "Retry-After "
            f"{responses[4].headers['retry-after']} s, although each proxy saw 3; Redis {key} = {counted}, "
            f"TTL {ttl_s} s"
        )


class TestWithoutRedis:
    def test_two_replicas_without_redis_count_apart(self, own_database, fake_provider, tmp_path):
        """The documented fallback: without Redis each replica keeps its own count in memory."""
        user_id = f"rl-memory-{uuid.uuid4().hex[:12]}@example.com"
        proxies = replicas(own_database, fake_provider.base_url, tmp_path, {}, "memory")
        try:
            window = fresh_window()
            # 8 calls alternating (4 per replica, each at its limit), then a 5th to replica a.
            responses = [chat(proxies[index % 2], user_id, index) for index in range(2 * requests_per_minute)]
            responses.append(chat(proxies[0], user_id, 2 * requests_per_minute))
            last_window = int(time.time() // window_s)
            reserves = settled(own_database, user_id)
        finally:
            for proxy in proxies:
                proxy.stop()

        assert last_window == window, "the calls straddled a minute boundary"
        statuses = [response.status_code for response in responses]
        assert statuses == [200] * (2 * requests_per_minute) + [429], [response.text[:300] for response in responses]
        assert "muitas mensagens" in responses[-1].json()["error"]["message"]
        assert reserves == 2 * requests_per_minute
        record_figure(
            f"rate limits without Redis: 2 proxies, requests_per_minute {requests_per_minute}, 1 user: "
            f"{2 * requests_per_minute} calls in one minute served ({requests_per_minute} per proxy), "
            f"the next one to proxy a refused 429"
        )


class Refusing1110Cache(FailingCache):
    """The shape of LiteLLM 1.110's auth cache with Redis attached, on whatever LiteLLM is installed:
    `async_increment_cache` raises NotImplementedError, the Redis is its `redis_connection`."""

    def __init__(self, redis_cache: RedisCache) -> None:
        super().__init__(NotImplementedError("UserApiKeyCache.async_increment_cache is not part of ..."))
        self.redis_connection = redis_cache


def hook_cache(shape: str, port: int, namespace: str | None = None) -> object:
    """The cache a replica's pre-call hook gets when LiteLLM has the Redis on `port`."""
    redis_cache = RedisCache(host="127.0.0.1", port=port, namespace=namespace)
    if shape == "litellm UserApiKeyCache":
        return UserApiKeyCache(redis_cache=redis_cache)  # as enable_redis_auth_cache attaches it
    return Refusing1110Cache(redis_cache)


class Replica:
    """What one proxy process keeps for the limits: the hook's cache and counters of its own."""

    def __init__(self, cache: object) -> None:
        self.cache = cache
        self.local = rate_limits.LocalWindows()
        self.shared = rate_limits.SharedCounts()

    async def call(self, user_id: str, settings: Settings, now_s: float) -> int:
        """200 when the limits let the call through, 429 when they refuse it."""
        try:
            await rate_limits.enforce(
                self.cache, user_id, 10, settings, now_s=now_s, local=self.local, shared=self.shared
            )
        except RateLimited:
            return 429
        return 200


class TestCountedInRedisDirectly:
    @pytest.mark.parametrize("shape", ["litellm UserApiKeyCache", "1.110 refusing cache"])
    def test_two_replicas_count_one_users_requests_in_redis(self, shape, redis_server, fresh_degraded, caplog):
        """4 requests per minute, calls alternating between two replicas whose cache holds LiteLLM's
        Redis: the 5th and 6th are refused though each replica counted 3; Redis holds 6 under our
        key, expiring with the window; the cache's own increment is never asked."""
        user_id = f"rl-direct-{uuid.uuid4().hex[:12]}@example.com"
        settings = Settings(requests_per_minute=requests_per_minute)
        replicas_ab = [Replica(hook_cache(shape, redis_server.port)) for _ in "ab"]
        now_s = time.time()
        key = f"solaris:requests:{user_id}:{int(now_s // window_s)}"

        async def calls() -> list[int]:
            return [await replicas_ab[index % 2].call(user_id, settings, now_s) for index in range(6)]

        with caplog.at_level(logging.INFO, logger="solaris_hooks"):
            statuses = asyncio.run(calls())
        assert statuses == [200] * requests_per_minute + [429, 429]
        assert float(redis_server.client.get(key)) == 6
        assert 0 < redis_server.client.ttl(key) <= 2 * window_s
        window = int(now_s // window_s)
        assert [replica.local.increment("requests", user_id, window, 0) for replica in replicas_ab] == [3, 3]
        assert [getattr(replica.cache, "calls", 0) for replica in replicas_ab] == [0, 0]
        assert degraded_lines(caplog) == []

    def test_a_replica_on_litellms_own_increment_and_one_counting_directly_share_one_key(self, redis_server):
        """Replicas of mixed versions during an upgrade: one counts through LiteLLM 1.108's
        `async_increment_cache` (our code before), one in Redis directly, both under the cache's
        namespace; 2 calls of the first leave one for the second in a 3-per-minute window."""
        user_id = f"rl-mixed-{uuid.uuid4().hex[:12]}@example.com"
        namespace = f"ns{uuid.uuid4().hex[:6]}"
        now_s = time.time()
        key = f"solaris:requests:{user_id}:{int(now_s // window_s)}"
        before = DualCache(redis_cache=RedisCache(host="127.0.0.1", port=redis_server.port, namespace=namespace))
        after = Replica(hook_cache("1.110 refusing cache", redis_server.port, namespace=namespace))
        settings = Settings(requests_per_minute=3)

        async def calls() -> list[int]:
            for _ in range(2):
                await before.async_increment_cache(key=key, value=1, ttl=2 * window_s)
            return [await after.call(user_id, settings, now_s) for _ in range(2)]

        assert asyncio.run(calls()) == [200, 429]
        assert float(redis_server.client.get(f"{namespace}:{key}")) == 4
        assert redis_server.client.get(key) is None

    def test_an_unreachable_redis_leaves_each_replica_its_own_count_and_one_warning(self, fresh_degraded, caplog):
        """LiteLLM's Redis refuses connections: a 2-per-minute user gets 2 calls, the 3rd refused by
        the replica's own count, never a 500, and one litellm_degraded line names rate_limit_redis."""
        replica = Replica(hook_cache("1.110 refusing cache", free_port()))
        settings = Settings(requests_per_minute=2)
        user_id = f"rl-down-{uuid.uuid4().hex[:12]}@example.com"

        now_s = time.time()

        async def calls() -> list[int]:
            return [await replica.call(user_id, settings, now_s) for _ in range(3)]

        with caplog.at_level(logging.INFO, logger="solaris_hooks"):
            statuses = asyncio.run(calls())
        assert statuses == [200, 200, 429]
        lines = degraded_lines(caplog)
        assert [line["what"] for line in lines] == ["rate_limit_redis"], lines
