"""The quota service: what the hooks ask of the ledger, with its background loops.

One instance per proxy process, owned by the registered callback. Its state (quota/state.py)
is what the request path shares; its methods are the steps of a call, each in a module of
its own: reserve.py (pre-call hook), streams.py (a streamed answer), settle.py (success
or failure), sweeper.py (spool replay and sweeper). The database (db/database.py) opens
lazily in the proxy's event loop, and its first use starts the background loops.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from functools import partial

from psycopg import AsyncConnection

from solaris_hooks.db import ledger
from solaris_hooks.db.database import Database
from solaris_hooks.exceptions import DatabaseUnavailable
from solaris_hooks.quota import leasing, reserve, settle, streams, sweeper
from solaris_hooks.quota.rate_limits import CountingCache
from solaris_hooks.quota.settle_batches import SettleBatches, SettleJournal
from solaris_hooks.quota.spool import Spool, SpoolEntry
from solaris_hooks.quota.state import QuotaState
from solaris_hooks.settings import Settings


class QuotaService(QuotaState):
    def __init__(self, settings: Settings, database_url: str) -> None:
        super().__init__(
            settings=settings,
            database=Database(database_url, settings, on_first_use=self._start_background),
            spool=Spool(settings.spool_path().resolve()),
            settle_batches=SettleBatches(SettleJournal(settings.spool_path().resolve())),
        )
        self._settings_listeners: list[Callable[[Settings], None]] = [partial(setattr, self.database, "settings")]
        # Always running, idle unless leases are on (a settings reload may switch them on).
        self.run_in_background(partial(leasing.flush_forever, self))

    def reload(self, settings: Settings) -> None:
        """Use new settings from the next call on (and tell whoever asked to know)."""
        self.settings = settings
        for listener in self._settings_listeners:
            listener(settings)
        # Reloaded by the admin API, in the proxy's loop: the groups are written at once
        # (without a running loop, by the next sweep).
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop()
            self.tasks.spawn(self._sync_groups_quietly())

    def on_reload(self, listener: Callable[[Settings], None]) -> None:
        self._settings_listeners.append(listener)

    # -- lifetime ------------------------------------------------------------------

    def run_in_background(self, loop_forever: Callable[[], Coroutine[None, None, None]]) -> None:
        """Register a task (the sweeper, the mailer) to run from start() until close()."""
        self.tasks.register(loop_forever)

    async def start(self) -> None:
        """Open the pool and start the background tasks; idempotent, cheap after the first call."""
        await self.database.open()

    async def _start_background(self) -> None:
        self.tasks.start()
        self.tasks.spawn(self._load_margins_quietly())
        self.tasks.spawn(self._sync_groups_quietly())

    async def _sync_groups_quietly(self) -> None:
        # The sweeper writes them once the database answers.
        with contextlib.suppress(DatabaseUnavailable):
            await sweeper.sync_groups(self)

    async def _load_margins_quietly(self) -> None:
        # The sweeper loads them once the database answers.
        with contextlib.suppress(DatabaseUnavailable):
            await self.margins.load(self.database)

    async def close(self) -> None:
        await self.tasks.close()
        await leasing.return_leases(self)
        await self.database.close()

    def connection(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection from the pool, or DatabaseUnavailable (see Database.connection)."""
        return self.database.connection()

    # -- a call, from its pre-call hook to its end -----------------------------------

    async def reserve_call(
        self, data: dict, call_type: str, key: object, cache: CountingCache | None = None
    ) -> str | None:
        return await reserve.reserve_call(self, data, call_type, key, cache)

    def meter_stream(self, stream: AsyncIterator[object], call_id: str) -> AsyncIterator[object]:
        return streams.meter_stream(self, stream, call_id)

    async def settle_response(
        self, call_id: str, response_obj: object, model: str | None, cost_usd: float | None
    ) -> ledger.Resolution | None:
        return await settle.settle_response(self, call_id, response_obj, model, cost_usd)

    async def settle_call(
        self,
        call_id: str,
        raw_tokens: int,
        model: str | None,
        cost_usd: float | None,
        reported_prompt_tokens: int | None = None,
    ) -> ledger.Resolution | None:
        return await settle.settle_call(self, call_id, raw_tokens, model, cost_usd, reported_prompt_tokens)

    async def release_call(self, call_id: str) -> ledger.Resolution:
        return await settle.release_call(self, call_id)

    async def charge_spooled(self, entry: SpoolEntry) -> ledger.Resolution:
        return await settle.charge_spooled(self, entry)

    # -- background ----------------------------------------------------------------

    async def replay_once(self) -> int:
        return await sweeper.replay_once(self)

    async def replay_forever(self) -> None:
        await sweeper.replay_forever(self)

    async def sweep_once(self) -> int:
        return await sweeper.sweep_once(self)

    async def sweep_forever(self) -> None:
        await sweeper.sweep_forever(self)
