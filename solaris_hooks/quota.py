"""The quota service: what the hooks and routes ask of the ledger, with its pool and sweeper.

One instance per proxy process, owned by the registered callback. The pool opens lazily
in the proxy's event loop (the callback is built while the proxy loads its config,
before any request), and reconnects by itself when Postgres comes back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable, Coroutine

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from solaris_hooks import ledger, rate_limits
from solaris_hooks.database import connection_pool
from solaris_hooks.estimate import Plan, plan_call, set_completion_bound
from solaris_hooks.exceptions import AccountInactive, DatabaseUnavailable, QuotaExhausted, Refusal
from solaris_hooks.identity import header_value, key_identity, key_may_name_users, resolve_identity
from solaris_hooks.logs import log_event
from solaris_hooks.metrics import Metrics
from solaris_hooks.settings import Settings

# Bounds on background work, so a backlog is worked off in slices, never in one huge
# transaction.
expire_batch_size_max = 500
prune_batch_size_max = 5000


class QuotaService:
    def __init__(self, settings: Settings, database_url: str) -> None:
        self.settings = settings
        self._pool: AsyncConnectionPool = connection_pool(database_url, settings)
        self.metrics = Metrics()
        self._opened = False
        self._open_lock = asyncio.Lock()
        self._background: list[Callable[[], Coroutine[None, None, None]]] = []
        self._tasks: list[asyncio.Task] = []
        self._settings_listeners: list[Callable[[Settings], None]] = []

    # -- connections ---------------------------------------------------------------

    def reload(self, settings: Settings) -> None:
        """Use new settings from the next call on (and tell whoever asked to know)."""
        self.settings = settings
        for listener in self._settings_listeners:
            listener(settings)

    def on_reload(self, listener: Callable[[Settings], None]) -> None:
        self._settings_listeners.append(listener)

    def run_in_background(self, loop_forever: Callable[[], Coroutine[None, None, None]]) -> None:
        """Register a task (the sweeper, the mailer) to run from start() until close()."""
        self._background.append(loop_forever)

    async def start(self) -> None:
        """Open the pool and start the background tasks; idempotent, cheap after the first call."""
        if self._opened:
            return
        async with self._open_lock:
            if self._opened:
                return
            # wait=False: a proxy must come up even while Postgres is still starting.
            await self._pool.open(wait=False)
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(task(), name=f"solaris-{getattr(task, '__name__', 'task')}")
                           for task in self._background]
            self._opened = True

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._pool.close()
        self._opened = False

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        await self.start()
        try:
            async with self._pool.connection() as connection:
                yield connection
        except (PoolTimeout, psycopg.OperationalError, psycopg.InterfaceError) as error:
            raise DatabaseUnavailable(str(error)) from error

    # -- the request path ----------------------------------------------------------

    async def reserve_call(self, data: dict, call_type: str, key: object, cache: object = None) -> str | None:
        """Reserve the worst case of a call and bound its completion; raises a Refusal.

        Returns the user charged, or None when the database is down and fail_mode is
        open (the call then goes through unmetered).
        """
        started = time.perf_counter()
        try:
            return await self._reserve_call(data, call_type, key, cache)
        except Refusal as refusal:
            self.metrics.refusals.labels(reason=refusal.reason).inc()
            raise
        except DatabaseUnavailable:
            self.metrics.refusals.labels(reason="database_unavailable").inc()
            raise
        finally:
            self.metrics.pre_call_seconds.observe(time.perf_counter() - started)

    async def _reserve_call(self, data: dict, call_type: str, key: object, cache: object) -> str | None:
        """`key` is LiteLLM's UserAPIKeyAuth: its user_id, token (key hash) and key_alias."""
        settings = self.settings
        token, alias = getattr(key, "token", None), getattr(key, "key_alias", None)
        trusted = key_may_name_users(token, alias, settings.trusted_keys)
        user_id = resolve_identity(data, settings.identity_header,
                                   key_identity(getattr(key, "user_id", None), token), trusted)
        if not trusted and (data.get("user") or header_value(
                (data.get("proxy_server_request") or {}).get("headers"), settings.identity_header)):
            # A key outside trusted_keys tried to name someone: charged to itself, and logged.
            log_event("identity_ignored", logging.WARNING, user_id=user_id, key_alias=alias)
        call_id = str(data.get("litellm_call_id") or "")
        model = str(data.get("model") or "") or None
        # A free title call is still reserved and settled, at factor 0: the ledger shows its raw tokens.
        free = settings.title_calls == "free" and settings.is_title_call(data)
        factor = 0.0 if free else settings.factor_for(model)
        plan = plan_call(data, call_type, factor, settings.completion_tokens_default)
        await rate_limits.enforce(cache, user_id, plan.wanted_tokens, settings)
        try:
            async with self.connection() as connection:
                reservation = await ledger.reserve(
                    connection,
                    user_id=user_id,
                    call_id=call_id,
                    wanted_tokens=plan.wanted_tokens,
                    minimum_tokens=plan.minimum_tokens,
                    default_tokens=settings.default_tokens_per_user,
                    ttl_s=settings.reservation_ttl_s,
                    model=model,
                    factor=plan.factor,
                    thresholds=settings.alert_thresholds,
                )
        except DatabaseUnavailable as error:
            if settings.fail_mode == "open":
                log_event("fail_open", logging.WARNING, user_id=user_id, call_id=call_id, error=str(error))
                return None
            log_event("database_unavailable", logging.ERROR, user_id=user_id, call_id=call_id, error=str(error))
            raise
        self._apply(reservation, plan, data, user_id, call_id)
        return user_id

    def _apply(self, reservation: ledger.Reservation, plan: Plan, data: dict, user_id: str, call_id: str) -> None:
        if reservation.outcome in ("reserved", "duplicate"):
            if plan.completion_tokens_max > 0:
                set_completion_bound(data, plan.completion_bound(reservation.reserved))
            return
        fields = {
            "credited_tokens": reservation.credited_tokens,
            "used_tokens": reservation.debited_tokens,
            "reserved_tokens": reservation.reserved_tokens,
            "credits_email": self.settings.credits_email,
        }
        log_event(
            "refused", user_id=user_id, call_id=call_id, reason=reservation.outcome,
            wanted_tokens=plan.wanted_tokens, remaining_tokens=reservation.remaining_tokens,
        )
        if reservation.outcome == "exhausted":
            # Past the last warning it is "used up" (and the block e-mail goes out, see
            # solaris.reserve); before it, only this call is too big for what is left.
            last_warning = max(self.settings.alert_thresholds, default=1.0)
            if reservation.debited_tokens >= reservation.credited_tokens * last_warning:
                raise QuotaExhausted(**fields)
            raise QuotaExhausted("quota_insufficient", needed_tokens=plan.minimum_tokens,
                                 remaining_tokens=max(0, reservation.remaining_tokens), **fields)
        raise AccountInactive(f"account_{reservation.outcome}", **fields)

    async def settle_call(
        self, call_id: str, raw_tokens: int, model: str | None, cost_usd: float | None
    ) -> ledger.Resolution:
        async with self.connection() as connection:
            resolution = await ledger.resolve(
                connection, call_id=call_id, kind="settle", raw_tokens=raw_tokens, model=model, cost_usd=cost_usd,
                thresholds=self.settings.alert_thresholds,
            )
        if resolution.state == "settled":
            self.metrics.charged_tokens.labels(model=model or "unknown").inc(resolution.charged_tokens)
        else:
            log_event("settle_ignored", logging.WARNING, call_id=call_id, state=resolution.state,
                      raw_tokens=raw_tokens)
        return resolution

    async def release_call(self, call_id: str) -> ledger.Resolution:
        async with self.connection() as connection:
            return await ledger.resolve(connection, call_id=call_id, kind="release")

    # -- background ----------------------------------------------------------------

    async def sweep_once(self) -> int:
        expired_total = 0
        async with self.connection() as connection:
            while True:
                expired = await ledger.expire_due(connection, expire_batch_size_max)
                expired_total += expired
                if expired < expire_batch_size_max:
                    break
            pruned_total = 0
            while True:
                pruned = await ledger.prune_resolved(connection, self.settings.reservation_retention_s,
                                                     prune_batch_size_max)
                pruned_total += pruned
                if pruned < prune_batch_size_max:
                    break
        if expired_total:
            log_event("reservations_expired", count=expired_total)
        if pruned_total:
            log_event("reservations_pruned", count=pruned_total)
        return expired_total

    async def sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval_s)
            try:
                await self.sweep_once()
            except DatabaseUnavailable as error:
                log_event("sweep_failed", logging.WARNING, error=str(error))
            except Exception as error:  # a sweeper that dies silently would strand reservations
                log_event("sweep_failed", logging.ERROR, error=repr(error))
