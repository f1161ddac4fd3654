"""What the e-mail and the webhook senders of the outbox share: the backoff between attempts,
the report of a pass, and recording an outcome while the claim lasts.

One set of rules for both, so an alert is retried the same way whichever way it goes out.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from psycopg import AsyncConnection

from solaris_hooks.db.queries import sql
from solaris_hooks.exceptions import DatabaseUnavailable
from solaris_hooks.settings import Settings

claim_batch_size_max = 50
# How often a worker retries recording an outcome while the database is down.
record_retry_s = 0.5

Connect = Callable[[], AbstractAsyncContextManager[AsyncConnection]]


def backoff_s(attempts: int, settings: Settings) -> float:
    """Exponential in the attempts made, capped, with jitter so failed senders spread out."""
    ceiling = min(settings.mail_backoff_max_s, settings.mail_backoff_base_s * 2 ** max(0, attempts - 1))
    return ceiling * random.uniform(0.5, 1.0)


@dataclass
class Report:
    sent: int = 0
    failed: int = 0
    dead: int = 0
    no_address: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def handled(self) -> int:
        return self.sent + self.failed + self.dead + self.no_address

    def add(self, other: Report) -> None:
        self.sent += other.sent
        self.failed += other.failed
        self.dead += other.dead
        self.no_address += other.no_address
        self.errors += other.errors


async def record(connect: Connect, worker_id: str, statement: str, **params: object) -> str | None:
    """Run the outcome statement db/queries/<statement>.sql for one claimed row."""
    async with connect() as connection:
        cursor = await connection.execute(sql(statement), {"worker": worker_id, **params})
        row = await cursor.fetchone() if cursor.description else None
    return row[0] if row else None


async def record_until(
    connect: Connect, worker_id: str, settings: Settings, claim_ends_at_s: float, statement: str, **params: object
) -> str | None:
    """record, retried through a database outage while the claim lasts (with a margin for
    the statement itself): the alert is already out, and only this worker knows."""
    while True:
        try:
            return await record(connect, worker_id, statement, **params)
        except DatabaseUnavailable:
            if time.monotonic() + record_retry_s + settings.db_timeout_s >= claim_ends_at_s:
                raise
            await asyncio.sleep(record_retry_s)
