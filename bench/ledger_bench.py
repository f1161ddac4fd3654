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
import json
import math
import statistics
import sys
import uuid
from asyncio.subprocess import PIPE, Process
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from psycopg import AsyncConnection
from psycopg.conninfo import make_conninfo

from bench.ledger_operations import (
    Operation,
    allowance_tokens,
    ceiling_update,
    cost_usd,
    factor,
    leased_batch,
    ledger_pair,
    model,
    ops_per_s,
    raw_tokens,
    take_lease,
    take_leases,
    ttl_s,
    wanted_tokens,
)
from solaris_hooks.admin.doctor import diagnose
from solaris_hooks.db import ledger
from solaris_hooks.db.migrations import migrate

concurrencies = (1, 8, 32)
spread_users_count = 1000
# Hot-user pairs/s ÷ one-row UPDATEs/s, at every concurrency. A pair is two transactions
# (two round trips, two commits) where the ceiling is one, so the ratio cannot pass 0.5.
target_ratio = 0.45
# With leases (settings.leases) a call costs no transaction of its own: it is reserved in
# memory and settled in a batch (solaris.settle_leased). A batch holds the calls that ended
# in one settle_batch_interval_ms (50 ms), so its size is the load: a proxy process serving
# R leased calls/s writes batches of R / 20. The target rows use 32 (a process at 640
# calls/s; at the 2 × ceiling they are held to, 4,000-5,000 calls/s here, batches would hold
# 100-250); one row of 8 (160 calls/s, a light load) shows the ledger with small batches.
# Target (issue 16): settled calls/s ≥ 2 × the UPDATE ceiling.
leased_batch_calls = 32
light_batch_calls = 8
leased_target_ratio = 2.0
# The same with two proxy processes on one Postgres (issue 16): each writes its own lease's
# batches, both lock the one account row. Concurrencies are the two processes' sum.
two_processes_concurrencies = (8, 32)
repo = Path(__file__).resolve().parents[1]  # where `python -m bench.…` finds the bench package


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

    async def pairs_per_s() -> float:
        return calls_per_op * await ops_per_s(connections, pair, mode.duration_s)

    return await _rounds(pairs_per_s, lambda: ops_per_s(connections, update, mode.duration_s), mode.rounds)


async def _measure_two_processes(url: str, user_id: str, concurrency: int, mode: Mode) -> dict:
    """Leased calls of one hot user settled by two processes at once, each with its own lease
    of that user and half the connections, as two proxy replicas do; beside the ceiling
    UPDATE run the same way (two processes, one row)."""
    async with await AsyncConnection.connect(url, autocommit=True) as connection:
        lease_ids = [await take_lease(connection, user_id, owner=f"bench-process-{number}") for number in (1, 2)]
    command = [sys.executable, "-m", "bench.ledger_processes", url, user_id]
    settings = [str(leased_batch_calls), str(concurrency // 2), str(mode.duration_s), str(mode.warmup_s)]
    workers = [
        await asyncio.create_subprocess_exec(*command, lease_id, *settings, stdin=PIPE, stdout=PIPE, cwd=repo)
        for lease_id in lease_ids
    ]

    async def answer(worker: Process) -> str:
        assert worker.stdout is not None
        line = (await worker.stdout.readline()).decode()
        if not line:
            raise RuntimeError(f"a ledger bench process ended with {await worker.wait()}")
        return line

    async def both(kind: str) -> float:
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write(f"{kind}\n".encode())
        answers = await asyncio.gather(*(answer(worker) for worker in workers))
        return sum(json.loads(line)["ops_per_s"] for line in answers)

    try:
        await asyncio.gather(*(answer(worker) for worker in workers))  # "ready"

        async def calls_per_s() -> float:
            return leased_batch_calls * await both("leased")

        return await _rounds(calls_per_s, lambda: both("ceiling"), mode.rounds)
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
            await worker.wait()
        async with await AsyncConnection.connect(url, autocommit=True) as connection:
            for lease_id in lease_ids:
                await ledger.resolve(connection, call_id=lease_id, kind="release")


async def _rounds(
    pairs_per_s: Callable[[], Awaitable[float]], updates_per_s: Callable[[], Awaitable[float]], rounds: int
) -> dict:
    pairs_per_s_rounds, updates_per_s_rounds = [], []
    for round_number in range(rounds):
        # ABBA…: each kind runs first every other round, so neither always follows the other.
        if round_number % 2 == 0:
            pairs_per_s_rounds.append(await pairs_per_s())
            updates_per_s_rounds.append(await updates_per_s())
        else:
            updates_per_s_rounds.append(await updates_per_s())
            pairs_per_s_rounds.append(await pairs_per_s())
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
                        operation = (
                            leased_batch(user_ids, lease_ids, leased_batch_calls) if leased else ledger_pair(user_ids)
                        )
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
                                **({"batch_calls": leased_batch_calls} if leased else {}),
                                **measured,
                            }
                        )
            _progress(f"hot leased in batches of {light_batch_calls}: concurrency 1")
            measured = await _measure_case(
                connections[:1],
                leased_batch(hot_users, lease_ids, light_batch_calls),
                ceiling_update(1),
                mode,
                light_batch_calls,
            )
            cases.append(
                {
                    "scenario": "hot",
                    "leased": True,
                    "batch_calls": light_batch_calls,
                    "users": 1,
                    "rows": 1,
                    "concurrency": 1,
                    **measured,
                }
            )
            for concurrency in two_processes_concurrencies:
                _progress(f"hot leased from two processes: concurrency {concurrency // 2} each")
                measured = await _measure_two_processes(url, hot_users[0], concurrency, mode)
                cases.append(
                    {
                        "scenario": "hot",
                        "leased": True,
                        "processes": 2,
                        "batch_calls": leased_batch_calls,
                        "users": 1,
                        "rows": 1,
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
    leased_hot_ratios = [
        case["ratio"]
        for case in cases
        if case["scenario"] == "hot" and case["leased"] and case["batch_calls"] == leased_batch_calls
    ]
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
        "light_batch_calls": light_batch_calls,
        "leased_target_ratio": leased_target_ratio,
        "leased_target_met": min(leased_hot_ratios) >= leased_target_ratio,
        "two_processes_concurrencies": list(two_processes_concurrencies),
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
        batch_calls = case.get("batch_calls", figures.get("leased_batch_calls", 8))
        kind = f"leased calls in batches of {batch_calls}" if leased else "ledger pairs"
        target = figures["leased_target_ratio"] if leased else figures["target_ratio"]
        light = leased and batch_calls == figures.get("light_batch_calls")
        if case.get("processes", 1) == 2:
            measure = (
                f"{kind}, 1 hot user ÷ UPDATE on 1 row, two processes, concurrency {case['concurrency']}"
                f" ({case['concurrency'] // 2} each)"
            )
            ok = case["ratio"] >= target
            verdict = f"≥ {target:.2f}: {'met' if ok else 'MISSED'}"
        elif case["scenario"] == "hot" and light:
            measure = f"{kind}, 1 hot user ÷ UPDATE on 1 row, concurrency {case['concurrency']}"
            verdict = "(no target: small batches, a light load)"
        elif case["scenario"] == "hot":
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
