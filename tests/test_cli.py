"""The `solaris` command: `run` on an embedded Postgres as `make run` does, and `doctor`."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import uuid
from pathlib import Path

import openai
import psycopg

from conftest import artifacts_dir
from solaris_hooks.testing import AdminClient, ProxyProcess

repo = Path(__file__).resolve().parent.parent
# `make run` as a new user has it: no database URL, no master key, no API key.
fresh_machine_env: dict[str, str | None] = {
    name: None
    for name in ("SOLARIS_DATABASE_URL", "DATABASE_URL", "LITELLM_MASTER_KEY", "OPENAI_API_KEY",
                 "DEFAULT_TOKENS_PER_USER", "CONVERSION_FACTOR", "CREDITS_EMAIL")
}


def solaris(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "solaris_hooks.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120)


class TestRun:
    def test_run_serves_the_demo_model_on_an_embedded_postgres_that_survives_restarts(self, tmp_path):
        """No URL, no key: Postgres starts in the data dir, a master key is made once, quotas work."""
        artifacts_dir.mkdir(exist_ok=True)
        env = {**fresh_machine_env, "SOLARIS_DATA_DIR": str(tmp_path / "data")}
        config = repo / "litellm-config.yaml"
        user_id = f"demo-{uuid.uuid4().hex[:8]}@example.com"

        first = ProxyProcess(config, env, artifacts_dir / "solaris-run.log").wait_ready()
        try:
            key = (tmp_path / "data" / "master_key").read_text().strip()
            assert f"master key {key}" in first.log()
            client = openai.OpenAI(base_url=f"{first.base_url}/v1", api_key=key)
            response = client.chat.completions.create(
                model="solaris-demo", messages=[{"role": "user", "content": "Olá, quem é você?"}],
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

    def test_run_refuses_a_bad_setting_before_starting_the_proxy(self, tmp_path, database_url):
        """A typo in solaris_settings stops `solaris run` with the key named, exit code 2."""
        config = tmp_path / "litellm-config.yaml"
        config.write_text("model_list: []\nsolaris_settings:\n  conversion_factor: -1\n")
        env = {**{k: v for k, v in fresh_machine_env.items() if v is not None},
               **dict(os.environ), "SOLARIS_DATABASE_URL": database_url}
        result = solaris("run", "--config", str(config), env=env)
        assert result.returncode == 2
        assert "solaris_settings.conversion_factor" in result.stderr

    def test_run_without_a_config_file_says_so(self, tmp_path):
        """A missing config is named, not a traceback."""
        result = solaris("run", "--config", str(tmp_path / "nope.yaml"), env=dict(os.environ))
        assert result.returncode == 2
        assert "config file not found" in result.stderr


class TestDoctor:
    def test_doctor_passes_on_a_consistent_ledger(self, own_database):
        """A ledger written only through our functions passes every check."""
        with psycopg.connect(own_database, autocommit=True) as connection:
            connection.execute("SELECT solaris.reserve('ana', 'c1', 100, 1, 1000, 60, 'm', 0.376)")
            connection.execute("SELECT solaris.resolve('c1', 'settle', 80, 'm', NULL)")
        result = solaris("doctor", env={**dict(os.environ), "SOLARIS_DATABASE_URL": own_database})
        assert result.returncode == 0, result.stdout
        assert "4 of 4 checks passed" in result.stdout

    def test_doctor_names_an_account_that_does_not_replay(self, own_database):
        """A balance edited behind the ledger's back is reported with its user, exit code 1."""
        with psycopg.connect(own_database, autocommit=True) as connection:
            connection.execute("SELECT solaris.provision('bia', 1000)")
            connection.execute("UPDATE solaris.accounts SET credited_tokens = 5000 WHERE user_id = 'bia'")
        result = solaris("doctor", env={**dict(os.environ), "SOLARIS_DATABASE_URL": own_database})
        with psycopg.connect(own_database, autocommit=True) as connection:
            connection.execute("UPDATE solaris.accounts SET credited_tokens = 1000 WHERE user_id = 'bia'")
        assert result.returncode == 1
        assert "replaying the ledger" in result.stdout and "bia" in result.stdout
