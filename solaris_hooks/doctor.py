"""`solaris doctor`: is this deployment healthy? One line per check, non-zero exit on a problem.

The ledger invariants (DESIGN.md) are each one query returning the rows that break them,
so a report names the users and calls to look at; the tests run the same queries after
every test.
"""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psycopg

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
        # An expired reservation may also carry one 'settle' row: usage spooled during a
        # database outage, charged after the sweeper returned the reservation
        # (solaris.settle_spooled). It is a charge of its own, not a second resolution.
        "every reservation has one reserve row, and one resolution row once resolved",
        """SELECT r.call_id, r.state, count(*) FILTER (WHERE l.kind = 'reserve') AS reserves,
                  count(*) FILTER (WHERE l.kind IN ('settle', 'release', 'expire')) AS resolutions
             FROM solaris.reservations r
             LEFT JOIN solaris.ledger l ON l.call_id = r.call_id
            GROUP BY r.call_id, r.state
           HAVING count(*) FILTER (WHERE l.kind = 'reserve') <> 1
               OR count(*) FILTER (WHERE l.kind IN ('release', 'expire')
                                      OR (l.kind = 'settle' AND r.state <> 'expired'))
                  <> CASE WHEN r.state = 'pending' THEN 0 ELSE 1 END""",
    ),
    (
        "no reservation stays pending long past its expiry (the sweeper runs)",
        """SELECT call_id, user_id, expires_at FROM solaris.reservations
            WHERE state = 'pending' AND expires_at < now() - interval '10 minutes'""",
    ),
)


@dataclass(frozen=True)
class Finding:
    invariant: str
    rows: list[tuple]


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
    from solaris_hooks.smtp import session, smtp_settings_from_env

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
    from solaris_hooks.migrations import available_migrations, schema

    results = []
    if connection.execute(f"SELECT to_regclass('{schema}.schema_migrations')").fetchone()[0] is None:
        return [CheckResult("migrations", False, "the solaris schema does not exist: run `solaris migrate`")]
    applied = {row[0] for row in connection.execute(f"SELECT version FROM {schema}.schema_migrations")}
    missing = [migration.version for migration in available_migrations() if migration.version not in applied]
    results.append(CheckResult("migrations", not missing,
                               f"missing {missing}: run `solaris migrate`" if missing else f"{len(applied)} applied"))
    for finding in invariant_rows(connection):
        rows = finding.rows
        results.append(CheckResult(finding.invariant, not rows, f"{len(rows)} offending: {rows}" if rows else "holds"))
    statuses = dict(connection.execute(
        """SELECT status, count(*) FROM solaris.alerts
            WHERE status = 'dead'
               OR (status IN ('pending', 'failed') AND created_at < now() - make_interval(secs => %s))
            GROUP BY status""", (outbox_backlog_age_max_s,)).fetchall())
    waiting = statuses.get("pending", 0) + statuses.get("failed", 0)
    dead = statuses.get("dead", 0)
    results.append(CheckResult(
        "outbox", not waiting and not dead,
        f"{waiting} alert(s) waiting over {outbox_backlog_age_max_s // 60} min, {dead} dead "
        "(see GET /solaris/alerts)" if waiting or dead else "no backlog, no dead letters"))
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
