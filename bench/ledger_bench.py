"""How fast the ledger runs: reserve+settle pairs per second against Postgres.

Each pair is what the hooks do for one successful call: `ledger.reserve` in the pre-call
hook, `ledger.resolve(kind="settle")` in the success event, each its own autocommit
transaction on a connection of its own worker. Beside it runs the ceiling this server
can reach at all: one conditional `UPDATE … RETURNING` per transaction on a plain table,
the cheapest write that still checks a limit under a row lock. The ratio of the two says
how much of the server's write capacity the ledger's bookkeeping uses up; the other costs
of a pair (more round trips, index inserts, the alert check) are inside that ratio.

Ledger and ceiling runs alternate in rounds (ABBA…) so that machine noise hits both,
and each figure is the median of its rounds.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal

from psycopg import AsyncConnection
from psycopg.conninfo import make_conninfo

from solaris_hooks.admin.doctor import diagnose
from solaris_hooks.db import leases, ledger
from solaris_hooks.db.migrations import migrate

concurrencies = (1, 8, 32)
spread_users_count = 1000
# Hot-user pairs/s ÷ one-row UPDATEs/s, at every concurrency. A pair is two transactions
# (two round trips, two commits) where the ceiling is one, so the ratio cannot pass 0.5.
target_ratio = 0.45
# With leases (settings.leases) a call costs no transaction of its own: it is reserved in
# memory and settled in a batch (solaris.settle_leased). A batch holds the calls that ended
# in one settle_batch_interval_ms (50 ms): 8 is what a proxy serving 160 calls/s writes, a
# small batch for a busy proxy. Target (issue 16): settled calls/s ≥ 2 × the UPDATE ceiling.
leased_batch_calls = 8
leased_target_ratio = 2.0

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


@dataclass(frozen=True)
class Mode:
    duration_s: float  # measured time of one run
    warmup_s: float  # unmeasured time before each case, for plans and caches
    rounds: int  # ledger/ceiling pairs of runs per case
    history_calls: int  # settled calls in the ledger before the run


full_mode = Mode(duration_s=5.0, warmup_s=1.0, rounds=3, history_calls=100_000)
quick_mode = Mode(duration_s=0.1, warmup_s=0.03, rounds=1, history_calls=2_000)


def _progress(message: str) -> None:
    print(f"[ledger bench] {message}", file=sys.stderr, flush=True)


@asynccontextmanager
async def scratch_database(server_url: str, prefix: str) -> AsyncIterator[str]:
    """A migrated database of our own on the server, dropped afterwards whatever happens."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    async with await AsyncConnection.connect(server_url, autocommit=True) as admin:
        await admin.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(server_url, dbname=name)
    try:
        await asyncio.to_thread(migrate, url)
        yield url
    finally:
        async with await AsyncConnection.connect(server_url, autocommit=True) as admin:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


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


def leased_batch(user_ids: list[str], lease_ids: dict[str, str]) -> Operation:
    """One batch of leased calls, round-robin over the users, each from its user's lease."""

    async def batch(connection: AsyncConnection, number: int) -> None:
        calls = [
            leases.LeasedCall(
                str(uuid.uuid4()),
                lease_ids[user_ids[(number * leased_batch_calls + index) % len(user_ids)]],
                raw_tokens,
                factor,
                model,
                cost_usd,
            )
            for index in range(leased_batch_calls)
        ]
        states = await leases.settle_leased(connection, calls, ttl_s=ttl_s, thresholds=thresholds)
        if sum(state.charged_tokens for state in states) != leased_batch_calls * math.ceil(raw_tokens * factor):
            raise RuntimeError("a leased call was not charged")

    return batch


async def take_leases(connection: AsyncConnection, user_ids: list[str]) -> dict[str, str]:
    """A lease per user, as the one proxy process serving them would hold."""
    lease_ids = {}
    for user_id in user_ids:
        lease_id = f"bench-lease-{uuid.uuid4().hex}"
        taken = await leases.take_lease(
            connection,
            user_id=user_id,
            lease_id=lease_id,
            owner="bench",
            wanted_tokens=allowance_tokens // 2,
            minimum_tokens=1,
            share=0.5,
            default_tokens=default_tokens,
            ttl_s=3600,
        )
        if taken.outcome != "reserved":
            raise RuntimeError(f"no lease for {user_id}: {taken.outcome}")
        lease_ids[user_id] = lease_id
    return lease_ids


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


# -- setup ---------------------------------------------------------------------------------


