"""Report date ranges: what `from` and `to` include, parsed without a database.

Statistics, CSV and `solaris report`: tests/integration/test_reports.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from solaris_hooks.admin import reports
from solaris_hooks.exceptions import InvalidInput


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class TestParseRange:
    now = at("2025-06-15T12:00:00")

    def test_a_date_as_to_includes_that_whole_day(self):
        """from=2025-03-01, to=2025-03-31 is [March 1st 00:00, April 1st 00:00) UTC."""
        assert reports.parse_range("2025-03-01", "2025-03-31") == (at("2025-03-01T00:00:00"), at("2025-04-01T00:00:00"))

    def test_datetimes_are_kept_and_converted_to_utc(self):
        """A datetime `to` is exclusive as given; an offset is converted, no offset means UTC."""
        start, end = reports.parse_range("2025-03-01T10:00:00+02:00", "2025-03-02T10:30:00")
        assert (start, end) == (at("2025-03-01T08:00:00"), at("2025-03-02T10:30:00"))

    def test_the_default_is_the_last_30_days(self):
        """Without from and to: the 30 days before now; with only `to`: the 30 days before it."""
        assert reports.parse_range(None, None, now=self.now) == (self.now - timedelta(days=30), self.now)
        assert reports.parse_range(None, "2025-03-31")[0] == at("2025-03-02T00:00:00")

    @pytest.mark.parametrize(
        ("start", "end", "complaint"),
        [
            ("yesterday", None, "`from` is not a date: 'yesterday'"),
            ("2025-13-01", None, "`from` is not a date"),
            (None, "2025-03-01T25:00", "`to` is not a date"),
            ("2025-03-02", "2025-03-01", "`from` (2025-03-02) must be before `to` (2025-03-01)"),
            ("2025-03-01T10:00", "2025-03-01T10:00", "must be before"),
            ("2020-01-01", "2025-01-01", "at most 1098 (about 3 years)"),
            (None, "9999-12-31", "`to` is out of range"),
        ],
    )
    def test_bad_input_is_a_sentence(self, start, end, complaint):
        """Unparseable dates, an empty or reversed range and a range over 3 years each say what is wrong."""
        with pytest.raises(InvalidInput) as raised:
            reports.parse_range(start, end, now=self.now)
        assert complaint in raised.value.message
