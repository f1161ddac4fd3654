"""Numbers and dates the way the reader writes them: `1.234,56` and `02/12/2026` in pt-BR,
`1,234.56` and `2026-12-02` in English.

Babel formats; what differs between locales is data (`patterns`), not branches. English
dates are ISO 8601 rather than CLDR's `12/2/26`, and amounts in dollars read `US$ ` in
both languages, so they are written out here. A locale we have no patterns for gets the
English ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, localcontext

from babel.dates import format_date as babel_format_date
from babel.dates import format_datetime as babel_format_datetime
from babel.numbers import format_decimal

# Shown where a value is missing.
missing = "—"
usd_prefix = "US$ "


@dataclass(frozen=True)
class LocalePatterns:
    babel_locale: str  # whose number symbols (decimal and grouping marks) apply
    day: str  # a calendar day
    day_month: str  # a day where the year goes without saying, such as a chart axis
    moment: str  # a moment, always shown in UTC


patterns = {
    "pt-BR": LocalePatterns("pt_BR", day="dd/MM/y", day_month="dd/MM", moment="dd/MM/y HH:mm 'UTC'"),
    "en": LocalePatterns("en", day="y-MM-dd", day_month="MM-dd", moment="y-MM-dd HH:mm 'UTC'"),
}
fallback_locale = "en"

integer_pattern = "#,##0"
decimal_pattern = "#,##0.00"
# Amounts under one dollar keep four places: a single call often costs a fraction of a cent.
small_amount_pattern = "#,##0.0000"


def locale_patterns(locale: str | None) -> LocalePatterns:
    return patterns.get(locale or "", patterns[fallback_locale])


def _decimal(value: int | float | Decimal, pattern: str, locale: str | None) -> str:
    """value with the locale's marks. A float is taken at its exact binary value, so it
    rounds as Python's own formatting does; the precision fits any number's digits."""
    exact = Decimal(value)
    digits = max(28, exact.adjusted() + 10)
    with localcontext(prec=digits):
        return format_decimal(exact, pattern, locale=locale_patterns(locale).babel_locale)


def format_number(value: int | float | Decimal | None, locale: str | None) -> str:
    """1.234.567 in pt-BR, 1,234,567 in English; a float with a fraction keeps two places,
    anything else is shown as a whole number."""
    if value is None:
        return missing
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value}"  # inf or nan, as Python writes them
    if isinstance(value, float) and not value.is_integer():
        return _decimal(value, decimal_pattern, locale)
    return _decimal(int(value), integer_pattern, locale)


def format_usd(value: int | float | Decimal | None, locale: str | None) -> str:
    """US$ 1.234,50 in pt-BR, US$ 1,234.50 in English; under a dollar, four places."""
    amount = float(value or 0)
    if not math.isfinite(amount):
        return usd_prefix + f"{amount}"
    pattern = small_amount_pattern if 0 < amount < 1 else decimal_pattern
    return usd_prefix + _decimal(amount, pattern, locale)


def format_day(value: date, locale: str | None) -> str:
    """02/12/2026 in pt-BR, 2026-12-02 in English."""
    return babel_format_date(value, locale_patterns(locale).day, locale=locale_patterns(locale).babel_locale)


def format_day_month(value: date, locale: str | None) -> str:
    """02/12 in pt-BR, 12-02 in English."""
    return babel_format_date(value, locale_patterns(locale).day_month, locale=locale_patterns(locale).babel_locale)


def format_moment(value: datetime | date | None, locale: str | None) -> str:
    """A moment in UTC to the minute (02/12/2026 13:45 UTC), or a day; a naive datetime is
    taken as local time, as `datetime.astimezone` takes it."""
    if value is None:
        return missing
    if isinstance(value, datetime):
        in_utc = value.astimezone(UTC)
        chosen = locale_patterns(locale)
        return babel_format_datetime(in_utc, chosen.moment, tzinfo=UTC, locale=chosen.babel_locale)
    return format_day(value, locale)
