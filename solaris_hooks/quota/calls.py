"""Calls in flight: our call ids, and what a call's later events need from its pre-call hook.

LiteLLM hands the success and failure events only the call's id and its response; the
user charged, the factor and the estimate live here from the pre-call hook until then.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

from solaris_hooks.logs import log_event
from solaris_hooks.quota.leases import Lease
from solaris_hooks.quota.stream_meter import StreamMeter
from solaris_hooks.quota.tokenizer import count_tokens

# Calls between their pre-call hook and their success or failure event. Bounded: a call
# whose events never come must not hold memory for good.
calls_in_flight_max = 10_000


def new_call_id() -> str:
    """A reservation key of ours: unique per request, never taken from the client."""
    return f"solaris-{uuid.uuid4().hex}"


def adopt_call_id(data: dict, call_id: str) -> None:
    """Make `call_id` the call's id everywhere LiteLLM reports it to the success and failure
    events, replacing the one a client may have chosen (header `x-litellm-call-id`, body
    `litellm_call_id`). The proxy builds its logging object before the pre-call hook, so
    the object is updated too: its id is what the events carry."""
    data["litellm_call_id"] = call_id
    logging_obj = data.get("litellm_logging_obj")
    if logging_obj is None:
        return
    logging_obj.litellm_call_id = call_id
    details = getattr(logging_obj, "model_call_details", None)
    if isinstance(details, dict):
        details["litellm_call_id"] = call_id


def keep_our_callback_on(data: dict) -> None:
    """Drop the client's `no-log` switch: LiteLLM skips every logging callback of a call that
    sets it, ours too, so its settle would never come and the reservation would expire, a free
    call. The charge is not a log a client may turn off."""
    data.pop("no-log", None)


@dataclass
class CallInFlight:
    """What a call's success or failure needs and LiteLLM does not hand back to it."""

    user_id: str
    factor: float
    metered: bool  # False: the database was down and fail_mode: open let it through unreserved
    model: str | None = None
    prompt_tokens: int = 0  # our raw estimate, before the margin: the provider's count is compared to it
    prompt_bound_tokens: int = 0  # what the reservation allowed the provider to count
    learns_margin: bool = False
    reserved_tokens: int | None = None  # platform tokens held; None when unmetered
    # Priced calls (images, speech, transcriptions) and moderations: charged by the plan,
    # in raw tokens at `factor`, whatever usage the provider reports (or does not).
    charge_raw_tokens: int | None = None
    # Text a stream has delivered so far: what is charged if it ends without usage.
    delivered: list[str] = field(default_factory=list)
    renewed_at_s: float = field(default_factory=time.monotonic)
    # A metered stream: its reservation grows as it delivers (solaris_hooks.quota.streams).
    meter: StreamMeter | None = None
    # Reserved in memory from this lease (solaris_hooks.quota.leasing), not in the ledger.
    lease: Lease | None = None
    group: str | None = None  # the group the call was priced for (settings.groups)

    def count_tokens(self, text: str) -> int:
        """Raw tokens of text by the tokenizer we count this call's model with."""
        return count_tokens(text, self.model)

    def counted_raw_tokens(self, text: str = "") -> int:
        """Our own count of the call: the prompt estimate plus the text delivered, at most what
        the reservation (an upper bound of the call) covers: an estimate never overcharges."""
        if self.meter is not None and not text:
            # Chunk by chunk, as metered: an upper bound of the provider's count of the whole.
            # What was let through on its byte bound is counted now: bytes are no charge.
            self.meter.count_uncounted(self.count_tokens)
            counted = self.prompt_tokens + self.meter.completion_tokens
        else:
            counted = self.prompt_tokens + self.count_tokens(text or "".join(self.delivered))
        if self.reserved_tokens is not None and self.factor > 0:
            counted = min(counted, math.floor(self.reserved_tokens / self.factor))
        return counted


class CallsInFlight:
    """The calls of this process between their pre-call hook and their last event, oldest first."""

    def __init__(self) -> None:
        self._calls: OrderedDict[str, CallInFlight] = OrderedDict()

    def __contains__(self, call_id: str) -> bool:
        return call_id in self._calls

    def get(self, call_id: str) -> CallInFlight | None:
        return self._calls.get(call_id)

    def pop(self, call_id: str) -> CallInFlight | None:
        return self._calls.pop(call_id, None)

    def remember(self, call_id: str, call: CallInFlight) -> None:
        """Keep `call` until its events come; past calls_in_flight_max the oldest is forgotten
        (a reserved one then expires, an unmetered one goes uncharged, and says so)."""
        if not call_id:
            return
        self._calls[call_id] = call
        if len(self._calls) > calls_in_flight_max:
            forgotten_id, forgotten = self._calls.popitem(last=False)
            if forgotten.lease is not None:
                # Its worst case stays taken from the lease until the lease is returned; a
                # late success of the call goes uncharged (no reservation names it).
                log_event(
                    "leased_call_forgotten",
                    logging.ERROR,
                    call_id=forgotten_id,
                    user_id=forgotten.user_id,
                    calls_in_flight_max=calls_in_flight_max,
                )
            elif not forgotten.metered:
                log_event(
                    "unmetered_call_forgotten",
                    logging.WARNING,
                    call_id=forgotten_id,
                    user_id=forgotten.user_id,
                    calls_in_flight_max=calls_in_flight_max,
                )
