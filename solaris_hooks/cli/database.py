"""Which database the `solaris` commands use, and where `solaris run` keeps its files.

Every command but `run` talks to the database directly (SOLARIS_DATABASE_URL,
DATABASE_URL, or the embedded Postgres in SOLARIS_DATA_DIR), so it works while the proxy
is stopped.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from solaris_hooks.db.connection import database_url
from solaris_hooks.demo import embedded_postgres
from solaris_hooks.settings import Environment


def data_dir() -> Path:
    """SOLARIS_DATA_DIR (./.solaris by default), created: the embedded Postgres, the master key."""
    path = Path(Environment.read().solaris_data_dir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def cli_database_url(environ: Mapping[str, str] = os.environ) -> str:
    """The configured URL, else the embedded Postgres that `solaris run` uses (started if
    the proxy is not running, and stopped again when this command exits)."""
    environment = Environment.read(environ)
    urls = (environment.solaris_database_url, environment.database_url)
    if any(url.get_secret_value().strip() for url in urls):
        return database_url(environ)
    embedded_postgres.check_installed()
    directory = data_dir()
    print(f"solaris: using the embedded Postgres in {directory / 'pgdata'}", file=sys.stderr, flush=True)
    return embedded_postgres.start(directory)
