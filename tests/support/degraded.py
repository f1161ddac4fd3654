"""LiteLLM internals that fail, and what solaris_hooks says about it (litellm_degraded)."""

from __future__ import annotations

import json

import pytest


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
