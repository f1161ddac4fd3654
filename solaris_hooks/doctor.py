"""Checks of DESIGN.md's invariants on a live database (`solaris doctor`, and the tests).

Each check is one query that returns the rows breaking the invariant, so a report names
the users and calls to look at.
"""

from __future__ import annotations

from dataclasses import dataclass

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
        "every reservation has one reserve row, and one resolution row once resolved",
        """SELECT r.call_id, r.state, count(*) FILTER (WHERE l.kind = 'reserve') AS reserves,
                  count(*) FILTER (WHERE l.kind IN ('settle', 'release', 'expire')) AS resolutions
             FROM solaris.reservations r
             LEFT JOIN solaris.ledger l ON l.call_id = r.call_id
            GROUP BY r.call_id, r.state
           HAVING count(*) FILTER (WHERE l.kind = 'reserve') <> 1
               OR count(*) FILTER (WHERE l.kind IN ('settle', 'release', 'expire'))
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


def diagnose(url: str) -> list[Finding]:
    """The invariants that do not hold, each with up to 20 offending rows."""
    findings = []
    with psycopg.connect(url, connect_timeout=10) as connection:
        # One snapshot for all checks, so a call in flight cannot look like a fault.
        with connection.transaction():
            connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            for invariant, query in checks:
                rows = connection.execute(query + " LIMIT 20").fetchall()
                if rows:
                    findings.append(Finding(invariant, rows))
    return findings