# Settled calls already in the ledger before the run, spread over the users, as in a
# database that has been in use. Without them VACUUM ANALYZE records empty tables, the
# workers' connections plan the functions' statements for empty tables, and PL/pgSQL
# keeps those plans: every reservation lookup stays a sequential scan of an ever longer
# table (the pairs/s fell by a third within seconds).
_seed_history = """
WITH calls AS (
    SELECT 'history-' || number AS call_id,
           (%(users)s::text[])[1 + number %% cardinality(%(users)s::text[])] AS user_id,
           now() - interval '1 hour' - (%(calls)s - number) * interval '1 second' AS reserved_at
      FROM generate_series(1, %(calls)s) number
), reservations AS (
    INSERT INTO solaris.reservations (call_id, user_id, tokens, model, factor, state, created_at, expires_at,
                                      resolved_at)
    SELECT call_id, user_id, %(wanted)s, %(model)s, %(factor)s, 'settled', reserved_at,
           reserved_at + make_interval(secs => %(ttl_s)s), reserved_at + interval '4 seconds'
      FROM calls
)
INSERT INTO solaris.ledger (user_id, kind, tokens, debited_delta, reserved_delta, raw_tokens, model, cost_usd,
                            call_id, actor, created_at)
SELECT user_id, 'reserve', %(wanted)s, 0, %(wanted)s, NULL, %(model)s, NULL, call_id, 'solaris', reserved_at
  FROM calls
 UNION ALL
SELECT user_id, 'settle', %(charged)s, %(charged)s, -%(wanted)s, %(raw)s, %(model)s, %(cost_usd)s, call_id, 'solaris',
       reserved_at + interval '4 seconds'
  FROM calls
"""
_settle_history_balances = """
UPDATE solaris.accounts account SET debited_tokens = used.debited_tokens
  FROM (SELECT user_id, sum(debited_delta) AS debited_tokens FROM solaris.ledger GROUP BY user_id) used
 WHERE used.user_id = account.user_id
"""


async def _prepare(url: str, history_calls: int) -> tuple[list[str], list[str]]:
    """Accounts with a huge allowance (granted through the ledger, so it replays), some
    history, and the ceiling table; returns the hot user and the spread users."""
    hot_users = ["bench-hot@example.com"]
    spread_users = [f"bench-{number:04d}@example.com" for number in range(spread_users_count)]
    async with await AsyncConnection.connect(url, autocommit=True) as connection:
        async with connection.transaction():
            for user_id in hot_users + spread_users:
                await connection.execute(
                    "SELECT 1 FROM solaris.create_account(%s, %s, NULL, NULL, NULL, 'bench')",
                    (user_id, allowance_tokens),
                )
            await connection.execute(
                _seed_history,
                {
                    "users": hot_users + spread_users,
                    "calls": history_calls,
                    "wanted": wanted_tokens,
                    "charged": math.ceil(raw_tokens * factor),
                    "raw": raw_tokens,
                    "model": model,
                    "factor": Decimal(str(factor)),
                    "cost_usd": Decimal(str(cost_usd)),
                    "ttl_s": ttl_s,
                },
            )
            await connection.execute(_settle_history_balances)
        await connection.execute("CREATE TABLE bench_ceiling (id integer PRIMARY KEY, x bigint NOT NULL)")
        await connection.execute(
            "INSERT INTO bench_ceiling SELECT id, 0 FROM generate_series(1, %s) id", (spread_users_count,)
        )
        await connection.execute("VACUUM ANALYZE")
    return hot_users, spread_users


# -- the benchmark ---------------------------------------------------------------------------


async def _measure_case(
    connections: list[AsyncConnection], pair: Operation, update: Operation, mode: Mode, calls_per_op: int = 1
) -> dict:
    await ops_per_s(connections, pair, mode.warmup_s)
    await ops_per_s(connections, update, mode.warmup_s)
    pairs_per_s_rounds, updates_per_s_rounds = [], []
    for round_number in range(mode.rounds):
        # ABBA…: each kind runs first every other round, so neither always follows the other.
        if round_number % 2 == 0:
            pairs_per_s_rounds.append(calls_per_op * await ops_per_s(connections, pair, mode.duration_s))
            updates_per_s_rounds.append(await ops_per_s(connections, update, mode.duration_s))
        else:
            updates_per_s_rounds.append(await ops_per_s(connections, update, mode.duration_s))
            pairs_per_s_rounds.append(calls_per_op * await ops_per_s(connections, pair, mode.duration_s))
    # The ratio of each round's neighbouring runs, so slow drift of the machine cancels out.
    ratios = [pairs / updates for pairs, updates in zip(pairs_per_s_rounds, updates_per_s_rounds, strict=False)]
    return {
        "pairs_per_s": statistics.median(pairs_per_s_rounds),
        "updates_per_s": statistics.median(updates_per_s_rounds),
        "ratio": statistics.median(ratios),
        "pairs_per_s_rounds": pairs_per_s_rounds,
        "updates_per_s_rounds": updates_per_s_rounds,
    }


