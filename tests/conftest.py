"""Session-wide real parts: one Postgres, one fake provider, one LiteLLM proxy with our hooks.

A proxy start costs seconds, so every test shares one and isolates itself with a fresh
user id. Postgres is `SOLARIS_DATABASE_URL`/`DATABASE_URL` when set, else an embedded
pgserver in a temporary directory.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import openai
import pytest
import yaml

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from solaris_hooks.db.migrations import migrate  # noqa: E402
from tests.support.fake_provider import FakeProvider  # noqa: E402
from tests.support.harness import (  # noqa: E402
    AdminClient,
    MailCatcher,
    ProxyProcess,
    assert_ledger_consistent,
    free_port,
    scratch_database,
)

artifacts_dir = Path(__file__).resolve().parent.parent / "test-artifacts"
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


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    given = os.environ.get("SOLARIS_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if given:
        migrate(given)
        yield given
        return
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="delete")
    url = server.get_uri()
    migrate(url)
    yield url
    server.cleanup()


@pytest.fixture
def empty_database(database_url: str) -> str:
    with scratch_database(database_url, migrated=False) as url:
        yield url


@pytest.fixture
def own_database(database_url: str, request: pytest.FixtureRequest) -> str:
    """A migrated database that only this test uses; its ledger must replay too."""
    with scratch_database(database_url) as url:
        yield url
        assert_ledger_consistent(url, getattr(request.module, "overspent_on_purpose", ()))


@pytest.fixture(scope="session")
def fake_provider() -> FakeProvider:
    provider = FakeProvider().start()
    yield provider
    provider.stop()


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


@pytest.fixture(scope="session")
def mail_catcher() -> MailCatcher:
    """The SMTP server the session's proxy sends its alerts to."""
    catcher = MailCatcher().start()
    yield catcher
    catcher.stop()


@pytest.fixture(scope="session")
def proxy(
    database_url: str, fake_provider: FakeProvider, mail_catcher: MailCatcher, tmp_path_factory: pytest.TempPathFactory
) -> ProxyProcess:
    artifacts_dir.mkdir(exist_ok=True)
    work = tmp_path_factory.mktemp("proxy")
    config = write_proxy_config(work / "litellm-config.yaml", fake_provider.base_url, proxy_settings)
    mail_env = {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(mail_catcher.port),
        "SMTP_SECURITY": "none",
        "SMTP_FROM": "IA SOLARIS <quota@solaris.example>",
        "ADMIN_EMAILS": admin_email,
    }
    key_env = {"SOLARIS_ADMIN_KEYS": f"ana={admin_key_ana}, {admin_key_anonymous}", "SOLARIS_VIEWER_KEYS": viewer_key}
    port = free_port()
    # Alert e-mails link to the personal usage page on this proxy.
    page_env = {"SOLARIS_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    process = ProxyProcess(
        config,
        {**proxy_env(database_url, work), **mail_env, **key_env, **page_env},
        artifacts_dir / "proxy.log",
        port=port,
    )
    process.wait_ready()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def admin(proxy: ProxyProcess) -> AdminClient:
    return AdminClient(proxy.base_url, master_key)


@pytest.fixture
def client(proxy: ProxyProcess) -> openai.OpenAI:
    """The official client as LibreChat configures it; retries left at the SDK default."""
    return openai.OpenAI(base_url=f"{proxy.base_url}/v1", api_key=master_key)


@pytest.fixture
def async_client(proxy: ProxyProcess) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{proxy.base_url}/v1", api_key=master_key, max_retries=0)


@pytest.fixture
def user_id() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


@pytest.fixture(autouse=True)
def ledger_replays(request: pytest.FixtureRequest):
    """After every test that touched the database, the ledger replays to the balances."""
    yield
    if "database_url" in request.fixturenames:
        assert_ledger_consistent(request.getfixturevalue("database_url"))
