"""What the ledger benchmark runs: one call's reserve+settle pair, a batch of leased calls,
and the ceiling they are compared with, one conditional `UPDATE … RETURNING` on one row.

Shared by `bench.ledger_bench` and the processes it starts (`bench.ledger_processes`).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
import uuid
from collections.abc import Awaitable, Callable

from psycopg import AsyncConnection

from solaris_hooks.db import leases, ledger

# A realistic call: 500 prompt tokens + max_tokens 1024 at the default factor 0.376,
# ~800 raw tokens used. The allowance is so large that no reservation is ever refused
# and no alert threshold is ever crossed: every pair does the same work.
factor = 0.376
wanted_tokens = 573  # ceil((500 + 1024) × 0.376)
minimum_tokens = 189  # ceil((500 + 1) × 0.376)
default_tokens = 1000
ttl_s = 900
model = "gpt-4o-mini"
raw_tokens = 812
cost_usd = 0.000487
thresholds = (0.8, 0.95)
allowance_tokens = 10**15

ceiling_limit = 2**62  # the `x < limit` of the ceiling UPDATE: checked, never reached
_ceiling_update = "UPDATE bench_ceiling SET x = x + 1 WHERE id = %s AND x < %s RETURNING x"


# -- the two kinds of operation ----------------------------------------------------------


Operation = Callable[[AsyncConnection, int], Awaitable[None]]  # (connection, sequence number)


def ledger_pair(user_ids: list[str]) -> Operation:
    async def pair(connection: AsyncConnection, number: int) -> None:
        user_id = user_ids[number % len(user_ids)]  # round-robin over the users
        call_id = str(uuid.uuid4())  # as LiteLLM's litellm_call_id
        reservation = await ledger.reserve(
            connection,
            user_id=user_id,
            call_id=call_id,
            wanted_tokens=wanted_tokens,
            minimum_tokens=minimum_tokens,
            default_tokens=default_tokens,
            ttl_s=ttl_s,
            model=model,
            factor=factor,
            thresholds=thresholds,
        )
        if reservation.outcome != "reserved":
            raise RuntimeError(f"reserve for {user_id} was {reservation.outcome}, the benchmark expects none refused")
        resolution = await ledger.resolve(
            connection,
            call_id=call_id,
            kind="settle",
            raw_tokens=raw_tokens,
            model=model,
            cost_usd=cost_usd,
            thresholds=thresholds,
        )
        if resolution.state != "settled":
            raise RuntimeError(f"settle of {call_id} was {resolution.state}")

    return pair


def leased_batch(user_ids: list[str], lease_ids: dict[str, str], batch_calls: int) -> Operation:
    """One batch of leased calls, round-robin over the users, each from its user's lease."""

    async def batch(connection: AsyncConnection, number: int) -> None:
        calls = [
            leases.LeasedCall(
                str(uuid.uuid4()),
                lease_ids[user_ids[(number * batch_calls + index) % len(user_ids)]],
                raw_tokens,
                factor,
                model,
                cost_usd,
            )
            for index in range(batch_calls)
        ]
        states = await leases.settle_leased(connection, calls, ttl_s=ttl_s, thresholds=thresholds)
        if sum(state.charged_tokens for state in states) != batch_calls * math.ceil(raw_tokens * factor):
            raise RuntimeError("a leased call was not charged")

    return batch


async def take_leases(connection: AsyncConnection, user_ids: list[str]) -> dict[str, str]:
    """A lease per user, as the one proxy process serving them would hold."""
    return {user_id: await take_lease(connection, user_id, owner="bench") for user_id in user_ids}


async def take_lease(connection: AsyncConnection, user_id: str, owner: str) -> str:
    lease_id = f"bench-lease-{uuid.uuid4().hex}"
    taken = await leases.take_lease(
        connection,
        user_id=user_id,
        lease_id=lease_id,
        owner=owner,
        wanted_tokens=allowance_tokens // 4,
        minimum_tokens=1,
        share=0.25,
        default_tokens=default_tokens,
        ttl_s=3600,
    )
    if taken.outcome != "reserved":
        raise RuntimeError(f"no lease for {user_id}: {taken.outcome}")
    return lease_id


def ceiling_update(rows_count: int) -> Operation:
    async def update(connection: AsyncConnection, number: int) -> None:
        cursor = await connection.execute(_ceiling_update, (number % rows_count + 1, ceiling_limit))
        if await cursor.fetchone() is None:
            raise RuntimeError("the ceiling UPDATE matched no row")

    return update


async def ops_per_s(connections: list[AsyncConnection], operation: Operation, duration_s: float) -> float:
    """Operations completed per second by one worker per connection, for duration_s."""
    numbers = itertools.count()  # shared, so the workers together go round the users/rows
    deadline = time.perf_counter() + duration_s

    async def worker(connection: AsyncConnection) -> int:
        done = 0
        while time.perf_counter() < deadline:
            await operation(connection, next(numbers))
            done += 1
        return done

    started = time.perf_counter()
    counts = await asyncio.gather(*(worker(connection) for connection in connections))
    # The last operations end a little after the deadline: divide by the time really taken.
    return sum(counts) / (time.perf_counter() - started)
