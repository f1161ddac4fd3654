"""Streams: what a streamed call delivers is counted, and its reservation kept ahead of it.

A metered stream (a streamed chat call, see solaris_hooks.quota.reserve) holds its prompt and a
first chunk of completion. Each chunk's text is counted as it passes (by its UTF-8 length
while that fits in what is held, by the tokenizer near it: see quota.stream_meter; either
way an upper bound of what the provider bills), and before a chunk would take the
delivered total past what is held, the reservation grows (one conditional update, awaited:
a chunk is never delivered unpaid). When the allowance is used up the stream ends cleanly: a
last chunk with a notice in the user's language, a chunk with finish_reason "length", the
upstream closed, the call settled at what was delivered.

Every stream: one that breaks or is abandoned after delivering content is charged what it
delivered (the success event, if one still comes, finds the call settled). While chunks
flow, the reservation's expiry is pushed forward, so the sweeper never expires a call that
is still running.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from solaris_hooks import messages
from solaris_hooks.db import ledger
from solaris_hooks.exceptions import DatabaseUnavailable
from solaris_hooks.logs import log_event
from solaris_hooks.quota.calls import CallInFlight
from solaris_hooks.quota.leased_streams import grow_from_lease
from solaris_hooks.quota.settle import settle_delivered
from solaris_hooks.quota.state import QuotaState
from solaris_hooks.quota.usage import chunk_text


async def meter_stream(state: QuotaState, stream: AsyncIterator[object], call_id: str) -> AsyncIterator[object]:
    """Pass a stream through, counting what it delivers and keeping its reservation ahead of it."""
    call = state.calls.get(call_id)
    if call is None or not call.metered:
        async for chunk in stream:
            yield chunk
        return
    renew_every_s = state.settings.reservation_ttl_s / 3
    meter = call.meter
    completed = False
    try:
        async for chunk in stream:
            text = chunk_text(chunk)
            chunk_tokens = meter.admit(text, call.count_tokens) if text and meter is not None else None
            if chunk_tokens is not None and meter is not None:  # near what is held: paid before delivery
                if not await _paid_ahead(state, call, call_id, chunk_tokens):
                    completed = True
                    for last in await _cut(state, call_id, stream, chunk):
                        yield last
                    return
                meter.delivered(chunk_tokens)
            if text:
                call.delivered.append(text)
            # A lease in use is renewed by the batch loop (quota/leasing.py).
            if call.lease is None and time.monotonic() - call.renewed_at_s > renew_every_s:
                call.renewed_at_s = time.monotonic()
                state.tasks.spawn(_extend(state, call_id))
            yield chunk
        completed = True
    except Exception:
        # Nothing delivered: the failure hook releases the reservation.
        if call.delivered:
            await settle_delivered(state, call_id)
        raise
    finally:
        if not completed and (call.delivered or call.meter is not None) and call_id in state.calls:
            # The client went away (GeneratorExit or cancellation): no await is safe here.
            # A metered stream is settled even before content: the provider billed its prompt.
            state.tasks.spawn(settle_delivered(state, call_id))


async def _paid_ahead(state: QuotaState, call: CallInFlight, call_id: str, chunk_tokens: int) -> bool:
    """Make the reservation cover chunk_tokens more; False: the allowance is used up."""
    assert call.meter is not None
    growth = call.meter.growth_before(chunk_tokens)
    if growth is None:
        return True
    # Shielded: a client that leaves while a growth is in flight does not cut the statement
    # short; the settle its leaving starts then finds the reservation as the database has it.
    if call.lease is not None:  # in memory, or a top-up of the lease (quota/leased_streams.py)
        grown = await asyncio.shield(grow_from_lease(state, call, call_id, growth))
    else:
        grown = await asyncio.shield(_grow(state, call_id, growth.wanted_tokens, growth.minimum_tokens))
    if grown <= 0:
        return False
    call.meter.grown(grown)
    call.reserved_tokens = call.meter.reserved_tokens
    call.renewed_at_s = time.monotonic()
    return True


async def _grow(state: QuotaState, call_id: str, wanted_tokens: int, minimum_tokens: int) -> int:
    try:
        async with state.database.connection() as connection:
            return await ledger.grow_reservation(
                connection,
                call_id,
                wanted_tokens=wanted_tokens,
                minimum_tokens=minimum_tokens,
                ttl_s=state.settings.reservation_ttl_s,
            )
    except DatabaseUnavailable as error:
        # Not paid for, so not delivered: the stream ends as if the allowance were used up.
        log_event("grow_failed", logging.WARNING, call_id=call_id, error=str(error))
        return 0


async def _cut(state: QuotaState, call_id: str, stream: AsyncIterator[object], template: object) -> list[object]:
    """End a stream whose allowance is used up: close the upstream, settle what was delivered,
    and return the two chunks that end it well (a notice, then finish_reason "length")."""
    call = state.calls.get(call_id)
    user_id = call.user_id if call else None
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception as error:  # the upstream may already be gone; the cut stands
            log_event("stream_close_failed", logging.WARNING, call_id=call_id, error=str(error))
    resolution = await settle_delivered(state, call_id)
    log_event(
        "stream_cut",
        user_id=user_id,
        call_id=call_id,
        charged_tokens=resolution.charged_tokens if resolution else None,
    )
    settings = state.settings
    notice = " ".join(messages.render("stream_cut", settings.locale, credits_email=settings.credits_email).split())
    return [
        _chunk_like(template, content="\n\n" + notice.replace(" ]", "]"), finish_reason=None),
        _chunk_like(template, content=None, finish_reason="length"),
    ]


def _chunk_like(template: object, *, content: str | None, finish_reason: str | None) -> Any:
    """A chat completion chunk with the template's id, model and creation time."""
    from litellm.types.utils import Delta, ModelResponseStream, StreamingChoices  # loaded by the proxy already

    return ModelResponseStream(
        id=getattr(template, "id", None),
        created=getattr(template, "created", None),
        model=getattr(template, "model", None),
        choices=[StreamingChoices(index=0, delta=Delta(content=content), finish_reason=finish_reason)],
    )


async def _extend(state: QuotaState, call_id: str) -> None:
    try:
        async with state.database.connection() as connection:
            await ledger.extend_reservation(connection, call_id, state.settings.reservation_ttl_s)
    except DatabaseUnavailable as error:
        log_event("extend_failed", logging.WARNING, call_id=call_id, error=str(error))
