"""The end of a call: charge what it used, or release what it reserved.

Usage that cannot be written while the database is unreachable goes to the spool and is
charged by the replay once it is back: never lost, never charged twice (each charge is
idempotent per call id).
"""

from __future__ import annotations

import contextlib
import logging

from psycopg import AsyncConnection

from solaris_hooks.db import ledger
from solaris_hooks.db.leases import settle_leased
from solaris_hooks.exceptions import DatabaseUnavailable
from solaris_hooks.logs import log_event
from solaris_hooks.quota.batch_charges import leased_call, release_leased_call, settle_in_next_batch, settle_leased_call
from solaris_hooks.quota.calls import CallInFlight
from solaris_hooks.quota.leased_streams import cover_leased_usage, journal_released
from solaris_hooks.quota.plan import platform_tokens
from solaris_hooks.quota.spool import SpoolEntry
from solaris_hooks.quota.state import QuotaState
from solaris_hooks.quota.stream_meter import StreamMeter
from solaris_hooks.quota.usage import Usage, delivered_text, reported_usage


async def settle_response(
    state: QuotaState, call_id: str, response_obj: object, model: str | None, cost_usd: float | None
) -> ledger.Resolution | None:
    """Charge a call that succeeded, by the provider's usage or, when it reports none, by our
    own count of the prompt and of what was delivered (never zero: invariant 8)."""
    call = state.calls.get(call_id)
    if call is not None and call.charge_raw_tokens is not None:
        return await settle_call(state, call_id, call.charge_raw_tokens, model, cost_usd)
    usage = reported_usage(response_obj)
    if usage is None:
        if call is None:
            log_event("settle_skipped", logging.WARNING, call_id=call_id, reason="no usage and no call in flight")
            return None
        usage = Usage(raw_tokens=call.counted_raw_tokens(delivered_text(response_obj)), prompt_tokens=None)
        log_event(
            "usage_counted",
            logging.WARNING,
            user_id=call.user_id,
            call_id=call_id,
            raw_tokens=usage.raw_tokens,
            reason="the provider reported no usage",
        )
    return await settle_call(state, call_id, usage.raw_tokens, model, cost_usd, usage.prompt_tokens)


async def settle_call(
    state: QuotaState,
    call_id: str,
    raw_tokens: int,
    model: str | None,
    cost_usd: float | None,
    reported_prompt_tokens: int | None = None,
) -> ledger.Resolution | None:
    """Charge a call that succeeded. None: the database is unreachable and the usage
    went to the spool, to be charged by the replay (never lost, never charged twice)."""
    call = state.calls.pop(call_id)
    # A call from a lease waits for the next batch (a metered stream once its usage is
    # covered), and so, with leases on, does one with a reservation of its own and no stream
    # meter; a metered stream on a reservation of its own settles here, after covering its usage.
    leased = call is not None and call.lease is not None
    if call is not None and call.metered and (leased or (call.meter is None and state.settings.leases)):
        if reported_prompt_tokens is not None and state.margins.widens(call, reported_prompt_tokens):
            state.tasks.spawn(_learn_margin(state, call, reported_prompt_tokens))
        if call.lease is None:
            return settle_in_next_batch(state, call_id, call, raw_tokens, model, cost_usd)
        if call.meter is not None:
            await cover_leased_usage(state, call, call_id, raw_tokens)
        return settle_leased_call(state, call_id, call, raw_tokens, model, cost_usd)
    entry = SpoolEntry(
        call_id=call_id,
        raw_tokens=raw_tokens,
        model=model,
        cost_usd=cost_usd,
        user_id=call.user_id if call else None,
        factor=call.factor if call else None,
    )
    try:
        if call is not None and not call.metered:
            return await charge_spooled(state, entry)
        async with state.database.connection() as connection:
            if call is not None and call.meter is not None:
                await _cover_reported_usage(state, connection, call_id, call.meter, raw_tokens)
            resolution = await ledger.resolve(
                connection,
                call_id=call_id,
                kind="settle",
                raw_tokens=raw_tokens,
                model=model,
                cost_usd=cost_usd,
                thresholds=state.settings.alert_thresholds,
            )
            if call is not None and reported_prompt_tokens is not None:
                await state.margins.learn(connection, call, reported_prompt_tokens)
    except DatabaseUnavailable as error:
        if state.spool.append(entry):
            log_event(
                "usage_spooled",
                logging.WARNING,
                user_id=entry.user_id,
                call_id=call_id,
                raw_tokens=raw_tokens,
                metered=call.metered if call else None,
                error=str(error),
            )
        return None
    if resolution.charged_tokens:
        state.metrics.charged_tokens.labels(model=model or "unknown").inc(resolution.charged_tokens)
    if resolution.state != "settled" or (call is None and not resolution.charged_tokens):
        log_event("settle_ignored", logging.WARNING, call_id=call_id, state=resolution.state, raw_tokens=raw_tokens)
    return resolution


