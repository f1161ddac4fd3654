"""`solaris` without a database URL: the embedded Postgres, or one line saying how to get it."""

from __future__ import annotations

import importlib.util

import pytest

from solaris_hooks.cli.main import main


@pytest.fixture
def no_database_url(monkeypatch, tmp_path):
    for name in ("SOLARIS_DATABASE_URL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SOLARIS_DATA_DIR", str(tmp_path / "data"))


def test_run_without_pgserver_says_in_one_line_to_install_the_embedded_extra(
    no_database_url, monkeypatch, tmp_path, capsys
):
    """No URL and no pgserver (a production install): exit 2 and one line naming the extra."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pgserver" else find_spec(name, *a)
    )
    config = tmp_path / "litellm-config.yaml"
    config.write_text("model_list: []\n", encoding="utf-8")

    assert main(["run", "--config", str(config)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert "pip install 'solaris-hooks[embedded]'" in captured.err
    assert "SOLARIS_DATABASE_URL" in captured.err


def test_a_configured_url_needs_no_embedded_postgres(monkeypatch):
    """SOLARIS_DATABASE_URL wins, blank values count as unset, and pgserver is never looked for."""
    from solaris_hooks.cli.database import cli_database_url

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: pytest.fail(f"looked for {name}"))
    assert cli_database_url({"SOLARIS_DATABASE_URL": " ", "DATABASE_URL": " postgresql://h/d "}) == "postgresql://h/d"
