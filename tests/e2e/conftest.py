"""The session's LiteLLM proxy with our hooks, and the clients that talk to it.

A proxy start costs seconds, so every end-to-end test shares one and isolates itself with
a fresh user id; tests that need other settings start a proxy of their own
(tests.support.suite.proxy_of_its_own).
"""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.support.fake_provider import FakeProvider
from tests.support.harness import AdminClient, MailCatcher, ProxyProcess, api_client, free_port
from tests.support.suite import (
    admin_email,
    admin_key_ana,
    admin_key_anonymous,
    artifacts_dir,
    master_key,
    proxy_env,
    proxy_settings,
    viewer_key,
    write_proxy_config,
)


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
def http(proxy: ProxyProcess) -> httpx.Client:
    """The proxy's HTTP routes as the master key (a request's own headers add to or override it)."""
    with api_client(proxy.base_url, master_key) as client:
        yield client


@pytest.fixture
def client(proxy: ProxyProcess) -> openai.OpenAI:
    """The official client as LibreChat configures it; retries left at the SDK default."""
    return openai.OpenAI(base_url=f"{proxy.base_url}/v1", api_key=master_key)


@pytest.fixture
def async_client(proxy: ProxyProcess) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{proxy.base_url}/v1", api_key=master_key, max_retries=0)
