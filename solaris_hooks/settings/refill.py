"""The `refill` setting: every day, week or month each user's allowance is topped up or reset.

Periods have keys (`2026-11-26`, `2026-W48`, `2026-11`) in the configured time zone.
The background task that moves accounts into the current period is
solaris_hooks.db.refill; this module only says what the periods are.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator


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
