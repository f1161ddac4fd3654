"""The background loops of a proxy: the spool replay after an outage, and the sweeper.

The replay charges the usage that waited in the spool while Postgres was unreachable, with
one `database_recovered` log line once it is back. The sweeper returns the tokens of
reservations whose calls never ended, prunes old resolved ones, and reloads the prompt
margins other replicas learned.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from solaris_hooks.db import ledger
from solaris_hooks.db.groups import write_groups
from solaris_hooks.exceptions import DatabaseUnavailable
from solaris_hooks.logs import log_event
from solaris_hooks.quota.settle import charge_spooled
from solaris_hooks.quota.state import QuotaState

# Bounds on background work, so a backlog is worked off in slices, never in one huge
# transaction.
expire_batch_size_max = 500
prune_batch_size_max = 5000


async def replay_once(state: QuotaState) -> int:
    """After an outage, probe the database and check the pool's idle connections; then
    charge whatever waits in the spool. Returns the entries charged; raises
    DatabaseUnavailable while Postgres is still unreachable."""
    if not state.database.needs_probe and not state.spool.pending():
        return 0
    async with state.replay_lock:
        await state.database.probe()
        replayed = await state.spool.replay(partial(charge_spooled, state)) if state.spool.pending() else 0
        down_s = state.database.take_unreported_down_s()
        if down_s:
            log_event("database_recovered", down_s=round(down_s, 3), replayed_entries=replayed)
        elif replayed:
            log_event("spool_replayed", replayed_entries=replayed)
        return replayed


async def replay_forever(state: QuotaState) -> None:
    while True:
        await state.database.wait_recovered(state.settings.replay_interval_s)
        try:
            await replay_once(state)
        except DatabaseUnavailable:
            pass  # still down: every call that meets it logs it already
        except Exception as error:  # a replay loop that dies silently would leave usage uncharged
            log_event("replay_failed", logging.ERROR, error=repr(error))


async def sync_groups(state: QuotaState) -> None:
    """Write the configured groups' alert thresholds where the ledger's SQL reads them
    (solaris.groups), when they changed: at start, after a reload, else with each sweep."""
    configured = {name: group.alert_thresholds for name, group in state.settings.groups.items()}
    if configured == state.groups.synced:
        return
    async with state.database.connection() as connection:
        await write_groups(connection, configured)
    state.groups.synced = configured


async def sweep_once(state: QuotaState) -> int:
    await sync_groups(state)
    # Replay first, so a settle that waited in the spool finds its reservation still
    # pending instead of expired (a late settle is charged right either way).
    await replay_once(state)
    expired_total = 0
    async with state.database.connection() as connection:
        while True:
            expired = await ledger.expire_due(connection, expire_batch_size_max)
            expired_total += expired
            if expired < expire_batch_size_max:
                break
        pruned_total = 0
        while True:
            pruned = await ledger.prune_resolved(
                connection, state.settings.reservation_retention_s, prune_batch_size_max
            )
            pruned_total += pruned
            if pruned < prune_batch_size_max:
                break
    await state.margins.load(state.database)
    if expired_total:
        log_event("reservations_expired", count=expired_total)
    if pruned_total:
        log_event("reservations_pruned", count=pruned_total)
    return expired_total


async def sweep_forever(state: QuotaState) -> None:
    while True:
        await asyncio.sleep(state.settings.sweep_interval_s)
        try:
            await sweep_once(state)
        except DatabaseUnavailable as error:
            log_event("sweep_failed", logging.WARNING, error=str(error))
        except Exception as error:  # a sweeper that dies silently would strand reservations
            log_event("sweep_failed", logging.ERROR, error=repr(error))
