"""The `solaris` command as a child process, with the environment a test gives it."""

from __future__ import annotations

import os
import subprocess
import sys

# `make run` as a new user has it: no database URL, no master key, no API key.
fresh_machine_env: dict[str, str | None] = dict.fromkeys(
    (
        "SOLARIS_DATABASE_URL",
        "DATABASE_URL",
        "LITELLM_MASTER_KEY",
        "OPENAI_API_KEY",
        "DEFAULT_TOKENS_PER_USER",
        "CONVERSION_FACTOR",
        "CREDITS_EMAIL",
    )
)


def solaris(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "solaris_hooks.cli.main", *args], env=env, capture_output=True, text=True, timeout=120
    )


def cli_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in fresh_machine_env}
    return {**env, "SOLARIS_DATABASE_URL": database_url, **extra}
