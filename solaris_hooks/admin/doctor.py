"""`solaris doctor`: is this deployment healthy? One line per check, non-zero exit on a problem.

The ledger invariants (docs/design.md) are each one query returning the rows that break them,
so a report names the users and calls to look at; the tests run the same queries after
every test. Overspend (an account that used more than it was credited) is one of them,
reported with the ledger rows that took the account over; /solaris/health shows it too.
"""

from __future__ import annotations

import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

# Accounts a report names, and calls it names for each: enough to start looking, bounded
# however many accounts are over.
overspend_accounts_max = 20
overspend_calls_max = 5


# Ledger rows walked back per account to find where its overspend began: an account over
# its allowance is refused new reservations, so its overspend is normally a few rows long.
overspend_walk_rows_max = 10_000


def overspend_query(accounts_max: int, calls_max: int) -> str:
    """Accounts that used (debited) more than they were credited, most over first, each with
    the total count of such accounts and the ledger rows of its current overspend.

    Those rows start at the one that took the account over. The query walks the user's
    ledger back from its newest row, one (user_id, id) index probe per row: the balance
    before a row is the one after it minus the row's deltas, and the walk stops at the
    first row whose balance before it was within the allowance (that row took it over). A
    user's rows are written under the account's row lock, so ids follow the balance. Cost:
    one scan of the accounts, then only the current overspend of at most `accounts_max`
    accounts (bounded by overspend_walk_rows_max), whatever the size of the ledger. The
    bounds are ints from our code, never input."""
    accounts_max, calls_max = int(accounts_max), int(calls_max)
    return f"""
SELECT over.user_id, over.credited_tokens, over.debited_tokens, over.accounts_over, found.calls_over, found.calls
  FROM (SELECT user_id, credited_tokens, debited_tokens, count(*) OVER () AS accounts_over
          FROM solaris.accounts
         WHERE debited_tokens > credited_tokens
         ORDER BY debited_tokens - credited_tokens DESC, user_id
         LIMIT {accounts_max}) over
 CROSS JOIN LATERAL (
       WITH RECURSIVE walk AS (
           SELECT newest.*, over.debited_tokens - over.credited_tokens
                            - (newest.debited_delta - newest.credited_delta) AS over_before, 1 AS walked
             FROM (SELECT l.id, l.kind, l.call_id, l.model, l.raw_tokens, l.debited_delta, l.credited_delta,
                          l.reason, l.created_at
                     FROM solaris.ledger l
                    WHERE l.user_id = over.user_id
                    ORDER BY l.id DESC
                    LIMIT 1) newest
         UNION ALL
           SELECT previous.*, walk.over_before - (previous.debited_delta - previous.credited_delta),
                  walk.walked + 1
             FROM walk
            CROSS JOIN LATERAL (
                  SELECT l.id, l.kind, l.call_id, l.model, l.raw_tokens, l.debited_delta, l.credited_delta,
                         l.reason, l.created_at
                    FROM solaris.ledger l
                   WHERE l.user_id = over.user_id AND l.id < walk.id
                   ORDER BY l.id DESC
                   LIMIT 1) previous
            WHERE walk.over_before > 0 AND walk.walked < {overspend_walk_rows_max})
       -- Debits (and credit reductions) only: reserve and release rows move no used tokens.
       SELECT count(*) AS calls_over,
              coalesce(jsonb_agg(jsonb_build_object(
                  'ledger_id', first.id, 'kind', first.kind, 'call_id', first.call_id, 'model', first.model,
                  'raw_tokens', first.raw_tokens, 'charged_tokens', first.debited_delta,
                  'credited_delta', first.credited_delta, 'reason', first.reason, 'at', first.created_at)
                  ORDER BY first.id) FILTER (WHERE first.position <= {calls_max}), '[]') AS calls
         FROM (SELECT walk.*, row_number() OVER (ORDER BY walk.id) AS position
                 FROM walk
                WHERE walk.debited_delta > 0 OR walk.credited_delta < 0) first) found
 ORDER BY over.debited_tokens - over.credited_tokens DESC, over.user_id"""


overspend_invariant = "no account has used more than it was credited"

