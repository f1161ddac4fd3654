"""Refill periods: their keys, the configured time zone, and a bad setting named.

Grants in a real ledger: tests/integration/test_refill.py."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from solaris_hooks.exceptions import SettingsError
from solaris_hooks.settings import settings_from_mapping
from solaris_hooks.settings.refill import RefillSettings, current_period, next_refill_at, period_key


class TestPeriods:
    @pytest.mark.parametrize(("every", "key"), [("day", "2026-11-26"), ("week", "2026-W48"), ("month", "2026-11")])
    def test_period_keys(self, every, key):
        """Day, ISO week and month keys."""
        assert period_key(date(2026, 11, 26), every) == key

    def test_the_period_follows_the_configured_time_zone(self):
        """01:00 UTC on the 1st is still the previous month in São Paulo."""
        settings = RefillSettings(every="month", amount=1, timezone="America/Sao_Paulo")
        assert current_period(settings, datetime(2026, 12, 1, 1, 0, tzinfo=UTC)) == "2026-11"
        assert next_refill_at(settings, datetime(2026, 11, 15, tzinfo=UTC)).isoformat() == "2026-12-01T00:00:00-03:00"

    def test_a_bad_refill_setting_names_its_key(self):
        """refill.every and refill.timezone are validated at start-up."""
        with pytest.raises(SettingsError, match=r"refill\.every"):
            settings_from_mapping({"refill": {"every": "fortnight", "amount": 5}}, {})
        with pytest.raises(SettingsError, match=r"refill\.timezone"):
            settings_from_mapping({"refill": {"every": "day", "amount": 5, "timezone": "Mars/Olympus"}}, {})
