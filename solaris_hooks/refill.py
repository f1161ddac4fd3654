"""Refill periods: every day, week or month each user's allowance is topped up or reset.

Periods have keys (`2026-11-26`, `2026-W48`, `2026-11`) in the configured time zone.
A background task moves accounts into the current period with `solaris.refill`, which
writes one `grant` per user and period however many replicas run it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from solaris_hooks.logs import log_event

refill_batch_size_max = 1000
idle_check_interval_s = 60


class RefillSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    every: Literal["day", "week", "month"]
    mode: Literal["reset_to", "add"] = "reset_to"
    amount: int = Field(ge=0, le=10**12)
    timezone: str = "UTC"
    check_interval_s: float = Field(60, gt=0, le=86_400)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (KeyError, ValueError):
            raise ValueError(f"unknown time zone {name!r} (use an IANA name such as America/Sao_Paulo)") from None
        return name


def period_start(day: date, every: str) -> date:
    if every == "day":
        return day
    if every == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def next_period_start(day: date, every: str) -> date:
    start = period_start(day, every)
    if every == "day":
        return start + timedelta(days=1)
    if every == "week":
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def period_key(day: date, every: str) -> str:
    if every == "day":
        return day.isoformat()
    if every == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{day.year}-{day.month:02d}"


def local_today(settings: RefillSettings, now: datetime | None = None) -> date:
    return (now or datetime.now(UTC)).astimezone(ZoneInfo(settings.timezone)).date()


def current_period(settings: RefillSettings, now: datetime | None = None) -> str:
    return period_key(local_today(settings, now), settings.every)


def next_refill_at(settings: RefillSettings, now: datetime | None = None) -> datetime:
    """When the next period starts, as an aware datetime in the configured zone."""
    start = next_period_start(local_today(settings, now), settings.every)
    return datetime.combine(start, time(0), tzinfo=ZoneInfo(settings.timezone))


async def refill_due(connect, settings: RefillSettings, now: datetime | None = None) -> int:
    """Move every account into the current period; returns how many were refilled."""
    key = current_period(settings, now)
    refilled_total = 0
    async with connect() as connection:
        while True:
            cursor = await connection.execute(
                "SELECT solaris.refill(%s, %s, %s, %s)", (key, settings.mode, settings.amount, refill_batch_size_max)
            )
            refilled = (await cursor.fetchone())[0]
            refilled_total += refilled
            if refilled < refill_batch_size_max:
                break
    if refilled_total:
        log_event("refilled", period=key, accounts=refilled_total, mode=settings.mode, amount=settings.amount)
    return refilled_total


async def refill_forever(connect, current: Callable[[], RefillSettings | None]) -> None:
    """Refill whenever a period starts; reads the settings each round, so a reload that
    adds, changes or removes `refill` takes effect without a restart."""
    from solaris_hooks.exceptions import DatabaseUnavailable

    while True:
        settings = current()
        try:
            if settings is not None:
                await refill_due(connect, settings)
        except DatabaseUnavailable as error:
            log_event("refill_failed", logging.WARNING, error=str(error))
        except Exception as error:  # a dead refill task would silently stop every renewal
            log_event("refill_failed", logging.ERROR, error=repr(error))
        await asyncio.sleep(settings.check_interval_s if settings else idle_check_interval_s)
