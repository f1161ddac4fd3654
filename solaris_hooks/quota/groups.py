"""Which group prices a call (settings.groups), without a round trip to ask.

The account holds the user's group: an admin's choice, else the last one a call's header
named (settings.group_header, only from keys allowed to name end users: a personal key must
not choose its own tier). This process remembers what the ledger last said of each user and
prices a call for the group that follows from it and the call's header; the reserve checks
that group in the same statement (solaris.reserve_in_group), so a stale guess costs one more
round trip (outcome 'regroup'), never a call priced for the wrong group. A process that
reserves from a lease learns of a change from the next batch, which gives the lease up.
"""

from __future__ import annotations

from collections import OrderedDict

from solaris_hooks.quota.identity import header_value, key_may_name_users
from solaris_hooks.settings import Settings
from solaris_hooks.settings.groups import group_name

# Users whose group is remembered; the oldest are forgotten past it (their next call may
# then cost a 'regroup').
users_remembered_max = 100_000


def header_group(data: dict, key: object, settings: Settings) -> str | None:
    """The group the call's header names, if a configured one and the key may name it."""
    if not settings.group_header or not settings.groups:
        return None
    headers = (data.get("proxy_server_request") or {}).get("headers")
    named = group_name(header_value(headers, settings.group_header.lower()))
    if named is None or named not in settings.groups:
        return None
    token = getattr(key, "token", None)
    return named if key_may_name_users(token, getattr(key, "key_alias", None), settings.trusted_keys) else None


class UserGroups:
    """What this process last learned of each user's group, and each group's settings."""

    def __init__(self) -> None:
        # user id -> (group, whether an admin chose it)
        self._by_user: OrderedDict[str, tuple[str | None, bool]] = OrderedDict()
        self._settings: Settings | None = None
        self._by_group: dict[str | None, Settings] = {}
        # The groups' alert thresholds as last written to the database (quota.sweeper.sync_groups).
        self.synced: dict[str, list[float] | None] | None = None

    def assumed(self, user_id: str, from_header: str | None) -> str | None:
        """The group to price a call for: an admin's choice, else the header's, else the account's."""
        group, by_admin = self._by_user.get(user_id, (None, False))
        return group if by_admin else from_header or group

    def learned(self, user_id: str, group: str | None, source: str | None) -> None:
        self._by_user.pop(user_id, None)
        self._by_user[user_id] = (group, source == "admin")
        if len(self._by_user) > users_remembered_max:
            self._by_user.popitem(last=False)

    def settings_for(self, settings: Settings, group: str | None) -> Settings:
        """settings as they apply to the group's members (built once per group and settings)."""
        if settings is not self._settings:
            self._settings, self._by_group = settings, {}
        found = self._by_group.get(group)
        if found is None:
            found = self._by_group[group] = settings.for_group(group)
        return found
