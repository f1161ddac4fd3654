"""How long the usage reports take over a big ledger: `/solaris/stats` and the usage CSV.

A scratch database gets a generated ledger (1,000 users, 10 models, calls spread over the
last 90 days, each a `reserve` row and its `settle` row), then both reports run over the
last 30 days the way the routes run them, several times each.
"""

from __future__ import annotations

import math
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from datetime import time as day_start

from psycopg import AsyncConnection

from solaris_hooks.admin import dashboard, reports
from solaris_hooks.admin.overview_range import overview_between
from solaris_hooks.web.api.reports import csv_memory_bytes_max

from .ledger_bench import scratch_database

users_count = 1000
models = (
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1",
    "gpt-4.1-mini",
    "o3-mini",
    "claude-3-5-sonnet",
    "claude-3-5-haiku",
    "gemini-1.5-pro",
    "llama-3.1-70b",
    "solaris-demo",
)
days_spread = 90
stats_ms_target = 200.0

full_ledger_rows = 1_000_000
full_calls_measured = 10  # after one unmeasured call, which warms the caches
quick_ledger_rows = 20_000
quick_calls_measured = 2

# Every call is two rows: its reserve and its settle, a few seconds later. Users are
# skewed (a few heavy ones, as in real use: random()² favours low numbers), and the
# numbers are those of real calls: 200–3,200 raw tokens at the default factor 0.376.
_generate_ledger = """
INSERT INTO solaris.ledger (user_id, kind, tokens, debited_delta, reserved_delta, raw_tokens, model,
                            cost_usd, call_id, actor, created_at)
SELECT call.user_id, row.kind, row.tokens, row.debited_delta, row.reserved_delta, row.raw_tokens,
       call.model, row.cost_usd, call.call_id, 'solaris', row.created_at
  FROM (SELECT 'bench-' || lpad(floor(random() ^ 2 * %(users)s)::int::text, 4, '0') || '@example.com' AS user_id,
               (%(models)s::text[])[1 + floor(random() * cardinality(%(models)s::text[]))::int] AS model,
               'call-' || number AS call_id,
               now() - random() * make_interval(days => %(days)s) AS reserved_at,
               200 + floor(random() * 3000)::bigint AS raw_tokens
          FROM generate_series(1, %(calls)s) number) call
 CROSS JOIN LATERAL (
       SELECT ceil(call.raw_tokens * 1.5 * 0.376)::bigint AS reserved_tokens,
              ceil(call.raw_tokens * 0.376)::bigint AS charged_tokens) amount
 CROSS JOIN LATERAL (VALUES
       ('reserve', amount.reserved_tokens, 0::bigint, amount.reserved_tokens, NULL::bigint, NULL::numeric,
        call.reserved_at),
       ('settle', amount.charged_tokens, amount.charged_tokens, -amount.reserved_tokens, call.raw_tokens,
        round(call.raw_tokens * 0.0000006, 8), call.reserved_at + interval '4 seconds')
 ) AS row (kind, tokens, debited_delta, reserved_delta, raw_tokens, cost_usd, created_at)
 ORDER BY row.created_at  -- ids grow with time, as in a real ledger
"""

# Accounts must exist for the ledger's foreign key; their balances are made to match the
# generated rows (and a grant) so the database stays one the doctor would accept.
_generate_accounts = """
INSERT INTO solaris.accounts (user_id, email, name, credited_tokens)
SELECT 'bench-' || lpad(number::text, 4, '0') || '@example.com',
       'bench-' || lpad(number::text, 4, '0') || '@example.com', 'Bench user ' || number, 10000000
  FROM generate_series(0, %(users)s - 1) number
"""
_grant_accounts = """
INSERT INTO solaris.ledger (user_id, kind, tokens, credited_delta, actor, reason, created_at)
SELECT user_id, 'grant', credited_tokens, credited_tokens, 'bench', 'initial tokens',
       now() - make_interval(days => %(days)s + 1)
  FROM solaris.accounts
"""
_settle_balances = """
UPDATE solaris.accounts account SET debited_tokens = used.debited_tokens
  FROM (SELECT user_id, sum(debited_delta) AS debited_tokens FROM solaris.ledger GROUP BY user_id) used
 WHERE used.user_id = account.user_id
"""
# A few users were told they were blocked, for the stats' blocked_users.
_generate_block_notices = """
INSERT INTO solaris.alerts (user_id, kind, threshold, period, alert_cycle, credited_tokens, used_tokens,
                            status, created_at)
SELECT 'bench-' || lpad(number::text, 4, '0') || '@example.com', 'usage', 1.0, 'initial', 0, 10000000,
       10000000, 'sent', now() - random() * make_interval(days => %(days)s)
  FROM generate_series(0, %(users)s - 1, 20) number
"""


def _progress(message: str) -> None:
    print(f"[reports bench] {message}", file=sys.stderr, flush=True)


