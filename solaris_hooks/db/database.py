"""The one database object: the pool, and what an outage of Postgres means to its callers.

One per process. The pool opens lazily, in the event loop that uses it (the proxy builds
its callback while it loads its config, before any request), and reconnects by itself
when Postgres comes back. A caller asks `connection()` and gets either a connection or
`DatabaseUnavailable`, never a driver error; while the database is known to be down it
gets the answer quickly. The first use also starts whatever the owner registered as
`on_first_use` (the proxy's sweeper, replay loop and mailer).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from solaris_hooks.db.connection import connection_pool
from solaris_hooks.db.queries import sql
from solaris_hooks.exceptions import DatabaseUnavailable
from solaris_hooks.settings import Settings

# How long a caller waits for a connection while the database is known to be down.
outage_wait_s = 0.5


class Database:
    def __init__(self, url: str, settings: Settings, on_first_use: Callable[[], Awaitable[None]] | None = None) -> None:
        # Replaced on a settings reload: the outage wait follows db_timeout_s.
        self.settings = settings
        self._pool: AsyncConnectionPool = connection_pool(url, settings, check=self._check_connection)
        self._on_first_use = on_first_use
        self._opened = False
        self._open_lock = asyncio.Lock()
        # Outage bookkeeping: when the current one began (monotonic s), how much outage has
        # not been reported yet, failures seen, and whether idle connections in the pool may
        # be ones the server closed.
        self._down_since: float | None = None
        self._unreported_down_s = 0.0
        self._failures = 0
        self._pool_suspect = False
        self._recovered = asyncio.Event()

    async def open(self) -> None:
        """Open the pool and run `on_first_use`; idempotent, cheap after the first call."""
        if self._opened:
            return
        async with self._open_lock:
            if self._opened:
                return
            # wait=False: a proxy must come up even while Postgres is still starting.
            await self._pool.open(wait=False)
            # Marked open first: what on_first_use starts may ask for a connection itself.
            self._opened = True
            if self._on_first_use is not None:
                await self._on_first_use()

    async def close(self) -> None:
        await self._pool.close()
        self._opened = False

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        await self.open()
        # While the database is known to be down, a caller waits only briefly for a
        # connection: one call found the outage after db_timeout_s, the ones after it are
        # answered (503, or let through with fail_mode open) in a fraction of that. The
        # first operation that succeeds ends the outage, and with it the short wait.
        timeout_s = min(self.settings.db_timeout_s, outage_wait_s) if self._down_since is not None else None
        try:
            async with self._pool.connection(timeout=timeout_s) as connection:
                yield connection
        except (PoolTimeout, psycopg.OperationalError, psycopg.InterfaceError) as error:
            self._mark_down()
            raise DatabaseUnavailable(str(error)) from error
        # Only once the work is done: during an outage the pool can still hand out a
        # connection the server closed, which fails only when used.
        self._mark_up()

    # -- outages -------------------------------------------------------------------

    @property
    def needs_probe(self) -> bool:
        """An outage is on, or the pool may still hold connections the server closed."""
        return self._down_since is not None or self._pool_suspect

    async def probe(self) -> None:
        """One round trip, then check the pool's idle connections if an outage may have left
        dead ones; raises DatabaseUnavailable while Postgres is unreachable."""
        async with self.connection() as connection:
            await connection.execute(sql("db/probe"))
        if self._pool_suspect:
            failures = self._failures
            await self._pool.check()  # drops the idle connections the server closed
            if failures == self._failures:
                self._pool_suspect = False

    def take_unreported_down_s(self) -> float:
        """Seconds of outage since the last time this was asked (0.0 when none)."""
        down_s, self._unreported_down_s = self._unreported_down_s, 0.0
        return down_s

    async def wait_recovered(self, timeout_s: float) -> None:
        """Return when an outage ends, or after timeout_s, whichever is first."""
        with suppress(TimeoutError):
            await asyncio.wait_for(self._recovered.wait(), timeout_s)
        self._recovered.clear()

    def _mark_down(self) -> None:
        self._failures += 1
        self._pool_suspect = True
        if self._down_since is None:
            self._down_since = time.monotonic()

    def _mark_up(self) -> None:
        if self._down_since is not None:
            self._unreported_down_s += time.monotonic() - self._down_since
            self._down_since = None
            self._recovered.set()  # wake whoever waits for the recovery (the spool replay)

    async def _check_connection(self, connection: AsyncConnection) -> None:
        """The pool's check before handing out a connection. A check is one more round trip
        per ledger operation (~2 ms of LiteLLM's busy loop, see docs/performance.md), so it
        runs only from a failure until the idle connections were all checked after recovery."""
        if self._pool_suspect:
            await AsyncConnectionPool.check_connection(connection)
