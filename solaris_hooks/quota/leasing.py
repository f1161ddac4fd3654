"""Calls reserved from leases: the request path's side, and the loop that writes their charges.

reserve_from_lease is the pre-call hook's fast path (settings.leases): a busy user's call (one
who called within lease_idle_s before) takes a lease in one round trip, later ones reserve
from it in memory. settle_leased_call charges a call in memory and journals it, and so does
settle_in_next_batch for a call on a reservation of its own; flush_forever writes the journal
to the ledger in batches and keeps the leases: tops up those half used (the request path
starts that too), renews those in use, returns those idle, gives up those the ledger no
longer holds (returned, expired, account blocked).
"""

from __future__ import annotations

import asyncio
import logging
import time

from solaris_hooks.db import ledger
from solaris_hooks.db.batched_settles import BatchedSettle, settle_batch
from solaris_hooks.db.leases import LeasedCall, settle_leased, take_lease
from solaris_hooks.db.refusals import count_refusals
from solaris_hooks.exceptions import DatabaseUnavailable
from solaris_hooks.logs import log_event
from solaris_hooks.quota.leases import Lease
from solaris_hooks.quota.state import QuotaState

# How often the batch loop looks for work while leases are off.
idle_interval_s = 1.0
# A user for whom no lease fits (near the edge of the allowance) is asked again after this.
lease_retry_s = 5.0


async def reserve_from_lease(
    state: QuotaState, user_id: str, tokens: int, worst_case_tokens: int | None = None, group: str | None = None
) -> Lease | None:
    """Reserve `tokens` for a call from the user's lease, taking one if this process holds
    none; None: reserve this call in Postgres (no lease fits, or the database is down). A
    lease serves a call only while it has the call's worst case free (a metered stream
    reserves less at first: see quota/leased_streams.py), and only calls priced for the
    group it was taken for (the call's own reservation checks a new group in the ledger)."""
    worst_case_tokens = max(tokens, worst_case_tokens or 0)
    held = state.leases.get(user_id)
    if held is not None and held.group != group:
        give_up(state, held, "pending", "regrouped")
        return None
    lease = state.leases.reserve(user_id, tokens, worst_case_tokens)
    held = lease or state.leases.get(user_id)
    if held is not None and held.needs_top_up():
        # At once, not with the next batch: a busy user would drain the lease between two
        # batches, and the calls after it would each take a round trip of their own.
        start_top_up(state, held)
    if lease is not None or not state.leases.may_take(user_id, state.settings.lease_idle_s):
        return lease
    taking = state.lease_takes.get(user_id)
    if taking is None:
        taking = asyncio.ensure_future(_take(state, user_id, worst_case_tokens, group))
        state.lease_takes[user_id] = taking
        taking.add_done_callback(lambda _: state.lease_takes.pop(user_id, None))
    # Concurrent first calls of one user wait for one take, then reserve from it.
    await asyncio.shield(taking)
    return state.leases.reserve(user_id, tokens, worst_case_tokens)


def held_here(reservation: ledger.Reservation) -> bool:
    """A refusal for tokens other calls hold, which this process may be holding itself."""
    return reservation.outcome == "exhausted" and reservation.reserved_tokens > 0


async def release_held(state: QuotaState, user_id: str) -> bool:
    """Near the edge a call may be refused for tokens this process holds: charges that wait
    for the next batch (their reservations hold each call's worst case until then) and the
    user's lease. Write the batch now and return the user's lease (once its calls are
    written); True when there was something to release. The database down: False."""
    lease = state.leases.get(user_id)
    if lease is None and not len(state.settle_batches):
        return False
    if lease is not None:
        give_up(state, lease, "pending", "returned for a call near the edge")
    try:
        await flush_once(state)
    except DatabaseUnavailable:
        return False
    return True


async def _take(state: QuotaState, user_id: str, call_tokens: int, group: str | None) -> None:
    lease_id = state.leases.new_lease_id()
    size_tokens = state.settings.lease_calls * call_tokens
    try:
        taken = await take_lease_tokens(state, user_id, lease_id, size_tokens, minimum_tokens=2 * call_tokens)
    except DatabaseUnavailable:
        return  # the call's own reservation meets the outage and answers it
    if taken.outcome != "reserved":
        state.leases.refused(user_id, lease_retry_s)
        return
    state.leases.held(
        Lease(lease_id, user_id, size_tokens, free_tokens=taken.reserved, call_tokens=call_tokens, group=group)
    )
    log_event("lease_taken", user_id=user_id, lease_id=lease_id, tokens=taken.reserved)


async def take_lease_tokens(
    state: QuotaState, user_id: str, lease_id: str, wanted_tokens: int, minimum_tokens: int, share: float | None = None
) -> ledger.Reservation:
    """Take the lease `lease_id`, or top it up when the ledger holds it already; at most
    `share` (lease_share unless given) of what the user has free."""
    settings = state.settings
    async with state.database.connection() as connection:
        return await take_lease(
            connection,
            user_id=user_id,
            lease_id=lease_id,
            owner=state.leases.owner,
            wanted_tokens=wanted_tokens,
            minimum_tokens=minimum_tokens,
            share=settings.lease_share if share is None else share,
            default_tokens=settings.default_tokens_per_user,
            ttl_s=settings.lease_ttl_s,
        )


async def flush_once(state: QuotaState) -> int:
    """Write the calls waiting (in slices), then keep the leases; returns the calls written.
    Raises DatabaseUnavailable with the calls still waiting, and journaled."""
    async with state.flush_lock:
        written = await _write_batches(state)
        await _keep_leases(state)
        await _write_refusal_counts(state)
    return written


