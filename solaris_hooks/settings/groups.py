"""User groups: a first allowance, prices, rate limits and alert thresholds per group.

`solaris_settings.groups: {students: {default_tokens: 500, conversion_factor: 0.5}, …}`. A
user belongs to at most one group (accounts.group_name): chosen by an admin (API, CLI,
pages, CSV import), or named on each call by `group_header` from a key allowed to name end
users; an admin's choice wins. Every key of a group is optional: what a group does not set
is the top-level setting. A model's factor is the group's model_factors entry, else the
group's conversion_factor, else the top-level model_factors entry, else conversion_factor:
a group that sets only conversion_factor prices every model it does not name at that factor.

A group's `refill` is a whole rule of its own (schedule, mode, amount, time zone), not merged
with the top-level one: its members are refilled by it alone, everyone else by the top-level
`refill` (solaris_hooks.db.refill). A member moved in keeps their balance until the group's
next period (migration 0015).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from solaris_hooks.settings.refill import RefillSettings

# Lower case, so a LibreChat role (`USER`, `ADMIN`) sent in a header names the group `user`.
group_name_pattern = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
GroupName = Annotated[str, Field(pattern=rf"^{group_name_pattern.pattern}$")]
Factor = Annotated[float, Field(gt=0, le=1000)]
Threshold = Annotated[float, Field(gt=0, lt=1)]


class Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default_tokens: int | None = Field(None, ge=0, le=10**12)
    conversion_factor: Factor | None = None
    model_factors: dict[str, Factor] = Field(default_factory=dict)
    requests_per_minute: int | None = Field(None, ge=1, le=1_000_000)
    tokens_per_minute: int | None = Field(None, ge=1, le=10**12)
    alert_thresholds: list[Threshold] | None = Field(None, max_length=10)
    refill: RefillSettings | None = None

    @field_validator("alert_thresholds")
    @classmethod
    def _sorted_unique(cls, thresholds: list[float] | None) -> list[float] | None:
        return None if thresholds is None else sorted(set(thresholds))

    def overrides(self) -> dict[str, object]:
        """The top-level settings this group replaces, by their top-level names."""
        named = {
            "default_tokens_per_user": self.default_tokens,
            "conversion_factor": self.conversion_factor,
            "requests_per_minute": self.requests_per_minute,
            "tokens_per_minute": self.tokens_per_minute,
            "alert_thresholds": self.alert_thresholds,
            "refill": self.refill,
        }
        return {name: value for name, value in named.items() if value is not None}


def group_name(text: object) -> str | None:
    """A group name as a header or a form may write it (`Students `, `ADMIN`); None when it
    cannot be one."""
    if not isinstance(text, str):
        return None
    name = text.strip().lower()
    return name if group_name_pattern.fullmatch(name) else None
