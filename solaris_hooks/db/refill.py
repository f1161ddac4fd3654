"""The refill task: when a period of the `refill` setting starts, every account moves into it.

`solaris.refill` writes one `grant` per user and period however many replicas run it,
in batches, so a large ledger is never locked at once. What the periods are is the
setting's business (solaris_hooks.settings.refill).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime

from psycopg import AsyncConnection

from solaris_hooks.db.queries import sql
from solaris_hooks.exceptions import DatabaseUnavailable
from solaris_hooks.logs import log_event
from solaris_hooks.settings.refill import RefillSettings, current_period

refill_batch_size_max = 1000
idle_check_interval_s = 60

Connect = Callable[[], AbstractAsyncContextManager[AsyncConnection]]


async def refill_due(connect: Connect, settings: RefillSettings, now: datetime | None = None) -> int:
    """Move every account into the current period; returns how many were refilled."""
    key = current_period(settings, now)
    refilled_total = 0
    async with connect() as connection:
        while True:
            cursor = await connection.execute(
                sql("refill/refill_accounts"),
                {"period": key, "mode": settings.mode, "amount": settings.amount, "batch_size": refill_batch_size_max},
            )
            row = await cursor.fetchone()
            refilled = row[0] if row is not None else 0
            refilled_total += refilled
            if refilled < refill_batch_size_max:
                break
    if refilled_total:
        log_event("refilled", period=key, accounts=refilled_total, mode=settings.mode, amount=settings.amount)
    return refilled_total


async def refill_forever(connect: Connect, current: Callable[[], RefillSettings | None]) -> None:
    """Refill whenever a period starts; reads the settings each round, so a reload that
    adds, changes or removes `refill` takes effect without a restart."""
    while True:
        settings = current()
        try:
            if settings is not None:
                await refill_due(connect, settings)
        except DatabaseUnavailable as error:
            log_event("refill_failed", logging.WARNING, error=str(error))
        except Exception as error:  # a dead refill task would silently stop every renewal
            log_event("refill_failed", logging.ERROR, error=repr(error))
        await asyncio.sleep(settings.check_interval_s if settings else idle_check_interval_s)
