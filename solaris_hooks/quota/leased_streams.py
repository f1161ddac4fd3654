"""Metered streams reserved from leases (settings.leases): no round trip to start one, or to grow it.

A busy user's metered stream (see quota/reserve.py) takes its prompt bound and first chunk
from this process's lease in memory, as an unstreamed call takes its worst case, provided
the lease has that worst case free. Each growth (quota/streams.py) comes from the lease too,
and when the lease has too little, from a top-up of it taken for the stream: one conditional
update of the account, as the growth of a reservation of its own would be, and from all the
user has free (not lease_share of it), so a stream is never cut while its user has the tokens.

What makes it safe to deliver before the ledger knows: before the hook lets a stream start,
and before each chunk a growth pays for, the stream journals a "running" line with what it
holds (quota/settle_batches.SettleJournal: no fsync, it outlives the process, not the
machine). A process killed mid-stream leaves that line behind, and the spool replay charges
what the stream held, as the expiry of a metered reservation of its own does (migrations
0008, 0011). A stream that ends journals its settle (or "released": it delivered nothing),
which is what a replay charges instead.
"""

from __future__ import annotations

import logging
import math

from solaris_hooks.exceptions import DatabaseUnavailable
from solaris_hooks.logs import log_event
from solaris_hooks.quota.calls import CallInFlight
from solaris_hooks.quota.leases import Lease
from solaris_hooks.quota.leasing import give_up, reserve_from_lease, start_top_up, take_lease_tokens
from solaris_hooks.quota.plan import Plan, platform_tokens
from solaris_hooks.quota.spool import SpoolEntry
from solaris_hooks.quota.state import QuotaState
from solaris_hooks.quota.stream_meter import Growth

# A top-up for a stream takes from all its user has free, not lease_share of it: what the
# stream needs is what a growth of a reservation of its own would take.
stream_top_up_share = 1.0


async def reserve_stream(
    state: QuotaState, user_id: str, call_id: str, model: str | None, plan: Plan, first_tokens: int, group: str | None
) -> Lease | None:
    """Reserve a metered stream's first chunk from the user's lease, its running line journaled;
    None: reserve it in the ledger (no lease has its worst case free, or no journal)."""
    lease = await reserve_from_lease(state, user_id, first_tokens, plan.wanted_tokens, group)
    if lease is None:
        return None
    running = _line(call_id, user_id, lease, model, plan.factor, first_tokens, "running")
    try:
        state.settle_batches.journal.append(running)
    except OSError as error:
        # Without its line a process that dies mid-stream would leave it uncharged: the
        # stream takes a reservation of its own instead, whose expiry charges it.
        log_event("journal_unwritable", logging.ERROR, call_id=call_id, user_id=user_id, error=str(error))
        state.leases.ended(lease, first_tokens, None)
        return None
    return lease


async def grow_from_lease(state: QuotaState, call: CallInFlight, call_id: str, growth: Growth) -> int:
    """Grow a leased stream's reservation by up to growth.wanted_tokens (at least its minimum),
    journaled before the chunk it pays for is delivered; 0: the user has not that much free."""
    lease = call.lease
    assert lease is not None and call.meter is not None
    grown = state.leases.grow(lease, growth.wanted_tokens, growth.minimum_tokens)
    if not grown and not lease.given_up:
        await _top_up_for_stream(
            state,
            lease,
            wanted_tokens=growth.wanted_tokens - lease.free_tokens,
            minimum_tokens=growth.minimum_tokens - lease.free_tokens,
        )
        grown = state.leases.grow(lease, growth.wanted_tokens, growth.minimum_tokens)
    if not grown:
        return 0
    if lease.needs_top_up():
        start_top_up(state, lease)
    held_tokens = call.meter.reserved_tokens + grown
    try:
        state.settle_batches.journal.append(
            _line(call_id, call.user_id, lease, call.model, call.factor, held_tokens, "running")
        )
    except OSError as error:
        # Delivered all the same, as a settle whose journal line cannot be written is: only a
        # process that dies before the stream ends would leave the growth uncharged. Said loudly.
        log_event("journal_unwritable", logging.ERROR, call_id=call_id, user_id=call.user_id, error=str(error))
    return grown


async def cover_leased_usage(state: QuotaState, call: CallInFlight, call_id: str, raw_tokens: int) -> None:
    """A provider may bill a stream more than its chunks counted (hidden reasoning): grow what
    it holds to its usage from what the user has free, so that it is charged that usage and
    never more than it held (as quota/settle.py does for a stream on a reservation of its own)."""
    assert call.meter is not None
    shortfall_tokens = platform_tokens(max(raw_tokens, 0), call.factor) - call.meter.reserved_tokens
    if shortfall_tokens > 0:
        grown = await grow_from_lease(state, call, call_id, Growth(shortfall_tokens, minimum_tokens=1))
        call.meter.grown(grown)
        call.reserved_tokens = call.meter.reserved_tokens


def journal_released(state: QuotaState, call: CallInFlight, call_id: str) -> None:
    """A leased stream that ended having delivered nothing owes nothing: its running line is void."""
    assert call.lease is not None
    try:
        state.settle_batches.journal.append(
            _line(call_id, call.user_id, call.lease, call.model, call.factor, 0, "released")
        )
    except OSError as error:
        log_event("journal_unwritable", logging.ERROR, call_id=call_id, user_id=call.user_id, error=str(error))


async def _top_up_for_stream(state: QuotaState, lease: Lease, wanted_tokens: int, minimum_tokens: int) -> None:
    try:
        taken = await take_lease_tokens(
            state, lease.user_id, lease.lease_id, wanted_tokens, minimum_tokens, share=stream_top_up_share
        )
    except DatabaseUnavailable as error:
        # Not paid for, so not delivered: the stream ends as if the allowance were used up.
        log_event("grow_failed", logging.WARNING, lease_id=lease.lease_id, error=str(error))
        return
    if taken.outcome == "reserved":
        lease.free_tokens += taken.reserved
    elif taken.outcome != "exhausted":
        give_up(state, lease, taken.outcome, taken.outcome)


def _line(
    call_id: str, user_id: str, lease: Lease, model: str | None, factor: float, held_tokens: int, stream: str
) -> SpoolEntry:
    """A leased stream's journal line: what it holds, charged in full if its process dies first.
    Its raw tokens are the fewest that cost what it holds; the charge stops at held_tokens."""
    raw_tokens = math.ceil(held_tokens / factor) if factor > 0 else 0
    return SpoolEntry(
        call_id,
        raw_tokens,
        model,
        user_id=user_id,
        factor=factor,
        lease_id=lease.lease_id,
        held_tokens=held_tokens,
        stream=stream,
        group_name=lease.group,
    )
