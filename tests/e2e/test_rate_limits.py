"""Per-user rate limits on a real proxy whose LiteLLM cache refuses increments, as LiteLLM
1.110's Redis-backed one does: the counter of the process's own still holds the limit."""

from __future__ import annotations

import time
import uuid

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.harness import ProxyProcess
from tests.support.proxy_calls import chat, fresh_window, window_s
from tests.support.suite import artifacts_dir, master_key, proxy_env, record_figure, write_proxy_config

# The callback module of the proxy below: ours, with the auth cache LiteLLM hands the
# pre-call hook made to refuse increments as LiteLLM 1.110's UserApiKeyCache does when
# Redis backs it (`_python_only("async_increment_cache")`). Loaded by LiteLLM from the
# config's directory, after proxy_server built that cache.
refusing_cache_module = """
from litellm.proxy import proxy_server

from solaris_hooks.callback import quota_callback  # noqa: F401  (the callback the config names)


async def refuse_increment(*args, **kwargs):
    raise NotImplementedError("UserApiKeyCache.async_increment_cache is not part of the shared auth cache keyspace")


proxy_server.user_api_key_cache.async_increment_cache = refuse_increment
"""


class TestThroughAProxy:
    def test_a_proxy_whose_cache_refuses_increments_still_limits_and_never_answers_500(
        self, own_database, fake_provider, tmp_path
    ):
        """2 requests per minute with the 1.110 cache: calls 1-2 served, 3-4 refused 429 with the readable
        message, none a 500; the proxy logs one litellm_degraded line and counts every failure."""
        user_id = f"rl-1110-{uuid.uuid4().hex[:12]}@example.com"
        config = write_proxy_config(
            tmp_path / "litellm-config.yaml",
            fake_provider.base_url,
            {"default_tokens_per_user": 1000, "requests_per_minute": 2},
        )
        document = yaml.safe_load(config.read_text(encoding="utf-8"))
        document["litellm_settings"]["callbacks"] = "refusing_cache.quota_callback"
        config.write_text(yaml.safe_dump(document), encoding="utf-8")
        (tmp_path / "refusing_cache.py").write_text(refusing_cache_module, encoding="utf-8")
        artifacts_dir.mkdir(exist_ok=True)
        log_path = artifacts_dir / "rate-limits-refusing-cache.log"
        log_path.unlink(missing_ok=True)
        proxy = ProxyProcess(
            config, {**proxy_env(own_database, tmp_path), "SMTP_HOST": None, "SOLARIS_CONFIG": None}, log_path
        )
        try:
            proxy.wait_ready()
            window = fresh_window()
            responses = [chat(proxy, user_id, index) for index in range(4)]
            last_window = int(time.time() // window_s)
            scraped = httpx.get(
                f"{proxy.base_url}/solaris/metrics", timeout=30, headers={"Authorization": f"Bearer {master_key}"}
            )
        finally:
            proxy.stop()

        assert last_window == window, "the calls straddled a minute boundary"
        assert [response.status_code for response in responses] == [200, 200, 429, 429], [
            response.text[:300] for response in responses
        ]
        assert "muitas mensagens" in responses[2].json()["error"]["message"]
        degraded_logged = [line for line in proxy.log().splitlines() if '"litellm_degraded"' in line]
        assert len(degraded_logged) == 1, degraded_logged
        assert '"what": "rate_limit_cache"' in degraded_logged[0] and "NotImplementedError" in degraded_logged[0]
        samples = {
            (sample.labels.get("what"), sample.labels.get("error")): sample.value
            for family in text_string_to_metric_families(scraped.text)
            for sample in family.samples
            if sample.name == "solaris_litellm_degraded_total"
        }
        assert samples == {("rate_limit_cache", "NotImplementedError"): 4}
        record_figure(
            "LiteLLM 1.110 auth cache (async_increment_cache raises NotImplementedError), "
            "requests_per_minute 2, 4 calls of one user: statuses "
            f"{[response.status_code for response in responses]}, 1 litellm_degraded log line, "
            "solaris_litellm_degraded_total 4"
        )
