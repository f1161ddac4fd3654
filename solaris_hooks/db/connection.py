"""Where the ledger lives: the database URL and the connection pool.

`SOLARIS_DATABASE_URL` wins over `DATABASE_URL`: on machines without Prisma engines
LiteLLM must not see `DATABASE_URL` (it would try to migrate and exit), so there we set
only ours. In docker-compose both point at the same server.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from solaris_hooks.exceptions import SettingsError
from solaris_hooks.settings import Environment, Settings

url_variables = ("SOLARIS_DATABASE_URL", "DATABASE_URL")

# For a connection that serves one command (the CLI, migrations, the doctor): it runs each
# statement a few times at most, so preparing it on the server would save nothing, and behind
# a PgBouncer older than 1.21 in transaction mode a statement prepared on one server
# connection is missing on the next (or already there for another client). These never
# prepare, whatever db_prepare_threshold says: the CLI works without the proxy's config.
one_command_prepare_threshold: int | None = None


def database_url(environ: Mapping[str, str] = os.environ) -> str:
    environment = Environment.read(environ)
    for url in (environment.solaris_database_url, environment.database_url):
        value = url.get_secret_value().strip()
        if value:
            return value
    raise SettingsError(
        "no database: set SOLARIS_DATABASE_URL (or DATABASE_URL) to a Postgres URL, "
        "or start the proxy with `solaris run`, which starts an embedded Postgres"
    )


def connection_pool(
    url: str, settings: Settings, check: Callable[[AsyncConnection], Awaitable[None]] | None = None
) -> AsyncConnectionPool:
    """A closed pool; the caller opens it inside the event loop that will use it.

    `check` runs on every connection before it is handed out (see Database._check_connection).
    """
    return AsyncConnectionPool(
        url,
        min_size=1,
        max_size=settings.db_pool_size_max,
        timeout=settings.db_timeout_s,
        # Each ledger operation is one function call, its own transaction.
        kwargs={
            "autocommit": True,
            "connect_timeout": max(1, int(settings.db_timeout_s)),
            "prepare_threshold": settings.db_prepare_threshold,
        },
        check=check,
        # While Postgres is down the pool retries a connection with exponential backoff
        # (1, 2, 4 … s) until reconnect_timeout, and no request starts another attempt
        # meanwhile. With psycopg's default of 300 s, a pool kept refusing for 17 s after
        # Postgres came back from a 40 s outage; with 5 s, the first call after the
        # restart was served (0.4 s). Giving up sooner lets the next request, or the
        # replay loop's probe, start a fresh attempt at once.
        reconnect_timeout=max(2.0, settings.db_timeout_s),
        open=False,
        name="solaris",
    )
