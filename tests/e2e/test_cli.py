"""`solaris run`: the demo model on an embedded Postgres as `make run` serves it, and the
settings it refuses before starting the proxy. The other commands: tests/integration/test_cli.py."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import openai

from tests.support.cli import embedded_env, fresh_machine_env, solaris
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

    def test_run_prints_a_cli_line_that_works_from_another_directory(self, tmp_path):
        """`solaris run` prints `CLI: <solaris> users list (… SOLARIS_DATA_DIR=<dir>)`; that command,
        run from elsewhere, lists the users of this proxy's database and names its data dir."""
        artifacts_dir.mkdir(exist_ok=True)
        data, log = tmp_path / "data", artifacts_dir / "solaris-run-cli-line.log"
        log.unlink(missing_ok=True)  # the log is appended to: only this run's lines
        proxy = ProxyProcess(
            repo_dir / "litellm-config.yaml", {**fresh_machine_env, "SOLARIS_DATA_DIR": str(data)}, log
        ).wait_ready()
        try:
            key = (data / "master_key").read_text().strip()
            user_id = f"cli-{uuid.uuid4().hex[:8]}@example.com"
            AdminClient(proxy.base_url, key).add_tokens(user_id, 5)
        finally:
            proxy.stop()
        (line,) = [line for line in proxy.log().splitlines() if line.startswith("solaris: CLI: ")]
        hint = re.fullmatch(r"solaris: CLI: (\S+) users list  \(.*SOLARIS_DATA_DIR=(\S+)\)", line)
        assert hint, line
        executable, data_dir = Path.cwd() / hint[1], hint[2]
        assert data_dir == str(data)
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        listing = subprocess.run(
            [str(executable), "users", "list", "--csv"],
            env={**embedded_env(None), "SOLARIS_DATA_DIR": data_dir},
            cwd=elsewhere,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert listing.returncode == 0, listing.stderr
        assert user_id in listing.stdout
        assert f"solaris: using the embedded Postgres in {data}" in listing.stderr
        assert list(elsewhere.iterdir()) == []

    def test_run_refuses_a_bad_setting_before_starting_the_proxy(self, tmp_path, database_url):
        """A typo in solaris_settings stops `solaris run` with the key named, exit code 2."""
        config = tmp_path / "litellm-config.yaml"
        config.write_text("model_list: []\nsolaris_settings:\n  conversion_factor: -1\n")
        env = {
            **{k: v for k, v in fresh_machine_env.items() if v is not None},
            **dict(os.environ),
            "SOLARIS_DATABASE_URL": database_url,
            # Its master key goes here, not into a .solaris of the directory the tests run from.
            "SOLARIS_DATA_DIR": str(tmp_path / "data"),
        }
        result = solaris("run", "--config", str(config), env=env)
        assert result.returncode == 2
        assert "solaris_settings.conversion_factor" in result.stderr

    def test_run_without_a_config_file_says_so(self, tmp_path):
        """A missing config is named, not a traceback."""
        result = solaris("run", "--config", str(tmp_path / "nope.yaml"), env=dict(os.environ))
        assert result.returncode == 2
        assert "config file not found" in result.stderr


class TestCliAnywhere:
    """The other commands, without a database URL, from a directory that holds no deployment:
    one line naming where they looked and what to do, never a traceback, nothing created."""

    def test_a_directory_without_a_data_dir_gets_one_line_and_nothing_created(self, tmp_path):
        """`solaris users list` where there is no ./.solaris: exit 2, the directory named, no new .solaris."""
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        result = solaris("users", "list", env=embedded_env(None), cwd=elsewhere)
        assert result.returncode == 2
        assert result.stdout == ""
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"solaris: no embedded Postgres in {elsewhere / '.solaris'} ")
        for advice in ("`solaris run`", "SOLARIS_DATA_DIR", "SOLARIS_DATABASE_URL"):
            assert advice in line
        assert list(elsewhere.iterdir()) == []

    def test_a_data_dir_without_a_postgres_is_not_given_one(self, tmp_path):
        """SOLARIS_DATA_DIR naming a folder that is not a data dir: the same line, and no pgdata made there."""
        result = solaris("credits", "add", "ana", "5", "--reason", "r", env=embedded_env(tmp_path))
        assert result.returncode == 2
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"solaris: no embedded Postgres in {tmp_path} ")
        assert list(tmp_path.iterdir()) == []

    def test_a_data_dir_never_migrated_gets_one_line_naming_it(self, tmp_path):
        """An embedded Postgres without the `solaris` schema (where the old CLI crashed with
        UndefinedTable): exit 2, one line naming the data dir and what to do, no traceback."""
        data = tmp_path / "data"
        # Made and stopped by another process, as a CLI of the old kind left it.
        made = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, pathlib; from solaris_hooks.demo import embedded_postgres; "
                "embedded_postgres.start(pathlib.Path(sys.argv[1]))",
                str(data),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert made.returncode == 0, made.stderr
        result = solaris("users", "list", env=embedded_env(data))
        assert result.returncode == 2
        assert "Traceback" not in result.stderr and result.stdout == ""
        using, line = result.stderr.splitlines()
        assert using == f"solaris: using the embedded Postgres in {data}"
        assert line.startswith(f"solaris: the embedded Postgres in {data} has no `solaris` schema")
        for advice in ("`solaris migrate`", "SOLARIS_DATA_DIR", "SOLARIS_DATABASE_URL"):
            assert advice in line
