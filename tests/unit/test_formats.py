"""Numbers and dates as the reader writes them (solaris_hooks.formats), through Babel."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from solaris_hooks.formats import format_day, format_day_month, format_moment, format_number, format_usd


class TestNumbers:
    @pytest.mark.parametrize(
        ("value", "pt_br", "en"),
        [
            (0, "0", "0"),
            (1000, "1.000", "1,000"),
            (1234567, "1.234.567", "1,234,567"),
            (-1234567, "-1.234.567", "-1,234,567"),
            (10**15, "1.000.000.000.000.000", "1,000,000,000,000,000"),
            (2.0, "2", "2"),
            (1234.5, "1.234,50", "1,234.50"),
            (-0.5, "-0,50", "-0.50"),
            (Decimal("12.7"), "12", "12"),  # not a float: shown as a whole number, as int() makes it
            (True, "1", "1"),
        ],
    )
    def test_grouping_and_decimal_marks_follow_the_locale(self, value, pt_br, en):
        assert format_number(value, "pt-BR") == pt_br
        assert format_number(value, "en") == en

    def test_a_float_rounds_as_python_formats_it(self):
        """At its exact binary value, halves to even: 2.675 is 2.67499…, 0.125 is a true half."""
        assert [format_number(value, "en") for value in (2.675, 0.125, 0.135, 1.005)] == [
            f"{value:,.2f}" for value in (2.675, 0.125, 0.135, 1.005)
        ]

    def test_huge_numbers_keep_every_digit(self):
        assert format_number(10**40, "en") == f"{10**40:,}"
        assert format_number(1.5e300 + 0.5, "en") == f"{int(1.5e300):,}"

    def test_missing_and_non_finite_values(self):
        assert format_number(None, "pt-BR") == "—"
        assert format_number(float("inf"), "pt-BR") == "inf"
        assert format_number(float("nan"), "en") == "nan"

    def test_a_locale_without_patterns_gets_english(self):
        assert format_number(1234.5, "fr") == format_number(1234.5, None) == "1,234.50"


class TestDollars:
    @pytest.mark.parametrize(
        ("value", "pt_br", "en"),
        [
            (0.0123, "US$ 0,0123", "US$ 0.0123"),
            (0.5, "US$ 0,5000", "US$ 0.5000"),
            (1, "US$ 1,00", "US$ 1.00"),
            (1234.5, "US$ 1.234,50", "US$ 1,234.50"),
            (None, "US$ 0,00", "US$ 0.00"),
            (Decimal("0.00001"), "US$ 0,0000", "US$ 0.0000"),
            (-2.5, "US$ -2,50", "US$ -2.50"),
        ],
    )
    def test_four_places_under_a_dollar_two_above(self, value, pt_br, en):
        assert format_usd(value, "pt-BR") == pt_br
        assert format_usd(value, "en") == en


class TestDates:
    def test_a_day(self):
        assert format_day(date(2026, 12, 2), "pt-BR") == "02/12/2026"
        assert format_day(date(2026, 12, 2), "en") == "2026-12-02"
        assert format_moment(date(2026, 12, 2), "pt-BR") == "02/12/2026"
        assert format_moment(date(2026, 12, 2), "en") == "2026-12-02"

    def test_a_day_on_a_chart_axis(self):
        assert format_day_month(date(2026, 12, 2), "pt-BR") == "02/12"
        assert format_day_month(date(2026, 12, 2), "en") == "12-02"

    def test_a_moment_is_shown_in_utc(self):
        moment = datetime(2026, 12, 2, 23, 30, tzinfo=timezone(timedelta(hours=-3)))
        assert format_moment(moment, "pt-BR") == "03/12/2026 02:30 UTC"
        assert format_moment(moment, "en") == "2026-12-03 02:30 UTC"
        assert format_moment(datetime(2026, 1, 5, 7, 8, tzinfo=UTC), "en") == "2026-01-05 07:08 UTC"

    def test_missing(self):
        assert format_moment(None, "en") == "—"
