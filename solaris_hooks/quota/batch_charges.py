"""Charges that wait for the next batch (settings.leases): a call's usage is charged in
memory when it ends and journaled at once; quota.leasing.flush_forever writes it to the
ledger with the next batch (solaris.settle_leased for calls a lease covered,
solaris.settle_batch for calls on reservations of their own).
"""

from __future__ import annotations

import logging

from solaris_hooks.db import ledger
from solaris_hooks.db.batched_settles import BatchedSettle
from solaris_hooks.db.leases import LeasedCall
from solaris_hooks.logs import log_event
from solaris_hooks.quota.calls import CallInFlight
from solaris_hooks.quota.leases import Lease
from solaris_hooks.quota.plan import platform_tokens
from solaris_hooks.quota.spool import SpoolEntry
from solaris_hooks.quota.state import QuotaState


def leased_call(entry: SpoolEntry) -> LeasedCall:
    """A leased call's charge as the ledger takes it, from its journal line."""
    return LeasedCall(
        entry.call_id,
        str(entry.lease_id),
        entry.raw_tokens,
        entry.factor or 0.0,
        entry.model,
        entry.cost_usd,
        held_tokens=entry.held_tokens,
        running=entry.stream == "running",
        group_name=entry.group_name,
    )


def settle_leased_call(
    state: QuotaState, call_id: str, call: CallInFlight, raw_tokens: int, model: str | None, cost_usd: float | None
) -> ledger.Resolution:
    """Charge a leased call in memory; its journal line now, its ledger row with the next batch.
    A metered stream is charged at most what it held (its usage was covered first if it could be)."""
    lease = call.lease
    assert lease is not None and call.reserved_tokens is not None
    # As solaris.settle_leased charges it, so the lease's free tokens match the ledger's.
    charged_tokens = platform_tokens(max(raw_tokens, 0), call.factor)
    held_tokens = call.reserved_tokens if call.meter is not None else None
    if held_tokens is not None:
        charged_tokens = min(charged_tokens, held_tokens)
    entry = SpoolEntry(
        call_id,
        raw_tokens,
        model,
        cost_usd,
        user_id=call.user_id,
        factor=call.factor,
        lease_id=lease.lease_id,
        held_tokens=held_tokens,
        group_name=call.group,
    )
    _wait_for_batch(state, leased_call(entry), lease, charged_tokens, entry)
    state.leases.ended(lease, call.reserved_tokens, charged_tokens)
    return ledger.Resolution(state="settled", charged_tokens=charged_tokens)


def settle_in_next_batch(
    state: QuotaState, call_id: str, call: CallInFlight, raw_tokens: int, model: str | None, cost_usd: float | None
) -> ledger.Resolution:
    """With leases on, a call on a reservation of its own is settled by the next batch too:
    its journal line now, its ledger row (solaris.resolve's) within settle_batch_interval_ms.
    Until then its reservation holds its whole worst case, so nothing more can be spent."""
    charged_tokens = platform_tokens(max(raw_tokens, 0), call.factor)
    entry = SpoolEntry(call_id, raw_tokens, model, cost_usd, call.user_id, call.factor)
    _wait_for_batch(state, BatchedSettle(call_id, raw_tokens, model, cost_usd), None, charged_tokens, entry)
    return ledger.Resolution(state="settled", charged_tokens=charged_tokens)


def _wait_for_batch(
    state: QuotaState, call: LeasedCall | BatchedSettle, lease: Lease | None, charged_tokens: int, entry: SpoolEntry
) -> None:
    try:
        state.settle_batches.add(call, lease, charged_tokens, entry)
    except OSError as error:
        # No journal (a full or read-only disk): the batch still writes it, unless the
        # process dies first. Said loudly, as the spool says usage it cannot keep.
        log_event("journal_unwritable", logging.ERROR, call_id=entry.call_id, user_id=entry.user_id, error=str(error))
        state.settle_batches.add_unjournaled(call, lease, charged_tokens)


def release_leased_call(state: QuotaState, call: CallInFlight) -> ledger.Resolution:
    """A leased call that failed before delivering anything: its worst case is free again."""
    assert call.lease is not None and call.reserved_tokens is not None
    state.leases.ended(call.lease, call.reserved_tokens, None)
    return ledger.Resolution(state="released", charged_tokens=0)
