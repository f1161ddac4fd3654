"""The `solaris` command as a child process, with the environment a test gives it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, urlencode

from psycopg.conninfo import conninfo_to_dict, make_conninfo

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


def solaris(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "solaris_hooks.cli.main", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def cli_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in fresh_machine_env}
    return {**env, "SOLARIS_DATABASE_URL": database_url, **extra}


def embedded_env(data_dir: Path | None) -> dict[str, str]:
    """No database URL: the embedded Postgres of data_dir, or of ./.solaris when None."""
    env = {name: value for name, value in os.environ.items() if name not in {*fresh_machine_env, "SOLARIS_DATA_DIR"}}
    return env if data_dir is None else {**env, "SOLARIS_DATA_DIR": str(data_dir)}


def with_password(database_url: str, password: str, as_url: bool) -> tuple[str, str]:
    """(the URL, as postgresql://… or key=value, and the password it carries): its own password
    when it has one, else `password`, which a server that trusts local connections ignores."""
    parts = conninfo_to_dict(database_url)
    secret = str(parts.get("password") or password)
    parts["password"] = secret
    if not as_url:
        return make_conninfo(**parts), secret
    user = quote(str(parts.pop("user", "postgres")), safe="")
    dbname = quote(str(parts.pop("dbname", "postgres")), safe="")
    del parts["password"]
    host = str(parts.get("host", ""))
    # A Unix socket directory goes in the query; a host name in the authority.
    authority = ""
    if host and not host.startswith("/"):
        authority = str(parts.pop("host")) + (f":{parts.pop('port')}" if "port" in parts else "")
    query = urlencode({key: str(value) for key, value in parts.items()}, safe="/")
    url = f"postgresql://{user}:{quote(secret, safe='')}@{authority}/{dbname}" + (f"?{query}" if query else "")
    return url, secret
