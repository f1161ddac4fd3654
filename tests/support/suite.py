"""What tests of every kind share: the repository's paths, the keys and settings of the
session's proxy, how a proxy is configured, and small helpers (charged, tampered, figures).

Test modules import these names from here, never from a conftest: with one conftest per
kind of test, `import conftest` would not say which one.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import yaml

from tests.support.harness import ProxyProcess, assert_ledger_consistent, scratch_database

repo_dir = Path(__file__).resolve().parents[2]
artifacts_dir = repo_dir / "test-artifacts"
master_key = "sk-solaris-test-" + uuid.uuid4().hex
credits_email = "creditos@example.com"
premium_factor = 1.5

# Settings the proxy under test runs with; tests read them instead of repeating numbers.
proxy_settings = {
    "default_tokens_per_user": 1000,
    "conversion_factor": 0.376,
    "model_factors": {"fake-premium": premium_factor},
    "credits_email": credits_email,
    "sweep_interval_s": 0.5,
    "mail_poll_interval_s": 0.2,
    "title_calls": "free",
}
admin_email = "chefe@example.com"
# Extra keys of the session proxy: one admin with an alias, one without, one read-only.
admin_key_ana = "sk-admin-ana-" + uuid.uuid4().hex
admin_key_anonymous = "sk-admin-" + uuid.uuid4().hex
viewer_key = "sk-viewer-" + uuid.uuid4().hex


def charged(raw_tokens: int, factor: float = proxy_settings["conversion_factor"]) -> int:
    """What the ledger charges for a settle: ceil(raw × factor), in exact decimals as in SQL."""
    return math.ceil(Decimal(raw_tokens) * Decimal(str(factor)))


def tampered(signature: str) -> str:
    """A signature with its first character changed: the last character of a base64
    signature carries padding bits, and changing it may decode to the very same bytes."""
    return ("A" if signature[0] != "A" else "B") + signature[1:]


def record_figure(line: str) -> None:
    """A measured figure for docs/reliability.md, appended to test-artifacts/reliability.txt."""
    artifacts_dir.mkdir(exist_ok=True)
    with (artifacts_dir / "reliability.txt").open("a", encoding="utf-8") as figures:
        figures.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {line}\n")
    print(line)


def write_proxy_config(path: Path, provider_url: str, settings: dict) -> Path:
    models = [
        {
            "model_name": name,
            "litellm_params": {"model": f"openai/{name}", "api_base": provider_url, "api_key": "fake-key"},
        }
        for name in ("fake-model", "fake-premium")
    ]
    # One model per route, all served by the fake provider. Real upstream names, so LiteLLM
    # treats them as in production (its cost map knows them); the fake bills by those names
    # (`gpt-image` reports image tokens, `transcribe` reports tokens, whisper seconds).
    # Anthropic's api_base has no /v1: LiteLLM appends /v1/messages.
    routes = {
        "fake-anthropic": ("anthropic/claude-sonnet-4-5", "chat"),
        "fake-embedding": ("openai/text-embedding-3-small", "embedding"),
        "fake-image": ("openai/gpt-image-1", "image_generation"),
        "fake-dalle": ("openai/dall-e-3", "image_generation"),
        "fake-tts": ("openai/tts-1", "audio_speech"),
        "fake-whisper": ("openai/whisper-1", "audio_transcription"),
        "fake-transcribe": ("openai/gpt-4o-transcribe", "audio_transcription"),
        "fake-moderation": ("openai/omni-moderation-latest", "moderation"),
    }
    models += [
        {
            "model_name": name,
            "litellm_params": {
                "model": model,
                "api_key": "fake-key",
                "api_base": provider_url.removesuffix("/v1") if model.startswith("anthropic/") else provider_url,
            },
            "model_info": {"mode": mode},
        }
        for name, (model, mode) in routes.items()
    ]
    config = {
        "model_list": models,
        "litellm_settings": {"callbacks": "solaris_hooks.callback.quota_callback", "num_retries": 0},
        "router_settings": {"num_retries": 0},
        "solaris_settings": settings,
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def proxy_env(database_url: str, data_dir: Path) -> dict[str, str | None]:
    env: dict[str, str | None] = {
        "SOLARIS_DATABASE_URL": database_url,
        "LITELLM_MASTER_KEY": master_key,
        "SOLARIS_DATA_DIR": str(data_dir),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    # The machine's own overrides must not change what the tests expect.
    for name in (
        "DEFAULT_TOKENS_PER_USER",
        "CONVERSION_FACTOR",
        "CREDITS_EMAIL",
        "DATABASE_URL",
        "SOLARIS_PUBLIC_URL",
        "SOLARIS_SECRET_KEY",
    ):
        env[name] = None
    return env


@contextmanager
def proxy_of_its_own(
    database_url: str, provider_url: str, work: Path, settings: dict, log_name: str
) -> Iterator[ProxyProcess]:
    """A proxy with settings of its own, on a scratch database of its own (so what it learns,
    prompt margins included, touches no other test); its ledger must replay when it stops."""
    with scratch_database(database_url) as url:
        config = write_proxy_config(work / "litellm-config.yaml", provider_url, settings)
        process = ProxyProcess(config, proxy_env(url, work), artifacts_dir / log_name).wait_ready()
        process.database_url = url  # type: ignore[attr-defined]
        try:
            yield process
        finally:
            process.stop()
        assert_ledger_consistent(url)