async def _write_refusal_counts(state: QuotaState) -> None:
    counts = state.refusal_counts.take()
    if not counts:
        return
    try:
        async with state.database.connection() as connection:
            await count_refusals(connection, counts)
    except DatabaseUnavailable:
        state.refusal_counts.give_back(counts)
        raise


async def _write_batches(state: QuotaState) -> int:
    written = 0
    while batch := state.settle_batches.next_batch():
        leased = [waiting.call for waiting in batch if isinstance(waiting.call, LeasedCall)]
        own = [waiting.call for waiting in batch if isinstance(waiting.call, BatchedSettle)]
        async with state.database.connection() as connection:
            lease_states = (
                await settle_leased(
                    connection, leased, ttl_s=state.settings.lease_ttl_s, thresholds=state.settings.alert_thresholds
                )
                if leased
                else []
            )
            settled = await settle_batch(connection, own, thresholds=state.settings.alert_thresholds) if own else []
        state.settle_batches.written(batch)
        written += len(batch)
        now_s = time.monotonic()
        for waiting in batch:
            if waiting.lease is not None:
                state.leases.written(waiting.lease, 1)
                waiting.lease.renewed_at_s = now_s
                state.metrics.charged_tokens.labels(model=waiting.call.model or "unknown").inc(waiting.charged_tokens)
        models = {call.call_id: call.model for call in own}
        for result in settled:
            state.metrics.charged_tokens.labels(model=models[result.call_id] or "unknown").inc(result.charged_tokens)
            if result.state != "settled":
                log_event("settle_ignored", logging.WARNING, call_id=result.call_id, state=result.state)
        by_id = {waiting.lease.lease_id: waiting.lease for waiting in batch if waiting.lease is not None}
        for lease_state in lease_states:
            lease = by_id[lease_state.lease_id]
            if lease_state.lease_state != "pending" or lease_state.status != "active":
                give_up(state, lease, lease_state.lease_state, lease_state.status)
            elif lease_state.group_name != lease.group:  # an admin moved the user: priced anew
                state.groups.learned(lease.user_id, lease_state.group_name, lease_state.group_source)
                give_up(state, lease, lease_state.lease_state, "regrouped")
    return written


async def _keep_leases(state: QuotaState) -> None:
    settings = state.settings
    now_s = time.monotonic()
    for lease in state.leases:
        if lease.idle(now_s, settings.lease_idle_s):
            state.leases.give_up(lease)
            log_event("lease_returned", user_id=lease.user_id, lease_id=lease.lease_id, reason="idle")
        elif lease.needs_top_up():
            start_top_up(state, lease)
        elif now_s - lease.renewed_at_s >= settings.lease_ttl_s / 3:
            # Calls in flight keep their lease from expiring under them.
            async with state.database.connection() as connection:
                held = await ledger.extend_reservation(connection, lease.lease_id, settings.lease_ttl_s)
            lease.renewed_at_s = now_s
            if not held:
                give_up(state, lease, "not pending", "unknown")
    for lease in state.leases.drained():
        # What its calls did not use goes back to the account (nothing if it was no longer held).
        async with state.database.connection() as connection:
            await ledger.resolve(connection, call_id=lease.lease_id, kind="release")


def start_top_up(state: QuotaState, lease: Lease) -> None:
    lease.topping_up = True
    state.tasks.spawn(_top_up(state, lease))


async def _top_up(state: QuotaState, lease: Lease) -> None:
    try:
        taken = await take_lease_tokens(
            state,
            lease.user_id,
            lease.lease_id,
            wanted_tokens=lease.size_tokens - lease.free_tokens,
            minimum_tokens=lease.call_tokens,
        )
    except DatabaseUnavailable:
        lease.top_up_after_s = time.monotonic() + lease_retry_s
        return
    finally:
        lease.topping_up = False
    if taken.outcome == "reserved":
        lease.free_tokens += taken.reserved
        lease.renewed_at_s = time.monotonic()
    elif taken.outcome == "exhausted":
        # Near the edge: the lease serves what it has, calls beyond it reserve per call.
        lease.top_up_after_s = time.monotonic() + lease_retry_s
    else:
        give_up(state, lease, taken.outcome, taken.outcome)


def give_up(state: QuotaState, lease: Lease, lease_state: str, status: str) -> None:
    """Reserve nothing more from a lease the ledger no longer holds or whose account cannot
    spend; it is returned once its calls have ended and are written."""
    if not lease.given_up:
        state.leases.give_up(lease)
        log_event(
            "lease_given_up", user_id=lease.user_id, lease_id=lease.lease_id, lease_state=lease_state, status=status
        )


async def flush_forever(state: QuotaState) -> None:
    while True:
        leasing = state.settings.leases or len(state.settle_batches) or any(True for _ in state.leases)
        await asyncio.sleep(state.settings.settle_batch_interval_ms / 1000 if leasing else idle_interval_s)
        try:
            await flush_once(state)
        except DatabaseUnavailable:
            await state.database.wait_recovered(state.settings.replay_interval_s)
        except Exception as error:  # a loop that dies silently would leave calls uncharged
            log_event("settle_batch_failed", logging.ERROR, error=repr(error))


async def return_leases(state: QuotaState) -> None:
    """At close: write what waits, return every lease; what cannot be is left to expire."""
    for lease in state.leases:
        state.leases.give_up(lease)
    try:
        await flush_once(state)
    except DatabaseUnavailable:
        log_event("leases_left_to_expire", logging.WARNING, ttl_s=state.settings.lease_ttl_s)
    state.settle_batches.journal.close()