async def _generate(url: str, ledger_rows: int) -> float:
    """Fill the scratch database; returns the seconds it took (VACUUM ANALYZE included)."""
    parameters = {"users": users_count, "models": list(models), "days": days_spread, "calls": ledger_rows // 2}
    started = time.perf_counter()
    async with await AsyncConnection.connect(url, autocommit=True) as connection:
        async with connection.transaction():
            await connection.execute(_generate_accounts, parameters)
            await connection.execute(_grant_accounts, parameters)
            await connection.execute(_generate_ledger, parameters)
            await connection.execute(_settle_balances)
            await connection.execute(_generate_block_notices, parameters)
        # As after autovacuum: statistics for the planner, and a visibility map that lets
        # the reports' index-only scans skip the heap.
        await connection.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


async def _timings_ms(call: Callable[[], Awaitable[object]], calls_measured: int, warm_up: bool) -> dict:
    if warm_up:
        await call()
    elapsed_ms = []
    for _ in range(calls_measured):
        started = time.perf_counter()
        await call()
        elapsed_ms.append((time.perf_counter() - started) * 1000)
    ordered = sorted(elapsed_ms)
    return {
        "median_ms": statistics.median(ordered),
        "p90_ms": ordered[math.ceil(0.9 * len(ordered)) - 1],  # nearest rank
        "calls": len(ordered),
        "elapsed_ms": elapsed_ms,
    }


async def _usage_csv(connection: AsyncConnection, start: datetime, end: datetime) -> int:
    """The usage CSV exactly as GET /solaris/reports/usage.csv builds it; returns its rows."""
    with tempfile.SpooledTemporaryFile(max_size=csv_memory_bytes_max, mode="w+", encoding="utf-8", newline="") as spool:
        written, _capped = await reports.write_usage_csv(connection, spool, start, end, "day", reports.usage_rows_max)
    return written


async def run(database_url: str, quick: bool) -> dict:
    ledger_rows = quick_ledger_rows if quick else full_ledger_rows
    calls_measured = quick_calls_measured if quick else full_calls_measured
    async with scratch_database(database_url, "solaris_bench_reports") as url:
        _progress(f"generating {ledger_rows:,} ledger rows")
        generation_s = await _generate(url, ledger_rows)
        start, end = reports.parse_range(None, None)  # the routes' default: the last 30 days
        # Autocommit, as the proxy's pool connections are.
        async with await AsyncConnection.connect(url, autocommit=True) as connection:
            cursor = await connection.execute(
                "SELECT count(*), count(*) FILTER (WHERE kind = 'settle' AND created_at >= %s AND created_at < %s)"
                "  FROM solaris.ledger",
                (start, end),
            )
            rows_total, settle_rows_in_range = await cursor.fetchone()
            stats_ms = {}
            for group_by in ("day", "week", "month"):
                _progress(f"stats by {group_by}")
                stats_ms[group_by] = await _timings_ms(
                    lambda group_by=group_by: reports.stats(connection, start, end, group_by),
                    calls_measured,
                    warm_up=not quick,
                )
            _progress("usage CSV by day")
            csv_rows = await _usage_csv(connection, start, end)  # also the unmeasured first call
            csv_ms = await _timings_ms(lambda: _usage_csv(connection, start, end), calls_measured, warm_up=False)
            _progress("admin overview page's queries")
            now = datetime.now(UTC)
            today = datetime.combine(now.date(), day_start(0), tzinfo=UTC)
            overview_ms = await _timings_ms(
                # The page's default range: the last chart_days UTC days, today included.
                lambda: overview_between(
                    connection,
                    now,
                    today,
                    today.replace(day=1),
                    now.date() - timedelta(days=dashboard.chart_days - 1),
                    now.date(),
                ),
                calls_measured,
                warm_up=not quick,
            )
    return {
        "mode": "quick" if quick else "full",
        "ledger_rows": rows_total,
        "settle_rows_in_range": settle_rows_in_range,
        "users": users_count,
        "models": len(models),
        "days_spread": days_spread,
        "range_days": (end - start).days,
        "generation_s": generation_s,
        "stats_ms": stats_ms,
        "usage_csv_ms": {"group_by": "day", "rows": csv_rows, **csv_ms},
        "overview_ms": overview_ms,
        "stats_ms_target": stats_ms_target,
        # Judged on the ledger generated; the target is about a million rows (full mode).
        "target_met": all(timing["median_ms"] < stats_ms_target for timing in stats_ms.values()),
    }


def rows(figures: dict) -> list[tuple[str, str, str]]:
    table = [
        (
            "ledger rows generated (reserve + settle per call, a grant per user)",
            f"{figures['ledger_rows']:,} in {figures['generation_s']:.1f} s",
            f"{figures['settle_rows_in_range']:,} settled calls in the last {figures['range_days']} days",
        )
    ]
    target_ms = figures["stats_ms_target"]
    for group_by, timing in figures["stats_ms"].items():
        ok = timing["median_ms"] < target_ms
        verdict = f"< {target_ms:.0f} ms: {'met' if ok else 'MISSED'}"
        if figures["ledger_rows"] < 1_000_000:
            verdict += " (not a 1M-row ledger)"
        table.append(
            (
                f"/solaris/stats, {figures['range_days']} days by {group_by}",
                f"median {timing['median_ms']:.0f} ms, p90 {timing['p90_ms']:.0f} ms ({timing['calls']} calls)",
                verdict,
            )
        )
    csv = figures["usage_csv_ms"]
    table.append(
        (
            f"usage CSV, {figures['range_days']} days by {csv['group_by']} ({csv['rows']:,} rows)",
            f"median {csv['median_ms']:.0f} ms, p90 {csv['p90_ms']:.0f} ms ({csv['calls']} calls)",
            "(no target)",
        )
    )
    if "overview_ms" in figures:  # figures from before the admin pages have none
        overview = figures["overview_ms"]
        table.append(
            (
                "admin overview page (counts, 30-day chart, top users, models)",
                f"median {overview['median_ms']:.0f} ms, p90 {overview['p90_ms']:.0f} ms ({overview['calls']} calls)",
                "(no target)",
            )
        )
    return table
