"""Per-end-user rate limits: requests and platform tokens per minute.

Counted in fixed one-minute windows in LiteLLM's own cache (the DualCache the pre-call
hook is given): in Redis when the proxy has one and `litellm_settings.enable_redis_auth_cache:
true` (LiteLLM attaches Redis to that cache only then), so replicas share the counts; in
this process's memory otherwise, and also while Redis is unreachable.
"""

from __future__ import annotations

import math
import time

from solaris_hooks.exceptions import RateLimited
from solaris_hooks.settings import Settings

window_s = 60


async def enforce(cache: object, user_id: str, tokens: int, settings: Settings, now_s: float | None = None) -> None:
    """Count this call against the user's window; raise RateLimited when over a limit."""
    if cache is None or (settings.requests_per_minute is None and settings.tokens_per_minute is None):
        return
    now_s = time.time() if now_s is None else now_s
    window = int(now_s // window_s)
    retry_after_s = max(1, math.ceil(window_s - now_s % window_s))
    limits = (("requests", settings.requests_per_minute, 1), ("tokens", settings.tokens_per_minute, tokens))
    for kind, limit, amount in limits:
        if limit is None:
            continue
        # Expires with its window (plus slack), so counters never pile up.
        used = await cache.async_increment_cache(key=f"solaris:{kind}:{user_id}:{window}", value=amount,
                                                 ttl=2 * window_s)
        if used is not None and used > limit:
            raise RateLimited(f"rate_limited_{kind}", limit=limit, retry_after_s=retry_after_s)
