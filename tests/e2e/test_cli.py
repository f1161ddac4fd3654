"""`solaris run`: the demo model on an embedded Postgres as `make run` serves it, and the
settings it refuses before starting the proxy. The other commands: tests/integration/test_cli.py."""

from __future__ import annotations

import math
import os
import uuid

import openai

from tests.support.cli import fresh_machine_env, solaris
from tests.support.harness import AdminClient, ProxyProcess
from tests.support.suite import artifacts_dir, repo_dir


class TestRun:
    def test_run_serves_the_demo_model_on_an_embedded_postgres_that_survives_restarts(self, tmp_path):
        """No URL, no key: Postgres starts in the data dir, a master key is made once, quotas work."""
        artifacts_dir.mkdir(exist_ok=True)
        env = {**fresh_machine_env, "SOLARIS_DATA_DIR": str(tmp_path / "data")}
        config = repo_dir / "litellm-config.yaml"
        user_id = f"demo-{uuid.uuid4().hex[:8]}@example.com"

        first = ProxyProcess(config, env, artifacts_dir / "solaris-run.log").wait_ready()
        try:
            key = (tmp_path / "data" / "master_key").read_text().strip()
            assert f"master key {key}" in first.log()
            client = openai.OpenAI(base_url=f"{first.base_url}/v1", api_key=key)
            response = client.chat.completions.create(
                model="solaris-demo",
                messages=[{"role": "user", "content": "Olá, quem é você?"}],
                extra_headers={"x-litellm-end-user-id": user_id},
            )
            assert "demonstração" in response.choices[0].message.content
            used = AdminClient(first.base_url, key).settled_account(user_id)["used_tokens"]
            assert used == math.ceil(response.usage.total_tokens * 0.376)
        finally:
            assert first.stop() == 0

        second = ProxyProcess(config, env, artifacts_dir / "solaris-run.log", port=first.port).wait_ready()
        try:
            assert (tmp_path / "data" / "master_key").read_text().strip() == key
            assert AdminClient(second.base_url, key).account(user_id)["used_tokens"] == used
        finally:
            second.stop()
        # With the proxy stopped, the CLI starts the same embedded Postgres by itself.
        cli = {name: value for name, value in {**os.environ, **env}.items() if value is not None}
        shown = solaris("users", "show", user_id, env=cli)
        assert shown.returncode == 0, shown.stderr
        assert f"used_tokens       {used}" in shown.stdout

    def test_run_refuses_a_bad_setting_before_starting_the_proxy(self, tmp_path, database_url):
        """A typo in solaris_settings stops `solaris run` with the key named, exit code 2."""
        config = tmp_path / "litellm-config.yaml"
        config.write_text("model_list: []\nsolaris_settings:\n  conversion_factor: -1\n")
        env = {
            **{k: v for k, v in fresh_machine_env.items() if v is not None},
            **dict(os.environ),
            "SOLARIS_DATABASE_URL": database_url,
        }
        result = solaris("run", "--config", str(config), env=env)
        assert result.returncode == 2
        assert "solaris_settings.conversion_factor" in result.stderr

    def test_run_without_a_config_file_says_so(self, tmp_path):
        """A missing config is named, not a traceback."""
        result = solaris("run", "--config", str(tmp_path / "nope.yaml"), env=dict(os.environ))
        assert result.returncode == 2
        assert "config file not found" in result.stderr
