"""When something we call in LiteLLM fails unexpectedly, serve the call in a degraded way.

LiteLLM's internals change between releases (1.110 made the Redis-backed cache raise
`NotImplementedError` from `async_increment_cache`, so rate limits now count in its Redis
directly), and an exception from one of them must not turn every call into a 500. The
caller falls back to something of its own (rate limits counted in this process, our own
token count) and calls `note_degraded`, which logs one `litellm_degraded` WARNING per kind
of failure and counts every one in `solaris_litellm_degraded_total{what, error}`. The kinds:
"rate_limit_cache" (LiteLLM's cache failed to count), "rate_limit_redis" (LiteLLM's Redis,
reached directly, failed: down, or its client changed) and "token_counter".

The "already logged" memory is module-level on purpose: the failures come from code
shared by the whole process (the litellm module, the proxy's cache), not from one
QuotaService, and the callers (token counting, rate limits) have no service at hand.
It is bounded, so a stream of unexpected exception types cannot grow it for good.
"""

from __future__ import annotations

import logging
import threading

from solaris_hooks.logs import log_event
from solaris_hooks.quota.metrics import litellm_degraded

# Distinct (what, exception type) pairs remembered as logged. Past this, new kinds are
# still counted in the metric but no longer logged: a flood of kinds means something is
# badly wrong, and the first ones logged already say so.
kinds_logged_max = 256

_lock = threading.Lock()  # success events may run in LiteLLM's logging threads
_kinds_logged: set[tuple[str, str]] = set()


def note_degraded(what: str, error: BaseException) -> None:
    """Count a failure of a LiteLLM internal, logging its first occurrence per kind.

    `what` names what failed in a few words of our choosing (e.g. "rate_limit_cache",
    "token_counter"); it becomes a metric label, so it must never carry client input.
    """
    error_type = type(error).__name__
    litellm_degraded.labels(what=what, error=error_type).inc()
    kind = (what, error_type)
    with _lock:
        if kind in _kinds_logged or len(_kinds_logged) >= kinds_logged_max:
            return
        _kinds_logged.add(kind)
    # The exception's type only, never its text: a tokenizer error may quote the prompt,
    # and log lines carry ids and numbers only (logs.py).
    log_event("litellm_degraded", logging.WARNING, what=what, error=error_type)


def forget_logged() -> None:
    """Log every kind again on its next occurrence (tests, and a settings reload)."""
    with _lock:
        _kinds_logged.clear()