# Each: (what must hold, query listing what breaks it).
checks: tuple[tuple[str, str], ...] = (
    (
        "replaying the ledger gives every account's balances",
        """SELECT a.user_id, a.credited_tokens, a.debited_tokens, a.reserved_tokens,
                  coalesce(l.credited, 0), coalesce(l.debited, 0), coalesce(l.reserved, 0)
             FROM solaris.accounts a
             LEFT JOIN (SELECT user_id, sum(credited_delta) AS credited, sum(debited_delta) AS debited,
                               sum(reserved_delta) AS reserved
                          FROM solaris.ledger GROUP BY user_id) l USING (user_id)
            WHERE a.credited_tokens <> coalesce(l.credited, 0)
               OR a.debited_tokens <> coalesce(l.debited, 0)
               OR a.reserved_tokens <> coalesce(l.reserved, 0)""",
    ),
    (
        "an account's reserved tokens are the sum of its pending reservations",
        """SELECT a.user_id, a.reserved_tokens, coalesce(r.pending, 0)
             FROM solaris.accounts a
             LEFT JOIN (SELECT user_id, sum(tokens) AS pending FROM solaris.reservations
                         WHERE state = 'pending' GROUP BY user_id) r USING (user_id)
            WHERE a.reserved_tokens <> coalesce(r.pending, 0)""",
    ),
    (
        # An expired or released reservation may also carry one 'settle' row: a late result
        # (a call that outlived its reservation, a retried attempt, usage spooled during an
        # outage; solaris.settle_late). It is a charge of its own, not a second resolution.
        "every reservation has one reserve row, and one resolution row once resolved",
        """SELECT r.call_id, r.state, count(*) FILTER (WHERE l.kind = 'reserve') AS reserves,
                  count(*) FILTER (WHERE l.kind IN ('settle', 'release', 'expire')) AS resolutions
             FROM solaris.reservations r
             LEFT JOIN solaris.ledger l ON l.call_id = r.call_id
            GROUP BY r.call_id, r.state
           HAVING count(*) FILTER (WHERE l.kind = 'reserve') <> 1
               OR count(*) FILTER (WHERE l.kind IN ('release', 'expire')
                                      OR (l.kind = 'settle' AND r.state NOT IN ('expired', 'released')))
                  <> CASE WHEN r.state = 'pending' THEN 0 ELSE 1 END""",
    ),
    (
        "no reservation stays pending long past its expiry (the sweeper runs)",
        """SELECT call_id, user_id, expires_at FROM solaris.reservations
            WHERE state = 'pending' AND expires_at < now() - interval '10 minutes'""",
    ),
    # docs/design.md invariant 6. Charges that were never reserved (fail_mode: open, late
    # settles, see 0005_spool.sql) can take an account here by design: still a finding,
    # with each row's reason saying how it happened, for the operator to settle.
    (overspend_invariant, overspend_query(overspend_accounts_max, overspend_calls_max)),
)


@dataclass(frozen=True)
class Finding:
    invariant: str
    rows: list[tuple]


@dataclass(frozen=True)
class OverspentAccount:
    """One account over its allowance and the ledger rows that took it there."""

    user_id: str
    credited_tokens: int
    used_tokens: int
    calls_over: int  # rows in its current overspend; `calls` holds the first of them
    calls: list[dict]

    @property
    def over_tokens(self) -> int:
        return self.used_tokens - self.credited_tokens


def overspent_accounts(rows: list[tuple]) -> tuple[int, list[OverspentAccount]]:
    """The rows of `overspend_query` as (accounts over in all, the accounts listed)."""
    accounts = [
        OverspentAccount(user_id, int(credited), int(debited), int(calls_over), list(calls))
        for user_id, credited, debited, _, calls_over, calls in rows
    ]
    return (int(rows[0][3]) if rows else 0), accounts


def describe_overspend(rows: list[tuple]) -> str:
    """A doctor line: how many accounts, and per account the calls that took it over."""
    total, accounts = overspent_accounts(rows)
    parts = []
    for account in accounts:
        # No row: the balance was changed behind the ledger's back (the replay check says so too).
        calls = "; ".join(_describe_row(row) for row in account.calls) or "no ledger row"
        more = account.calls_over - len(account.calls)
        parts.append(
            f"{account.user_id} used {account.used_tokens} of {account.credited_tokens} credited "
            f"({account.over_tokens} over), by {calls}{f'; and {more} more' if more > 0 else ''}"
        )
    shown = f" ({len(accounts)} shown)" if total > len(accounts) else ""
    return f"{total} account(s) over{shown}: " + " | ".join(parts)


async def overspend_summary(
    connection: psycopg.AsyncConnection, accounts_max: int, calls_max: int
) -> tuple[int, list[OverspentAccount]]:
    """For /solaris/health: how many accounts are over, and the first few of them."""
    cursor = await connection.execute(overspend_query(accounts_max, calls_max))
    return overspent_accounts(await cursor.fetchall())