async def _cover_reported_usage(
    state: QuotaState, connection: AsyncConnection, call_id: str, meter: StreamMeter, raw_tokens: int
) -> None:
    """A provider may bill a metered stream more than its chunks counted (hidden reasoning, a
    tokenizer that counts more): grow the reservation to its usage, from what is free, so the
    settle charges that usage and still no more than is held, nor past what was credited."""
    shortfall_tokens = platform_tokens(raw_tokens, meter.factor) - meter.reserved_tokens
    if shortfall_tokens > 0:
        meter.grown(
            await ledger.grow_reservation(
                connection,
                call_id,
                wanted_tokens=shortfall_tokens,
                minimum_tokens=1,
                ttl_s=state.settings.reservation_ttl_s,
            )
        )


async def _learn_margin(state: QuotaState, call: CallInFlight, reported_prompt_tokens: int) -> None:
    """A settle left to the next batch waits for no database: what it teaches is written beside it."""
    with contextlib.suppress(DatabaseUnavailable):
        async with state.database.connection() as connection:
            await state.margins.learn(connection, call, reported_prompt_tokens)


async def settle_delivered(state: QuotaState, call_id: str) -> ledger.Resolution | None:
    """A call that ended without a result after delivering content (a stream that broke or
    was abandoned): charged our count of its prompt and of what it delivered."""
    call = state.calls.get(call_id)
    if call is None:
        return None
    raw_tokens = call.counted_raw_tokens()
    log_event(
        "usage_counted",
        logging.WARNING,
        user_id=call.user_id,
        call_id=call_id,
        raw_tokens=raw_tokens,
        reason="the stream ended without usage after delivering content",
    )
    return await settle_call(state, call_id, raw_tokens, call.model, None)


async def charge_spooled(state: QuotaState, entry: SpoolEntry) -> ledger.Resolution:
    """Charge usage that was not charged when it happened; idempotent per call id."""
    if entry.lease_id is not None:
        return await _charge_journaled(state, entry)
    async with state.database.connection() as connection:
        resolution = await ledger.settle_spooled(
            connection,
            call_id=entry.call_id,
            raw_tokens=entry.raw_tokens,
            model=entry.model,
            cost_usd=entry.cost_usd,
            user_id=entry.user_id,
            factor=entry.factor,
            spooled_at=entry.spooled_at or None,
            default_tokens=state.settings.default_tokens_per_user,
            thresholds=state.settings.alert_thresholds,
        )
    if resolution.charged_tokens:
        state.metrics.charged_tokens.labels(model=entry.model or "unknown").inc(resolution.charged_tokens)
    if resolution.state == "unknown":
        log_event("spooled_usage_unmatched", logging.ERROR, call_id=entry.call_id, raw_tokens=entry.raw_tokens)
    return resolution


async def _charge_journaled(state: QuotaState, entry: SpoolEntry) -> ledger.Resolution:
    """A leased call from a journal its process left behind (killed before the batch)."""
    async with state.database.connection() as connection:
        [lease] = await settle_leased(
            connection,
            [leased_call(entry)],
            ttl_s=state.settings.lease_ttl_s,
            thresholds=state.settings.alert_thresholds,
        )
    if lease.charged_tokens:
        state.metrics.charged_tokens.labels(model=entry.model or "unknown").inc(lease.charged_tokens)
    return ledger.Resolution(state="settled", charged_tokens=lease.charged_tokens)


async def release_call(state: QuotaState, call_id: str) -> ledger.Resolution:
    """Return the reservation of a call that failed, or charge what it delivered before."""
    call = state.calls.get(call_id)
    if call is None or not call.metered:
        # Nothing this process reserved: a refused call, one the database was down for
        # (its 503 is not held up by a release that would wait for the pool too), an
        # unmetered one, or a repeated failure event. A reservation forgotten past
        # calls_in_flight_max expires instead.
        state.calls.pop(call_id)
        return ledger.Resolution(state="unknown", charged_tokens=0)
    if call.delivered:
        # It failed after content reached the client: what was delivered is owed.
        return await settle_delivered(state, call_id) or ledger.Resolution(state="unknown", charged_tokens=0)
    state.calls.pop(call_id)
    if call.lease is not None:
        if call.meter is not None:
            journal_released(state, call, call_id)
        return release_leased_call(state, call)
    async with state.database.connection() as connection:
        return await ledger.resolve(connection, call_id=call_id, kind="release")
