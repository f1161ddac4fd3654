"""The leases this process holds, one per busy user, and the calls reserved from them in memory.

A lease is a pending reservation in the ledger (db/leases.py). Here each lease keeps what it
still has free: what it holds, less the worst case of every call reserved from it and not
yet ended, less what ended calls were charged and the next batch has not written yet. So the
calls a lease covers can never be charged more than the ledger holds for them, and a call is
reserved with no await: the request path's only cost is this arithmetic.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

# Users whose last call is remembered (to tell busy users): the oldest are forgotten past it.
users_remembered_max = 100_000


@dataclass(eq=False)
class Lease:
    lease_id: str
    user_id: str
    size_tokens: int  # what a full lease holds: topped up towards it when half is used
    free_tokens: int  # what calls may still be reserved from
    call_tokens: int  # the largest worst case reserved from it: the smallest top-up worth taking
    group: str | None = None  # the group its calls are priced for: given up when the user's changes
    calls_in_flight: int = 0
    unwritten_calls: int = 0  # ended, charged in memory, not yet in the ledger
    used_at_s: float = field(default_factory=time.monotonic)
    renewed_at_s: float = field(default_factory=time.monotonic)
    topping_up: bool = False
    # After a top-up found nothing more to take (near the edge), none is tried before then.
    top_up_after_s: float = 0.0
    # The lease was returned, expired, or its account blocked: nothing more is reserved from it.
    given_up: bool = False

    def needs_top_up(self) -> bool:
        return (
            not self.given_up
            and not self.topping_up
            and self.free_tokens < self.size_tokens // 2
            and time.monotonic() >= self.top_up_after_s
        )

    def idle(self, now_s: float, idle_s: float) -> bool:
        return self.calls_in_flight == 0 and self.unwritten_calls == 0 and now_s - self.used_at_s >= idle_s


class Leases:
    """Leases by user, held by this process (named by `owner` in the ledger)."""

    def __init__(self) -> None:
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._by_user: dict[str, Lease] = {}
        # Given up, with calls still to end or to be written: returned once drained.
        self._retiring: list[Lease] = []
        # A user for whom no lease could be taken (near the edge) is not asked again until then.
        self._retry_at_s: dict[str, float] = {}
        # When each user last called, most recent last: a lease is for a user who calls again
        # within lease_idle_s. One taken for a user seen once would be returned unused, a
        # round trip more than the call's own reservation.
        self._last_call_s: OrderedDict[str, float] = OrderedDict()

    def __iter__(self) -> Iterator[Lease]:
        return iter(list(self._by_user.values()))

    def drained(self) -> list[Lease]:
        """Given-up leases nothing depends on any more (forgotten here): to be returned."""
        drained = [lease for lease in self._retiring if lease.calls_in_flight == 0 and lease.unwritten_calls == 0]
        self._retiring = [lease for lease in self._retiring if lease not in drained]
        return drained

    def get(self, user_id: str) -> Lease | None:
        return self._by_user.get(user_id)

    def reserve(self, user_id: str, tokens: int, worst_case_tokens: int | None = None) -> Lease | None:
        """Reserve `tokens` from the user's lease; None when there is none or it has less free
        than the call's worst case (a metered stream reserves less: its first chunk)."""
        worst_case_tokens = max(tokens, worst_case_tokens or 0)
        lease = self._by_user.get(user_id)
        if lease is None or lease.given_up or lease.free_tokens < worst_case_tokens:
            return None
        lease.free_tokens -= tokens
        lease.calls_in_flight += 1
        lease.call_tokens = max(lease.call_tokens, worst_case_tokens)
        lease.used_at_s = time.monotonic()
        return lease

    def grow(self, lease: Lease, wanted_tokens: int, minimum_tokens: int) -> int:
        """Reserve up to wanted_tokens more for a stream reserved from `lease`, at least
        minimum_tokens; 0 when it has less free (or was given up)."""
        grown = min(wanted_tokens, lease.free_tokens)
        if lease.given_up or grown < max(minimum_tokens, 1):
            return 0
        lease.free_tokens -= grown
        lease.used_at_s = time.monotonic()
        return grown

    def may_take(self, user_id: str, idle_s: float) -> bool:
        """Whether to take a lease for this call's user: one who called within idle_s before,
        holds none, and was not refused one lately. Notes the call either way."""
        now_s = time.monotonic()
        last_s = self._last_call_s.pop(user_id, None)
        self._last_call_s[user_id] = now_s
        if len(self._last_call_s) > users_remembered_max:
            self._last_call_s.popitem(last=False)
        busy = last_s is not None and now_s - last_s < idle_s
        return busy and user_id not in self._by_user and now_s >= self._retry_at_s.get(user_id, 0.0)

    def new_lease_id(self) -> str:
        return f"lease-{uuid.uuid4().hex}"

    def held(self, lease: Lease) -> None:
        """A lease taken in the ledger: calls may be reserved from it."""
        self._by_user[lease.user_id] = lease
        self._retry_at_s.pop(lease.user_id, None)

    def refused(self, user_id: str, retry_after_s: float) -> None:
        """No lease fits for this user now: per-call reservations until retry_after_s from now."""
        self._retry_at_s[user_id] = time.monotonic() + retry_after_s

    def ended(self, lease: Lease, reserved_tokens: int, charged_tokens: int | None) -> None:
        """A call reserved from `lease` ended: what it did not use is free again; what it was
        charged (None: it failed, nothing) stays taken until the next batch writes it, which
        makes the ledger's lease that much smaller."""
        lease.free_tokens += reserved_tokens - (charged_tokens or 0)
        lease.calls_in_flight -= 1
        if charged_tokens is not None:
            lease.unwritten_calls += 1

    def written(self, lease: Lease, calls: int) -> None:
        lease.unwritten_calls -= calls

    def give_up(self, lease: Lease) -> None:
        """Reserve nothing more from `lease`; returned once nothing depends on it (drained)."""
        if lease.given_up:
            return
        lease.given_up = True
        if self._by_user.get(lease.user_id) is lease:
            del self._by_user[lease.user_id]
        self._retiring.append(lease)