def _describe_row(row: dict) -> str:
    if row["credited_delta"] < 0:
        what = f"{row['kind']} of credited by {row['credited_delta']}"
    elif row["call_id"] is None:
        what = f"{row['kind']} of used by +{row['charged_tokens']}"
    else:
        raw = row["raw_tokens"] if row["raw_tokens"] is not None else "?"
        what = (
            f"call {row['call_id']} ({row['kind']}, {row['model'] or 'no model'}, "
            f"{raw} raw -> {row['charged_tokens']} charged)"
        )
    reason = f" [{row['reason']}]" if row["reason"] else ""
    return what + reason


def invariant_rows(connection: psycopg.Connection) -> list[Finding]:
    """Every invariant with up to 20 rows breaking it (none when it holds), from one snapshot,
    so a call in flight cannot look like a fault. Needs an autocommit connection."""
    with connection.transaction():
        connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return [Finding(invariant, connection.execute(query + " LIMIT 20").fetchall()) for invariant, query in checks]


def diagnose(url: str) -> list[Finding]:
    """The invariants that do not hold, each with up to 20 offending rows."""
    with psycopg.connect(url, connect_timeout=10, autocommit=True) as connection:
        return [finding for finding in invariant_rows(connection) if finding.rows]


# Outbox rows waiting longer than this mean mail is not going out.
outbox_backlog_age_max_s = 3600


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def _check_config(config: Path | None) -> CheckResult:
    from solaris_hooks.exceptions import SettingsError
    from solaris_hooks.settings import find_config_path, load_settings

    try:
        load_settings(config)
    except SettingsError as error:
        return CheckResult("config", False, str(error))
    path = config or find_config_path()
    return CheckResult("config", True, f"{path} is valid" if path else "no config file found: defaults apply")


def _check_smtp() -> CheckResult:
    from solaris_hooks.exceptions import SettingsError
    from solaris_hooks.mail.smtp import session, smtp_settings_from_env

    try:
        smtp = smtp_settings_from_env()
    except SettingsError as error:
        return CheckResult("smtp", False, str(error))
    if smtp is None:
        return CheckResult("smtp", True, "not configured (SMTP_HOST unset): alerts wait in the outbox")
    try:
        with session(smtp) as client:
            client.noop()
    except (OSError, smtplib.SMTPException) as error:
        return CheckResult("smtp", False, f"{smtp.host}:{smtp.port} unreachable: {type(error).__name__}: {error}")
    return CheckResult("smtp", True, f"{smtp.host}:{smtp.port} answers")


def _database_checks(connection: psycopg.Connection) -> list[CheckResult]:
    from solaris_hooks.db.migrations import available_migrations, schema

    results = []
    if connection.execute(f"SELECT to_regclass('{schema}.schema_migrations')").fetchone()[0] is None:
        return [CheckResult("migrations", False, "the solaris schema does not exist: run `solaris migrate`")]
    applied = {row[0] for row in connection.execute(f"SELECT version FROM {schema}.schema_migrations")}
    missing = [migration.version for migration in available_migrations() if migration.version not in applied]
    results.append(
        CheckResult(
            "migrations",
            not missing,
            f"missing {missing}: run `solaris migrate`" if missing else f"{len(applied)} applied",
        )
    )
    for finding in invariant_rows(connection):
        rows = finding.rows
        if finding.invariant == overspend_invariant and rows:
            detail = describe_overspend(rows)
        else:
            detail = f"{len(rows)} offending: {rows}" if rows else "holds"
        results.append(CheckResult(finding.invariant, not rows, detail))
    statuses = dict(
        connection.execute(
            """SELECT status, count(*) FROM solaris.alerts
            WHERE status = 'dead'
               OR (status IN ('pending', 'failed') AND created_at < now() - make_interval(secs => %s))
            GROUP BY status""",
            (outbox_backlog_age_max_s,),
        ).fetchall()
    )
    waiting = statuses.get("pending", 0) + statuses.get("failed", 0)
    dead = statuses.get("dead", 0)
    results.append(
        CheckResult(
            "outbox",
            not waiting and not dead,
            f"{waiting} alert(s) waiting over {outbox_backlog_age_max_s // 60} min, {dead} dead "
            "(see GET /solaris/alerts)"
            if waiting or dead
            else "no backlog, no dead letters",
        )
    )
    return results


def run_checks(url_source: Callable[[], str], config: Path | None = None) -> list[CheckResult]:
    results = [_check_config(config)]
    try:
        with psycopg.connect(url_source(), connect_timeout=10, autocommit=True) as connection:
            results.append(CheckResult("database", True, "reachable"))
            results += _database_checks(connection)
    except Exception as error:  # any reason the database cannot be checked is the finding itself
        results.append(CheckResult("database", False, f"{type(error).__name__}: {error}"))
    results.append(_check_smtp())
    return results
