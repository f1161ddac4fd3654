"""Per-end-user rate limits: requests and platform tokens per minute.

Counted in fixed one-minute windows twice: in a count shared by the replicas when LiteLLM has
a Redis, and in a bounded counter of this process's own. A call is refused when either count
is over the limit; this process's own count can only be at most the shared one, so with a
working shared count it never refuses anything more.

The shared count: LiteLLM attaches its Redis to the cache the pre-call hook is given (its
`user_api_key_cache`) when the proxy has one and `litellm_settings.enable_redis_auth_cache:
true`. We count in that Redis ourselves, INCRBYFLOAT and EXPIRE in one round trip on
LiteLLM's own client, under the key (and the cache's namespace) that LiteLLM 1.108's
`async_increment_cache` used, so replicas on 1.108 and on 1.110 share one count. 1.110 moved
that cache onto a store of its own whose `async_increment_cache` raises NotImplementedError,
and keeps the Redis as `redis_connection` "for features that share it under keys of their
own"; 1.108 has it as the DualCache's `redis_cache`. Without a Redis the cache's own
`async_increment_cache` counts (in this process's memory). When that fails (its API changed)
or answers None, or Redis fails, our own counter holds the limit, and `note_degraded` logs
one `litellm_degraded` line per kind of failure.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from solaris_hooks.exceptions import RateLimited
from solaris_hooks.quota.degraded import note_degraded
from solaris_hooks.settings import Settings

window_s = 60
# A counting key expires with its window plus slack, so counters never pile up in Redis.
key_ttl_s = 2 * window_s
# After Redis failed, this process counts alone this long before trying it again: a Redis
# that hangs then costs one socket timeout per pause, not one per call.
redis_pause_s = 5.0
# (kind, user) counters this process keeps. One minute of distinct users fits many times
# over; past it the least recently counted are dropped, which can only let a user who has
# been quiet longest start afresh in this process's count (the shared count still holds).
local_counters_max = 100_000


class CountingCache(Protocol):
    """What the limits use of LiteLLM's DualCache when it has no Redis (see redis_of; tests pass fakes)."""

    async def async_increment_cache(self, key: str, value: float, **kwargs: Any) -> float | None: ...


class LocalWindows:
    """Fixed-window counters in this process's memory, bounded in size."""

    def __init__(self, counters_max: int = local_counters_max) -> None:
        self.counters_max = counters_max
        self._counts: OrderedDict[tuple[str, str], tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()

    def increment(self, kind: str, user_id: str, window: int, amount: float) -> float:
        """Add `amount` to the user's count in `window`; returns the new count."""
        key = (kind, user_id)
        with self._lock:
            counted_window, count = self._counts.pop(key, (window, 0.0))
            count = (count if counted_window == window else 0.0) + amount
            self._counts[key] = (window, count)  # most recently counted last
            while len(self._counts) > self.counters_max:
                self._counts.popitem(last=False)
            return count

    def __len__(self) -> int:
        return len(self._counts)


process_windows = LocalWindows()


def redis_of(cache: object) -> Any | None:
    """The RedisCache LiteLLM attached to the hook's cache, if any: `redis_connection` in 1.110,
    the DualCache's `redis_cache` in 1.108; None without one, or when neither can give a client."""
    for attribute in ("redis_connection", "redis_cache"):
        try:
            found = getattr(cache, attribute, None)
        except Exception:  # a property of a changed cache that fails: as if it had no Redis
            continue
        if found is not None and callable(getattr(found, "init_async_client", None)):
            return found
    return None


async def redis_increment(redis_cache: Any, key: str, amount: float) -> float:
    """Adds `amount` to `key` in LiteLLM's Redis and (re)sets its expiry, in one round trip;
    returns the new count. The key gets the cache's namespace, as LiteLLM's increments do."""
    fix_namespace = getattr(redis_cache, "check_and_fix_namespace", None)
    name = fix_namespace(key=key) if callable(fix_namespace) else key
    client = redis_cache.init_async_client()
    # Pipelined without MULTI, as LiteLLM's own increments are: a cluster client may not
    # run MULTI, and a connection lost between the two commands at worst leaves one key of
    # one minute without an expiry (the next call of that minute sets it).
    async with client.pipeline(transaction=False) as pipeline:
        pipeline.incrbyfloat(name, amount)
        pipeline.expire(name, key_ttl_s)
        count, _ = await pipeline.execute()
    return float(count)


class SharedCounts:
    """The count the replicas share: in LiteLLM's Redis when it has one, else through the
    cache's own `async_increment_cache`; None when neither can say. Remembers a Redis failure
    for `pause_s`, during which it leaves Redis alone."""

    def __init__(self, pause_s: float = redis_pause_s, clock: Callable[[], float] = time.monotonic) -> None:
        self.pause_s = pause_s
        self.clock = clock
        self._redis_paused_until_s = -math.inf
        self._redis_error: BaseException | None = None

    async def increment(self, cache: CountingCache | None, key: str, amount: int) -> float | None:
        """The shared count of `key` after adding `amount`."""
        if cache is None:
            return None
        redis_cache = redis_of(cache)
        if redis_cache is not None:
            return await self._in_redis(redis_cache, key, amount)
        try:
            used = await cache.async_increment_cache(key=key, value=amount, ttl=key_ttl_s)
            return None if used is None else float(used)
        except Exception as error:  # any failure of LiteLLM's cache degrades to our own count
            note_degraded("rate_limit_cache", error)
            return None

    async def _in_redis(self, redis_cache: Any, key: str, amount: int) -> float | None:
        if self._redis_error is not None and self.clock() < self._redis_paused_until_s:
            note_degraded("rate_limit_redis", self._redis_error)  # counted; logged once per kind
            return None
        try:
            return await redis_increment(redis_cache, key, amount)
        except Exception as error:  # Redis down, or LiteLLM's client changed: our own count
            self._redis_error = error
            self._redis_paused_until_s = self.clock() + self.pause_s
            note_degraded("rate_limit_redis", error)
            return None


process_shared = SharedCounts()


async def enforce(
    cache: CountingCache | None,
    user_id: str,
    tokens: int,
    settings: Settings,
    now_s: float | None = None,
    local: LocalWindows | None = None,
    shared: SharedCounts | None = None,
) -> None:
    """Count this call against the user's window; raise RateLimited when over a limit.

    `local` is this process's own counter and `shared` the way to the shared count (tests
    pass fresh ones)."""
    if settings.requests_per_minute is None and settings.tokens_per_minute is None:
        return
    local = process_windows if local is None else local
    shared = process_shared if shared is None else shared
    now_s = time.time() if now_s is None else now_s
    window = int(now_s // window_s)
    retry_after_s = max(1, math.ceil(window_s - now_s % window_s))
    limits = (("requests", settings.requests_per_minute, 1), ("tokens", settings.tokens_per_minute, tokens))
    for kind, limit, amount in limits:
        if limit is None:
            continue
        counted_here = local.increment(kind, user_id, window, amount)
        counted_shared = await shared.increment(cache, f"solaris:{kind}:{user_id}:{window}", amount)
        if max(counted_here, counted_shared or 0.0) > limit:
            raise RateLimited(f"rate_limited_{kind}", limit=limit, retry_after_s=retry_after_s)
