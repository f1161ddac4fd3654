"""Streams: what a streamed call delivers is noted, and its reservation kept alive.

A stream that breaks or is abandoned after delivering content is charged what it
delivered (the success event, if one still comes, finds the call settled). While chunks
flow, the reservation's expiry is pushed forward, so the sweeper never returns tokens of a
call that is still running.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from solaris_hooks.db import ledger
from solaris_hooks.exceptions import DatabaseUnavailable
from solaris_hooks.logs import log_event
from solaris_hooks.quota.settle import settle_delivered
from solaris_hooks.quota.state import QuotaState
from solaris_hooks.quota.usage import chunk_text


async def meter_stream(state: QuotaState, stream: AsyncIterator[object], call_id: str) -> AsyncIterator[object]:
    """Pass a stream through, noting what it delivers and keeping its reservation alive."""
    call = state.calls.get(call_id)
    if call is None or not call.metered:
        async for chunk in stream:
            yield chunk
        return
    renew_every_s = state.settings.reservation_ttl_s / 3
    completed = False
    try:
        async for chunk in stream:
            text = chunk_text(chunk)
            if text:
                call.delivered.append(text)
            if time.monotonic() - call.renewed_at_s > renew_every_s:
                call.renewed_at_s = time.monotonic()
                state.tasks.spawn(_extend(state, call_id))
            yield chunk
        completed = True
    except Exception:
        if call.delivered:
            await settle_delivered(state, call_id)
        raise
    finally:
        if not completed and call.delivered and call_id in state.calls:
            # The client went away (GeneratorExit or cancellation): no await is safe here.
            state.tasks.spawn(settle_delivered(state, call_id))


async def _extend(state: QuotaState, call_id: str) -> None:
    try:
        async with state.database.connection() as connection:
            await ledger.extend_reservation(connection, call_id, state.settings.reservation_ttl_s)
    except DatabaseUnavailable as error:
        log_event("extend_failed", logging.WARNING, call_id=call_id, error=str(error))
