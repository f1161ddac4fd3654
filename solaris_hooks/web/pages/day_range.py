"""Dates typed into the admin pages' filters (YYYY-MM-DD, UTC days): parsed, or answered
with a readable 400 page, never a 500."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from solaris_hooks.admin import reports
from solaris_hooks.admin.overview_range import utc_start
from solaris_hooks.web.pages.base import PageError


@dataclass(frozen=True)
class DayRange:
    first: date  # included
    last: date  # included

    @property
    def start(self) -> datetime:
        """UTC midnight of the first day."""
        return utc_start(self.first)

    @property
    def end(self) -> datetime:
        """UTC midnight after the last day (exclusive)."""
        return utc_start(self.last + timedelta(days=1))


def typed_day(text: str | None) -> date | None:
    """A day as a date field sends it; empty is None; anything else a 400 page."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise PageError(400, "error.bad_date") from None
    if day == date.max:  # the day after must exist too: the range ends at its midnight
        raise PageError(400, "error.bad_date")
    return day


def checked(first: date | None, last: date | None) -> None:
    if first and last:
        if first > last:
            raise PageError(400, "error.bad_range")
        if last - first > reports.range_max:
            raise PageError(400, "error.range_too_long")


def day_range(from_text: str | None, to_text: str | None, today: date, default_days: int) -> DayRange:
    """first..last from the filter's `from` and `to`; by default the `default_days` days to today."""
    last = typed_day(to_text) or today
    try:
        first = typed_day(from_text) or last - timedelta(days=default_days - 1)
    except OverflowError:  # before year 1
        raise PageError(400, "error.bad_date") from None
    checked(first, last)
    return DayRange(first, last)
