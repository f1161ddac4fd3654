"""Groups: each group's settings over the top-level ones, and which group prices a call."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from solaris_hooks.db.refill import RefillRule, check_interval_s, idle_check_interval_s, refill_rules
from solaris_hooks.quota.groups import UserGroups, header_group
from solaris_hooks.quota.identity import master_key_token
from solaris_hooks.settings import Settings
from solaris_hooks.settings.groups import group_name
from solaris_hooks.settings.refill import RefillSettings

settings = Settings(
    conversion_factor=0.376,
    model_factors={"gpt-4o": 1.0},
    groups={
        "students": {"default_tokens": 500, "conversion_factor": 0.5, "requests_per_minute": 5},
        "staff": {"model_factors": {"gpt-4o": 2.0}, "alert_thresholds": [0.9, 0.5, 0.9]},
    },
    group_header="x-solaris-group",
    trusted_keys=["librechat"],
)
master = SimpleNamespace(token=master_key_token, key_alias=None)
librechat = SimpleNamespace(token="x", key_alias="librechat")
personal = SimpleNamespace(token=hashlib.sha256(b"sk-personal").hexdigest(), key_alias=None)


def call_naming(group: str) -> dict:
    return {"proxy_server_request": {"headers": {"X-Solaris-Group": group}}}


class TestGroupSettings:
    def test_a_group_replaces_the_top_level_settings_it_sets_and_keeps_the_rest(self):
        students = settings.for_group("students")
        assert (students.default_tokens_per_user, students.requests_per_minute) == (500, 5)
        assert students.alert_thresholds == settings.alert_thresholds

    def test_a_groups_conversion_factor_prices_every_model_it_does_not_name(self):
        assert settings.for_group("students").factor_for("gpt-4o") == 0.5
        assert settings.for_group("students").factor_for("other") == 0.5

    def test_a_groups_model_factors_come_first_then_the_top_level_ones(self):
        staff = settings.for_group("staff")
        assert (staff.factor_for("gpt-4o"), staff.factor_for("other")) == (2.0, 0.376)
        assert staff.alert_thresholds == [0.5, 0.9]

    def test_no_group_or_one_not_configured_is_the_top_level_settings(self):
        assert settings.for_group(None) is settings and settings.for_group("gone") is settings

    @pytest.mark.parametrize("name", ["Students", "a b", "", "x" * 65, "-lead"])
    def test_a_group_name_in_the_settings_is_lower_case_letters_digits_and_dots(self, name):
        with pytest.raises(ValidationError):
            Settings(groups={name: {}})

    def test_a_group_name_as_a_header_writes_it_is_normalised(self):
        assert group_name(" ADMIN ") == "admin"
        assert group_name("two words") is None and group_name(None) is None


class TestHeaderGroup:
    def test_a_key_allowed_to_name_users_names_a_configured_group(self):
        assert header_group(call_naming("STUDENTS"), master, settings) == "students"
        assert header_group(call_naming("staff"), librechat, settings) == "staff"

    def test_a_personal_key_cannot_choose_its_own_group(self):
        assert header_group(call_naming("staff"), personal, settings) is None

    def test_a_group_not_configured_is_no_group(self):
        assert header_group(call_naming("interns"), master, settings) is None

    def test_without_a_group_header_setting_the_header_is_not_read(self):
        assert header_group(call_naming("staff"), master, Settings(groups={"staff": {}})) is None


class TestUserGroups:
    def test_an_admins_group_wins_over_the_header(self):
        groups = UserGroups()
        groups.learned("ana", "staff", "admin")
        assert groups.assumed("ana", "students") == "staff"

    def test_the_header_wins_over_a_group_a_header_set_before(self):
        groups = UserGroups()
        groups.learned("ana", "staff", "header")
        assert groups.assumed("ana", "students") == "students"
        assert groups.assumed("ana", None) == "staff"

    def test_a_user_never_seen_is_priced_for_the_headers_group(self):
        assert UserGroups().assumed("bia", "students") == "students"
        assert UserGroups().assumed("bia", None) is None

    def test_each_groups_settings_are_built_once_per_settings(self):
        groups = UserGroups()
        assert groups.settings_for(settings, "staff") is groups.settings_for(settings, "staff")
        reloaded = settings.model_copy()
        assert groups.settings_for(reloaded, "staff") is not groups.settings_for(settings, "staff")


class TestGroupRefills:
    top_level = {"every": "month", "amount": 1000, "check_interval_s": 60}
    weekly = {"every": "week", "mode": "add", "amount": 50, "timezone": "America/Sao_Paulo", "check_interval_s": 5}
    refilled = Settings(refill=top_level, groups={"students": {"refill": weekly}, "staff": {"default_tokens": 9}})

    def test_a_groups_refill_is_its_members_rule_and_the_others_keep_the_top_level_one(self):
        assert self.refilled.for_group("students").refill == RefillSettings(**self.weekly)
        assert self.refilled.for_group("staff").refill == self.refilled.for_group(None).refill == self.refilled.refill

    def test_a_groups_refill_is_a_whole_rule_not_merged_with_the_top_level_one(self):
        students = Settings(refill=self.top_level, groups={"students": {"refill": {"every": "day", "amount": 5}}})
        assert students.for_group("students").refill == RefillSettings(every="day", amount=5)

    def test_the_refill_task_runs_the_top_level_rule_for_users_without_one_and_each_groups_own(self):
        assert refill_rules(self.refilled) == [
            RefillRule(RefillSettings(**self.top_level), None, ("students",)),
            RefillRule(RefillSettings(**self.weekly), "students", ("students",)),
        ]

    def test_groups_refill_without_a_top_level_rule(self):
        alone = Settings(groups={"students": {"refill": self.weekly}})
        assert [rule.group for rule in refill_rules(alone)] == ["students"]
        assert refill_rules(Settings(groups={"staff": {}})) == []

    def test_the_task_checks_as_often_as_its_most_frequent_rule_asks(self):
        assert check_interval_s(refill_rules(self.refilled)) == 5
        assert check_interval_s([]) == idle_check_interval_s
