"""The refill task: when a period of a refill rule starts, the accounts it covers move into it.

There is one rule per group that sets `refill` (its members), and the top-level `refill`
(everyone else: no group, or a group without a rule of its own). `solaris.refill_group`
(migration 0015) writes one `grant` per user and period however many replicas run it, in
batches, so a large ledger is never locked at once; its comment says how period keys behave
when a user changes group. What the periods are is the setting's business
(solaris_hooks.settings.refill).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncConnection

from solaris_hooks.db.queries import sql
from solaris_hooks.exceptions import DatabaseUnavailable
from solaris_hooks.logs import log_event
from solaris_hooks.settings import Settings
from solaris_hooks.settings.refill import RefillSettings, current_period

refill_batch_size_max = 1000
idle_check_interval_s = 60

Connect = Callable[[], AbstractAsyncContextManager[AsyncConnection]]


@dataclass(frozen=True)
class RefillRule:
    """A refill setting and whom it covers: the members of `group`, or (group None) every
    account not in one of `own_rule_groups`."""

    settings: RefillSettings
    group: str | None = None
    own_rule_groups: tuple[str, ...] = ()


def refill_rules(settings: Settings) -> list[RefillRule]:
    """The rules the settings ask for: the top-level one when set, and each group's own."""
    own = {name: group.refill for name, group in settings.groups.items() if group.refill is not None}
    names = tuple(sorted(own))
    rules = [RefillRule(settings.refill, None, names)] if settings.refill is not None else []
    return rules + [RefillRule(rule, name, names) for name, rule in sorted(own.items())]


async def refill_due(
    connect: Connect,
    settings: RefillSettings,
    now: datetime | None = None,
    group: str | None = None,
    own_rule_groups: Sequence[str] = (),
) -> int:
    """Move the accounts a rule covers into its current period; returns how many were refilled.
    With no group and no own_rule_groups, the rule covers every account."""
    key = current_period(settings, now)
    refilled_total = 0
    async with connect() as connection:
        while True:
            cursor = await connection.execute(
                sql("refill/refill_group"),
                {
                    "period": key,
                    "mode": settings.mode,
                    "amount": settings.amount,
                    "batch_size": refill_batch_size_max,
                    "group": group,
                    "own_rule_groups": list(own_rule_groups),
                },
            )
            row = await cursor.fetchone()
            refilled = row[0] if row is not None else 0
            refilled_total += refilled
            if refilled < refill_batch_size_max:
                break
    if refilled_total:
        log_event(
            "refilled", period=key, accounts=refilled_total, mode=settings.mode, amount=settings.amount, group=group
        )
    return refilled_total


async def refill_round(connect: Connect, settings: Settings, now: datetime | None = None) -> int:
    """Run every rule once; returns how many accounts were refilled."""
    refilled = 0
    for rule in refill_rules(settings):
        refilled += await refill_due(connect, rule.settings, now, rule.group, rule.own_rule_groups)
    return refilled


def check_interval_s(rules: Sequence[RefillRule]) -> float:
    """How long to wait for the next round: the shortest interval any rule asks for."""
    return min((rule.settings.check_interval_s for rule in rules), default=idle_check_interval_s)


async def refill_forever(connect: Connect, current: Callable[[], Settings]) -> None:
    """Refill whenever a period starts; reads the settings each round, so a reload that
    adds, changes or removes a `refill` (top-level or a group's) takes effect without a restart."""
    while True:
        settings = current()
        try:
            await refill_round(connect, settings)
        except DatabaseUnavailable as error:
            log_event("refill_failed", logging.WARNING, error=str(error))
        except Exception as error:  # a dead refill task would silently stop every renewal
            log_event("refill_failed", logging.ERROR, error=repr(error))
        await asyncio.sleep(check_interval_s(refill_rules(settings)))
