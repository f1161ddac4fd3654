"""`solaris` with the shipped litellm-config.yaml, which trusts `os.environ/LIBRECHAT_API_KEY`:
`solaris run` stands the master key in for an unset key, the other commands a key nobody holds.
The proxy process and the database are stand-ins here; tests/e2e/test_cli.py runs them for real."""

from __future__ import annotations

import pytest

import solaris_hooks.cli.main as cli_main
import solaris_hooks.db.migrations
from solaris_hooks.cli.main import main
from tests.support.suite import repo_dir

shipped_config = str(repo_dir / "litellm-config.yaml")
master_key = "sk-unit-master-0123456789"


class RecordedProxy:
    """Takes the place of the LiteLLM process: keeps the environment it was given, exits at once."""

    environments: list[dict[str, str]] = []

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.environments.append(dict(env))

    def wait(self) -> int:
        return 0


@pytest.fixture
def proxy_start(monkeypatch, tmp_path) -> list[dict[str, str]]:
    """`solaris run` up to the proxy's start, with no database and no process; the environments it passes."""
    monkeypatch.setenv("SOLARIS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LITELLM_MASTER_KEY", master_key)
    monkeypatch.setattr(
        cli_main, "cli_database_url", lambda environ=None, create=False: "postgresql://unit.invalid/none"
    )
    monkeypatch.setattr(solaris_hooks.db.migrations, "migrate", lambda url: [])
    monkeypatch.setattr(cli_main.subprocess, "Popen", RecordedProxy)
    monkeypatch.setattr(cli_main.signal, "signal", lambda signum, handler: None)
    RecordedProxy.environments = []
    return RecordedProxy.environments


@pytest.mark.parametrize("unset", ["absent", "", "  "])
def test_run_gives_the_proxy_the_master_key_as_librechats_key_when_none_is_set(proxy_start, monkeypatch, capsys, unset):
    """LIBRECHAT_API_KEY absent or blank: the shipped config loads and the proxy gets the master key in it."""
    monkeypatch.setenv("LIBRECHAT_API_KEY", "")  # restored afterwards, whatever run does
    if unset == "absent":
        monkeypatch.delenv("LIBRECHAT_API_KEY")
    else:
        monkeypatch.setenv("LIBRECHAT_API_KEY", unset)

    assert main(["run", "--config", shipped_config]) == 0
    (environment,) = proxy_start
    assert environment["LIBRECHAT_API_KEY"] == environment["LITELLM_MASTER_KEY"] == master_key
    captured = capsys.readouterr()
    assert master_key not in captured.out + captured.err


def test_run_passes_a_given_librechat_key_unchanged(proxy_start, monkeypatch):
    """A LIBRECHAT_API_KEY of the deployment reaches the proxy as it is, not replaced by the master key."""
    monkeypatch.setenv("LIBRECHAT_API_KEY", "sk-librechat-given-0123")

    assert main(["run", "--config", shipped_config]) == 0
    (environment,) = proxy_start
    assert environment["LIBRECHAT_API_KEY"] == "sk-librechat-given-0123"


def test_other_commands_load_the_shipped_config_without_librechats_key(monkeypatch, capsys):
    """`solaris doctor` beside `make run` (no LIBRECHAT_API_KEY): the config check passes, and the
    stand-in key is neither the master key nor shown."""
    monkeypatch.setenv("LIBRECHAT_API_KEY", "")
    monkeypatch.setenv("LITELLM_MASTER_KEY", master_key)
    monkeypatch.delenv("SMTP_HOST", raising=False)

    def no_database() -> str:
        raise RuntimeError("no database in a unit test")

    monkeypatch.setattr(cli_main, "cli_database_url", no_database)

    assert main(["doctor", "--config", shipped_config]) == 1  # the database check fails, as it must here
    output = capsys.readouterr().out
    assert f"ok    config: {shipped_config} is valid" in output
    stand_in = cli_main.os.environ["LIBRECHAT_API_KEY"]
    assert stand_in.startswith("sk-") and stand_in != master_key
    assert stand_in not in output
