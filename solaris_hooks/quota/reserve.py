"""The pre-call side of a call: who pays, the worst case reserved, the completion bounded.

A call is refused here (a Refusal) when its user has no identity the settings accept, is
over a rate limit, has not enough left, or is blocked; otherwise its reservation is held in
the ledger and the call's completion is bounded to what the reservation covers.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from solaris_hooks.db import ledger
from solaris_hooks.db.margins import PromptMargin
from solaris_hooks.exceptions import (
    CallConflict,
    CallUnbounded,
    DatabaseUnavailable,
    IdentityRefused,
    RateLimited,
    Refusal,
    Regrouped,
    RouteClosed,
)
from solaris_hooks.logs import log_event
from solaris_hooks.quota import rate_limits
from solaris_hooks.quota.calls import CallInFlight, adopt_call_id, keep_our_callback_on, new_call_id
from solaris_hooks.quota.estimate import plan_call
from solaris_hooks.quota.groups import header_group
from solaris_hooks.quota.identity import resolve_identity
from solaris_hooks.quota.learned_margins import teaches_margin
from solaris_hooks.quota.leased_streams import reserve_stream
from solaris_hooks.quota.leasing import held_here, release_held, reserve_from_lease
from solaris_hooks.quota.outcome import apply_outcome
from solaris_hooks.quota.plan import Plan, platform_tokens
from solaris_hooks.quota.rate_limits import CountingCache
from solaris_hooks.quota.state import QuotaState
from solaris_hooks.quota.stream_meter import StreamMeter
from solaris_hooks.quota.title_calls import cap_title_completion, is_title_call
from solaris_hooks.settings import Settings


async def reserve_call(
    state: QuotaState, data: dict, call_type: str, key: object, cache: CountingCache | None = None
) -> str | None:
    """Reserve the worst case of a call and bound its completion; raises a Refusal.

    Returns the user charged, or None when the database is down and fail_mode is
    open (the call then goes through unmetered).
    """
    started = time.perf_counter()
    adopt_call_id(data, new_call_id())
    keep_our_callback_on(data)
    user_id = None
    try:
        # Normalised, named only by a key allowed to (else a 403), never a shared default account.
        settings = state.settings
        user_id = resolve_identity(
            data,
            key,
            header_name=settings.identity_header,
            local_part_case=settings.identity_local_part_case,
            anonymous_calls=settings.anonymous_calls,
            trusted_keys=settings.trusted_keys,
        )
        try:
            return await _reserve_call(state, data, call_type, key, cache, user_id)
        except Regrouped:
            try:
                # Priced again for the group the ledger named, once: its rate limits were counted.
                return await _reserve_call(state, data, call_type, key, None, user_id)
            except Regrouped as regrouped:  # the group changed again meanwhile: rare enough to say so
                log_event("regrouped_twice", logging.WARNING, user_id=user_id, group=regrouped.group)
                raise CallConflict() from None
    except Refusal as refusal:
        state.metrics.refusals.labels(reason=refusal.reason).inc()
        if user_id is not None:  # counted per user for the admin pages, written with the next batch
            state.refusal_counts.add(user_id)
        if isinstance(refusal, IdentityRefused):
            # No user to name: the identity itself may be what was wrong (never logged).
            log_event(
                "refused",
                user_id=None,
                call_id=str(data.get("litellm_call_id") or ""),
                reason=refusal.reason,
                code=refusal.message_key,
            )
        raise
    except DatabaseUnavailable:
        state.metrics.refusals.labels(reason="database_unavailable").inc()
        raise
    finally:
        state.metrics.pre_call_seconds.observe(time.perf_counter() - started)


async def _reserve_call(
    state: QuotaState, data: dict, call_type: str, key: object, cache: CountingCache | None, user_id: str
) -> str | None:
    """`key` is LiteLLM's UserAPIKeyAuth: its user_id, token (key hash) and key_alias.
    `cache` None: rate limits are not counted (a call priced again after a 'regroup')."""
    settings = state.settings
    # With groups configured, the call is priced for the user's group (quota/groups.py),
    # which the reserve checks in the ledger.
    from_header = header_group(data, key, settings)
    group = state.groups.assumed(user_id, from_header) if settings.groups else None
    checked = ledger.GroupCheck(group, from_header) if settings.groups else None
    settings = state.groups.settings_for(settings, group)
    call_id = str(data["litellm_call_id"])
    model = str(data.get("model") or "") or None
    margin = state.margins.for_model(model).widened(PromptMargin(ratio=settings.prompt_margin_for(model)))
    # A free title call is still reserved and settled, at factor 0: the ledger shows its raw
    # tokens. Only LibreChat's whole title request shape counts, its answer is capped, and a
    # long prompt makes it an ordinary call.
    free = settings.title_calls == "free" and is_title_call(data, call_type, settings)
    if free:
        cap_title_completion(data, settings)
    factor = 0.0 if free else settings.factor_for(model)
    try:
        plan = _plan(data, call_type, factor, margin, settings)
        if free and plan.prompt_tokens > settings.title_prompt_tokens_max:
            free, factor = False, settings.factor_for(model)
            plan = _plan(data, call_type, factor, margin, settings)
    except (RouteClosed, CallUnbounded) as refusal:
        # Our one line for it: LiteLLM's own ERROR line for our refusals is filtered out.
        log_event("refused", user_id=user_id, call_id=call_id, reason=refusal.reason, code=refusal.message_key)
        raise
    if plan.free:
        # A route the admin opened with `free` (e.g. `routes: {moderations: free}`): nothing
        # to reserve, nothing to charge.
        log_event("free_route", user_id=user_id, call_id=call_id, route=plan.route)
        return user_id
    try:
        if cache is not None or not checked:
            await rate_limits.enforce(cache, user_id, plan.wanted_tokens, settings)
    except RateLimited as refusal:
        log_event(
            "refused",
            user_id=user_id,
            call_id=call_id,
            reason=refusal.reason,
            code=refusal.message_key,
            retry_after_s=refusal.params["retry_after_s"],
        )
        raise
    chunk_tokens = _stream_chunk_tokens(data, call_type, plan, settings)
    first_tokens = platform_tokens(plan.prompt_bound_tokens + chunk_tokens, plan.factor) if chunk_tokens else 0
    # A busy user's call is reserved in memory from this process's lease, far from the edge of
    # the allowance (an unstreamed call's worst case; a metered stream's first chunk, its
    # running line journaled); else (near it, other streams, leases off) in the ledger.
    lease = None
    if settings.leases and plan.wanted_tokens > 0 and not data.get("stream"):
        lease = await reserve_from_lease(state, user_id, plan.wanted_tokens, group=group)
    elif settings.leases and chunk_tokens:
        lease = await reserve_stream(state, user_id, call_id, model, plan, first_tokens, group)
    try:
        if lease is not None:
            # As the ledger answers when the worst case is free (a lease serves no call otherwise).
            held_tokens = first_tokens or plan.wanted_tokens
            reservation = ledger.Reservation("reserved", held_tokens, plan.wanted_tokens - held_tokens, 0, 0)
        else:
            reservation = await _reserve_in_ledger(
                state, settings, user_id, call_id, model, plan, first_tokens, checked
            )
            # Refused for tokens this process holds itself (charges waiting for the next batch,
            # the user's lease): those are written and returned now, and the call asked again.
            if held_here(reservation) and await release_held(state, user_id):
                reservation = await _reserve_in_ledger(
                    state, settings, user_id, call_id, model, plan, first_tokens, checked
                )
    except DatabaseUnavailable as error:
        if settings.fail_mode == "open":
            log_event("fail_open", logging.WARNING, user_id=user_id, call_id=call_id, error=str(error))
            # Charged when it succeeds: directly if the database is back by then, else
            # through the spool.
            state.calls.remember(
                call_id,
                CallInFlight(
                    user_id,
                    plan.factor,
                    metered=False,
                    model=model,
                    prompt_tokens=plan.prompt_tokens,
                    charge_raw_tokens=plan.settle_raw_tokens(plan.wanted_tokens),
                ),
            )
            return None
        log_event("database_unavailable", logging.ERROR, user_id=user_id, call_id=call_id, error=str(error))
        raise
    apply_outcome(reservation, plan, data, user_id, call_id, settings, metered_stream=bool(chunk_tokens))
    meter = None
    if chunk_tokens and reservation.outcome == "reserved":
        meter = StreamMeter(
            prompt_bound_tokens=plan.prompt_bound_tokens,
            factor=plan.factor,
            reserved_tokens=reservation.reserved,
            chunk_tokens=chunk_tokens,
            chunk_tokens_max=max(chunk_tokens, settings.stream_chunk_tokens_max),
        )
    state.calls.remember(
        call_id,
        CallInFlight(
            user_id,
            plan.factor,
            metered=True,
            model=model,
            prompt_tokens=plan.prompt_tokens,
            prompt_bound_tokens=plan.prompt_bound_tokens,
            reserved_tokens=reservation.reserved,
            learns_margin=teaches_margin(call_type) and not free,
            charge_raw_tokens=plan.settle_raw_tokens(reservation.reserved),
            meter=meter,
            lease=lease,
            group=group,
        ),
    )
    return user_id


async def _reserve_in_ledger(
    state: QuotaState,
    settings: Settings,
    user_id: str,
    call_id: str,
    model: str | None,
    plan: Plan,
    first_tokens: int,
    checked: ledger.GroupCheck | None,
) -> ledger.Reservation:
    """The call's own reservation: its worst case, or a metered stream's prompt and first
    chunk. Raises Regrouped when the ledger says the user's group is not checked.assumed."""
    async with state.database.connection() as connection:
        reservation = await ledger.reserve(
            connection,
            user_id=user_id,
            call_id=call_id,
            wanted_tokens=first_tokens or plan.wanted_tokens,
            minimum_tokens=plan.minimum_tokens,
            default_tokens=settings.default_tokens_per_user,
            ttl_s=settings.reservation_ttl_s,
            model=model,
            factor=plan.factor,
            thresholds=settings.alert_thresholds,
            metered=bool(first_tokens),
            group=checked,
        )
    if checked is not None:
        state.groups.learned(user_id, reservation.group_name, reservation.group_source)
        if reservation.outcome == "regroup":
            raise Regrouped(reservation.group_name)
    return reservation


def _stream_chunk_tokens(data: dict, call_type: str, plan: Plan, settings: Settings) -> int:
    """The first chunk of completion a metered stream reserves; 0: reserve the worst case.

    Metered: streamed chat completions of one choice, charged by usage, whose worst case is
    more than the prompt and one chunk. Other streamed routes keep the worst case."""
    chunk_tokens = settings.stream_chunk_tokens
    metered = (
        call_type == "acompletion"
        and data.get("stream") is True
        and chunk_tokens > 0
        and plan.factor > 0
        and plan.choices == 1
        and not plan.priced
        and not plan.charged_by_plan
        and plan.completion_tokens_max > chunk_tokens
    )
    return chunk_tokens if metered else 0


def _plan(data: dict, call_type: str, factor: float, margin: PromptMargin, settings: Settings) -> Plan:
    """The call's plan, its prompt bounded by the model's margin (known once it is counted)."""
    plan = plan_call(data, call_type, factor, settings, margin.ratio)
    if margin.excess_tokens and plan.prompt_tokens:
        plan = dataclasses.replace(plan, prompt_margin=margin.multiplier(plan.prompt_tokens))
    return plan
