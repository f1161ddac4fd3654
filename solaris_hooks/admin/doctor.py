"""`solaris doctor`: is this deployment healthy? One line per check, non-zero exit on a problem.

The ledger invariants (docs/architecture.md) are each one query returning the rows that break them
(db/queries/admin/invariant_*.sql), so a report names the users and calls to look at; the
tests run the same queries after every test. Overspend (an account that used more than it
was credited, admin/overspent_accounts.sql) is one of them, reported with the ledger rows
that took the account over; /solaris/health shows it too.
"""

from __future__ import annotations

import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from solaris_hooks.db import migrations
from solaris_hooks.db.connection import one_command_prepare_threshold
from solaris_hooks.db.queries import sql
from solaris_hooks.mail import webhook_outbox

# Accounts a report names, and calls it names for each: enough to start looking, bounded
# however many accounts are over.
overspend_accounts_max = 20
overspend_calls_max = 5


# Ledger rows walked back per account to find where its overspend began: an account over
# its allowance is refused new reservations, so its overspend is normally a few rows long.
overspend_walk_rows_max = 10_000


def overspend_bounds(accounts_max: int, calls_max: int) -> dict[str, int]:
    """The parameters of admin/overspent_accounts.sql: accounts that used (debited) more than
    they were credited, most over first, each with the count of such accounts in all and the
    ledger rows of its current overspend (at most `calls_max` of them listed)."""
    return {
        "accounts_max": accounts_max,
        "calls_max": calls_max,
        "walk_rows_max": overspend_walk_rows_max,
        "rows_max": accounts_max,
    }


overspend_invariant = "no account has used more than it was credited"

# Each: (what must hold, the query in db/queries listing up to rows_max rows that break it).
checks: tuple[tuple[str, str], ...] = (
    ("replaying the ledger gives every account's balances", "admin/invariant_ledger_replay"),
    ("an account's reserved tokens are the sum of its pending reservations", "admin/invariant_reserved_tokens"),
    (
        "every reservation has one reserve row, and one resolution row once resolved",
        "admin/invariant_reservation_rows",
    ),
    ("no reservation stays pending long past its expiry (the sweeper runs)", "admin/invariant_no_stale_pending"),
    # docs/architecture.md invariant 6. Charges that were never reserved (fail_mode: open, late
    # settles, see 0005_spool.sql) can take an account here by design: still a finding,
    # with each row's reason saying how it happened, for the operator to settle.
    (overspend_invariant, "admin/overspent_accounts"),
)
# Rows a finding lists: enough to start looking.
finding_rows_max = 20


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
    """The rows of admin/overspent_accounts.sql as (accounts over in all, the accounts listed)."""
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
    cursor = await connection.execute(sql("admin/overspent_accounts"), overspend_bounds(accounts_max, calls_max))
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
    """Every invariant with up to finding_rows_max rows breaking it (none when it holds), from
    one snapshot, so a call in flight cannot look like a fault. Needs an autocommit connection."""
    params = {**overspend_bounds(overspend_accounts_max, overspend_calls_max), "rows_max": finding_rows_max}
    with connection.transaction():
        connection.execute(sql("admin/doctor_snapshot"))
        return [Finding(invariant, connection.execute(sql(query), params).fetchall()) for invariant, query in checks]


def diagnose(url: str) -> list[Finding]:
    """The invariants that do not hold, each with up to finding_rows_max offending rows."""
    with psycopg.connect(
        url, connect_timeout=10, autocommit=True, prepare_threshold=one_command_prepare_threshold
    ) as connection:
        return [finding for finding in invariant_rows(connection) if finding.rows]


# Outbox rows (e-mails, webhook deliveries) waiting longer than this mean alerts are not going out.
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
    results = []
    exists = connection.execute(sql("db/schema_migrations_exists")).fetchone()
    if not (exists and exists[0]):
        return [CheckResult("migrations", False, "the solaris schema does not exist: run `solaris migrate`")]
    results.append(_check_migrations(connection))
    for finding in invariant_rows(connection):
        rows = finding.rows
        if finding.invariant == overspend_invariant and rows:
            detail = describe_overspend(rows)
        else:
            detail = f"{len(rows)} offending: {rows}" if rows else "holds"
        results.append(CheckResult(finding.invariant, not rows, detail))
    statuses: dict[str, int] = dict(
        connection.execute(sql("admin/outbox_backlog"), {"backlog_age_max_s": outbox_backlog_age_max_s}).fetchall()
    )
    results.append(_backlog_check("outbox", "alert(s)", statuses))
    webhooks = webhook_outbox.webhook_backlog(connection, outbox_backlog_age_max_s)
    results.append(_backlog_check("webhooks", "webhook delivery(ies)", webhooks))
    return results


def _backlog_check(name: str, what: str, statuses: dict[str, int]) -> CheckResult:
    """The outbox's rows, e-mails or webhook deliveries, waiting too long or dead, by status."""
    waiting = statuses.get("pending", 0) + statuses.get("failed", 0)
    dead = statuses.get("dead", 0)
    return CheckResult(
        name,
        not waiting and not dead,
        f"{waiting} {what} waiting over {outbox_backlog_age_max_s // 60} min, {dead} dead (see GET /solaris/alerts)"
        if waiting or dead
        else "no backlog, no dead letters",
    )


def _check_migrations(connection: psycopg.Connection) -> CheckResult:
    """Every migration applied, and none edited since it was applied (a checksum not recorded
    yet, before the next `solaris migrate` records it, cannot be checked)."""
    applied = migrations.applied_checksums(connection)
    available = migrations.available_migrations()
    missing = [migration.version for migration in available if migration.version not in applied]
    problems = [f"missing {missing}: run `solaris migrate`"] if missing else []
    changed = migrations.changed_migrations(applied, available)
    if changed:
        problems.append(migrations.describe_changed(changed))
    return CheckResult("migrations", not problems, "; ".join(problems) or f"{len(applied)} applied")


def run_checks(url_source: Callable[[], str], config: Path | None = None) -> list[CheckResult]:
    results = [_check_config(config)]
    try:
        with psycopg.connect(
            url_source(), connect_timeout=10, autocommit=True, prepare_threshold=one_command_prepare_threshold
        ) as connection:
            results.append(CheckResult("database", True, "reachable"))
            results += _database_checks(connection)
    except Exception as error:  # any reason the database cannot be checked is the finding itself
        results.append(CheckResult("database", False, f"{type(error).__name__}: {error}"))
    results.append(_check_smtp())
    return results
