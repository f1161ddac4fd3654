"""What a reservation's outcome does to a call: bounds its completion to what was reserved,
or refuses it with the refusal the outcome means (each with its one `refused` log line)."""

from __future__ import annotations

import logging

from solaris_hooks.db import ledger
from solaris_hooks.exceptions import AccountInactive, CallConflict, QuotaExhausted
from solaris_hooks.logs import log_event
from solaris_hooks.quota.plan import Plan
from solaris_hooks.settings import Settings


def apply_outcome(
    reservation: ledger.Reservation,
    plan: Plan,
    data: dict,
    user_id: str,
    call_id: str,
    settings: Settings,
    metered_stream: bool = False,
) -> None:
    """Bound the call's completion to what was reserved, or raise the refusal the outcome means.

    A metered stream holds only a first chunk: its completion is bounded by what the user had
    free when it started (the outer bound), and the stream grows the reservation up to it."""
    if reservation.outcome == "reserved":
        free_at_start = reservation.reserved + max(0, reservation.remaining_tokens)
        plan.write_bound(data, free_at_start if metered_stream else reservation.reserved)
        return
    if reservation.outcome == "duplicate":
        # Our keys are fresh per request, so this means something reused one: never let a
        # call ride on another call's reservation.
        log_event("refused", logging.ERROR, user_id=user_id, call_id=call_id, reason="duplicate_call_id")
        raise CallConflict()
    fields: dict[str, object] = {
        "credited_tokens": reservation.credited_tokens,
        "used_tokens": reservation.debited_tokens,
        "reserved_tokens": reservation.reserved_tokens,
        "credits_email": settings.credits_email,
    }
    log_event(
        "refused",
        user_id=user_id,
        call_id=call_id,
        reason=reservation.outcome,
        wanted_tokens=plan.wanted_tokens,
        remaining_tokens=reservation.remaining_tokens,
    )
    if reservation.outcome == "exhausted":
        # Other answers still in progress hold what this call needs: it fits once they end,
        # so the person is told to wait, not to shorten the message or ask for credits.
        free_of_calls_in_flight = reservation.credited_tokens - reservation.debited_tokens
        if reservation.reserved_tokens > 0 and free_of_calls_in_flight >= plan.minimum_tokens:
            raise QuotaExhausted(
                "quota_held",
                needed_tokens=plan.minimum_tokens,
                remaining_tokens=max(0, reservation.remaining_tokens),
                **fields,
            )
        # Past the last warning it is "used up" (and the block e-mail goes out, see
        # solaris.reserve); before it, only this call is too big for what is left.
        last_warning = max(settings.alert_thresholds, default=1.0)
        if reservation.debited_tokens >= reservation.credited_tokens * last_warning:
            raise QuotaExhausted(QuotaExhausted.message_key, **fields)
        raise QuotaExhausted(
            "quota_insufficient",
            needed_tokens=plan.minimum_tokens,
            remaining_tokens=max(0, reservation.remaining_tokens),
            **fields,
        )
    raise AccountInactive(f"account_{reservation.outcome}", **fields)
