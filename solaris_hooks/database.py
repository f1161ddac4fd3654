"""Where the ledger lives: the database URL and the connection pool.

`SOLARIS_DATABASE_URL` wins over `DATABASE_URL`: on machines without Prisma engines
LiteLLM must not see `DATABASE_URL` (it would try to migrate and exit), so there we set
only ours. In docker-compose both point at the same server.
"""

from __future__ import annotations

import os
from typing import Mapping

from psycopg_pool import AsyncConnectionPool

from solaris_hooks.exceptions import SettingsError
from solaris_hooks.settings import Settings

url_variables = ("SOLARIS_DATABASE_URL", "DATABASE_URL")


def database_url(environ: Mapping[str, str] = os.environ) -> str:
    for name in url_variables:
        value = environ.get(name, "").strip()
        if value:
            return value
    raise SettingsError(
        "no database: set SOLARIS_DATABASE_URL (or DATABASE_URL) to a Postgres URL, "
        "or start the proxy with `solaris run`, which starts an embedded Postgres"
    )


def connection_pool(url: str, settings: Settings) -> AsyncConnectionPool:
    """A closed pool; the caller opens it inside the event loop that will use it."""
    return AsyncConnectionPool(
        url,
        min_size=1,
        max_size=settings.db_pool_size_max,
        timeout=settings.db_timeout_s,
        # Each ledger operation is one function call, its own transaction.
        kwargs={"autocommit": True, "connect_timeout": max(1, int(settings.db_timeout_s))},
        open=False,
        name="solaris",
    )
