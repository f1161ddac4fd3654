"""Per-end-user rate limits: requests and platform tokens per minute.

Counted in fixed one-minute windows twice: in LiteLLM's own cache (the DualCache the
pre-call hook is given), and in a bounded counter of this process's own. The cache is in
Redis when the proxy has one and `litellm_settings.enable_redis_auth_cache: true` (LiteLLM
attaches Redis to that cache only then), so replicas share the counts; in this process's
memory otherwise, and also while Redis is unreachable. Our own counter is why a limit
still holds when that cache fails: LiteLLM 1.110's Redis-backed cache raises
`NotImplementedError` from `async_increment_cache`, and a cache may also answer None.
A call is refused when either count is over the limit; this process's own count can only
be at most the shared one, so with a working cache it never refuses anything more.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from typing import Any, Protocol

from solaris_hooks.exceptions import RateLimited
from solaris_hooks.quota.degraded import note_degraded
from solaris_hooks.settings import Settings

window_s = 60
# (kind, user) counters this process keeps. One minute of distinct users fits many times
# over; past it the least recently counted are dropped, which can only let a user who has
# been quiet longest start afresh in this process's count (the shared count still holds).
local_counters_max = 100_000


class CountingCache(Protocol):
    """What the limits use of LiteLLM's DualCache (tests pass fakes)."""

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


async def _shared_count(cache: CountingCache | None, key: str, amount: int) -> float | None:
    """The count in LiteLLM's cache after adding `amount`; None when it cannot say."""
    if cache is None:
        return None
    try:
        # Expires with its window (plus slack), so counters never pile up.
        used = await cache.async_increment_cache(key=key, value=amount, ttl=2 * window_s)
        return None if used is None else float(used)
    except Exception as error:  # any failure of LiteLLM's cache degrades to our own count
        note_degraded("rate_limit_cache", error)
        return None


async def enforce(
    cache: CountingCache | None,
    user_id: str,
    tokens: int,
    settings: Settings,
    now_s: float | None = None,
    local: LocalWindows | None = None,
) -> None:
    """Count this call against the user's window; raise RateLimited when over a limit.

    `local` is this process's own counter (tests pass a fresh one)."""
    if settings.requests_per_minute is None and settings.tokens_per_minute is None:
        return
    local = process_windows if local is None else local
    now_s = time.time() if now_s is None else now_s
    window = int(now_s // window_s)
    retry_after_s = max(1, math.ceil(window_s - now_s % window_s))
    limits = (("requests", settings.requests_per_minute, 1), ("tokens", settings.tokens_per_minute, tokens))
    for kind, limit, amount in limits:
        if limit is None:
            continue
        counted_here = local.increment(kind, user_id, window, amount)
        shared = await _shared_count(cache, f"solaris:{kind}:{user_id}:{window}", amount)
        if max(counted_here, shared or 0.0) > limit:
            raise RateLimited(f"rate_limited_{kind}", limit=limit, retry_after_s=retry_after_s)