async def run(database_url: str, quick: bool) -> dict:
    mode = quick_mode if quick else full_mode
    async with scratch_database(database_url, "solaris_bench_ledger") as url:
        hot_users, spread_users = await _prepare(url, mode.history_calls)
        scenarios = (("hot", hot_users, 1), ("spread", spread_users, spread_users_count))
        connections: list[AsyncConnection] = []
        cases = []
        try:
            for _ in range(max(concurrencies)):  # one per worker, reused by every case
                connections.append(await AsyncConnection.connect(url, autocommit=True))
            lease_ids = await take_leases(connections[0], hot_users + spread_users)
            for concurrency in concurrencies:
                for scenario, user_ids, rows_count in scenarios:
                    for leased in (False, True):
                        _progress(
                            f"{scenario}{' leased' if leased else ''}: {len(user_ids)} user(s) vs {rows_count} row(s),"
                            f" concurrency {concurrency}"
                        )
                        operation = leased_batch(user_ids, lease_ids) if leased else ledger_pair(user_ids)
                        measured = await _measure_case(
                            connections[:concurrency],
                            operation,
                            ceiling_update(rows_count),
                            mode,
                            leased_batch_calls if leased else 1,
                        )
                        cases.append(
                            {
                                "scenario": scenario,
                                "leased": leased,
                                "users": len(user_ids),
                                "rows": rows_count,
                                "concurrency": concurrency,
                                **measured,
                            }
                        )
            async with connections[0].transaction():
                for lease_id in lease_ids.values():
                    await ledger.resolve(connections[0], call_id=lease_id, kind="release")
        finally:
            for connection in connections:
                await connection.close()
        findings = await asyncio.to_thread(diagnose, url)
        async with await AsyncConnection.connect(url, autocommit=True) as connection:
            # Every pair of the run, warm-ups included; the seeded history is not.
            cursor = await connection.execute(
                "SELECT count(*) FROM solaris.ledger WHERE kind = 'settle' AND call_id NOT LIKE 'history-%'"
            )
            (pairs_total,) = await cursor.fetchone()
            cursor = await connection.execute("SELECT version()")
            (server_version,) = await cursor.fetchone()
    hot_ratios = [case["ratio"] for case in cases if case["scenario"] == "hot" and not case["leased"]]
    leased_hot_ratios = [case["ratio"] for case in cases if case["scenario"] == "hot" and case["leased"]]
    return {
        "mode": "quick" if quick else "full",
        "duration_s": mode.duration_s,
        "warmup_s": mode.warmup_s,
        "rounds": mode.rounds,
        "history_calls": mode.history_calls,
        "concurrencies": list(concurrencies),
        "server_version": server_version,
        "target_ratio": target_ratio,
        "target_met": min(hot_ratios) >= target_ratio,
        "leased_batch_calls": leased_batch_calls,
        "leased_target_ratio": leased_target_ratio,
        "leased_target_met": min(leased_hot_ratios) >= leased_target_ratio,
        "cases": cases,
        "pairs_total": pairs_total,
        "ledger_consistent": not findings,
        "doctor_findings": [
            {"invariant": finding.invariant, "rows": [list(map(str, row)) for row in finding.rows]}
            for finding in findings
        ],
    }


def rows(figures: dict) -> list[tuple[str, str, str]]:
    table = []
    for case in figures["cases"]:
        leased = case.get("leased", False)
        kind = f"leased calls in batches of {figures.get('leased_batch_calls', 8)}" if leased else "ledger pairs"
        target = figures["leased_target_ratio"] if leased else figures["target_ratio"]
        if case["scenario"] == "hot":
            measure = f"{kind}, 1 hot user ÷ UPDATE on 1 row, concurrency {case['concurrency']}"
            ok = case["ratio"] >= target
            verdict = f"≥ {target:.2f}: {'met' if ok else 'MISSED'}"
        else:
            measure = (
                f"{kind}, {case['users']:,} users ÷ UPDATE on {case['rows']:,} rows, concurrency {case['concurrency']}"
            )
            verdict = "(no target)"
        unit = "calls/s" if leased else "pairs/s"
        value = f"{case['pairs_per_s']:,.0f} {unit} ÷ {case['updates_per_s']:,.0f} UPDATEs/s = {case['ratio']:.2f}"
        table.append((measure, value, verdict))
    consistent = figures["ledger_consistent"]
    table.append(
        (
            "ledger consistent after the run (solaris doctor)",
            f"{figures['pairs_total']:,} calls settled, {len(figures['doctor_findings'])} finding(s)",
            "no findings: met" if consistent else "FINDINGS",
        )
    )
    return table
