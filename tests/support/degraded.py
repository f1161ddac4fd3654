"""LiteLLM internals that fail, and what solaris_hooks says about it (litellm_degraded)."""

from __future__ import annotations

import asyncio
import json

import pytest

from solaris_hooks.exceptions import RateLimited
from solaris_hooks.quota import rate_limits
from solaris_hooks.settings import Settings


class FailingCache:
    """A cache whose increment raises, as LiteLLM 1.110's Redis-backed UserApiKeyCache does
    (`NotImplementedError`), or with any other unexpected exception."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.calls = 0

    async def async_increment_cache(self, **_: object) -> float:
        self.calls += 1
        raise self.error


def degraded_lines(caplog: pytest.LogCaptureFixture) -> list[dict]:
    lines = [json.loads(record.getMessage()) for record in caplog.records if record.name == "solaris_hooks"]
    return [line for line in lines if line["event"] == "litellm_degraded"]


def second_call_of_one_per_minute_is_refused(cache: object) -> None:
    """A user limited to one request a minute calls twice, a second apart: the first passes,
    the second is refused, whatever the cache does (this process's own count holds)."""
    local, settings = rate_limits.LocalWindows(), Settings(requests_per_minute=1)

    async def calls() -> None:
        await rate_limits.enforce(cache, "ana", 1, settings, now_s=0.0, local=local)  # type: ignore[arg-type]
        with pytest.raises(RateLimited):
            await rate_limits.enforce(cache, "ana", 1, settings, now_s=1.0, local=local)  # type: ignore[arg-type]

    asyncio.run(calls())
