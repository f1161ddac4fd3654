"""A call's worst case in platform tokens, and how to bound the call to what was reserved.

Platform tokens = ceil(raw tokens × factor). When the user has less left than a call's
worst case, the per-choice completion limit of the route (or, for images, the number of
images) is lowered until the worst case fits, and written into the request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def platform_tokens(raw_tokens: float, factor: float) -> int:
    # round() first drops float noise: 0.1 × 30 is 3.0000000000000004, which must cost 3.
    return math.ceil(round(raw_tokens * factor, 9))


def completion_limit(budget_tokens: int, prompt_tokens: int, factor: float, choices: int = 1) -> int:
    """The largest per-choice completion (raw tokens) whose worst case fits in budget_tokens."""
    limit = max(0, (math.floor(budget_tokens / factor) - prompt_tokens) // choices)
    while limit > 0 and platform_tokens(prompt_tokens + choices * limit, factor) > budget_tokens:
        limit -= 1
    return limit


@dataclass(frozen=True)
class Plan:
    """The worst case of one call, and how to bound it to what was reserved.

    Token calls: `prompt_tokens` (our raw estimate before the margin) × `prompt_margin`,
    plus `choices` × `completion_tokens_max`, at `factor`. Priced calls: `units_max`
    units (images) of `unit_tokens` platform tokens each, at factor 1. Free calls (a
    route opened with `free`) want nothing and must not be reserved.
    """

    prompt_tokens: int  # raw, as counted before the call, before the margin
    completion_tokens_max: int  # raw, per choice; 0 for calls that produce no completion
    factor: float
    choices: int = 1
    prompt_margin: float = 1.0
    route: str = "chat"
    limit_fields: tuple[str, ...] = ("max_tokens", "max_completion_tokens")
    free: bool = False
    # Priced calls: the price of one unit and how many the request asks for.
    unit_tokens: int = 0
    units_max: int = 0
    units_field: str | None = None  # where a lowered unit count is written (images: n)
    # The success event charges settle_raw_tokens() instead of the provider's usage
    # (priced calls, and moderations, which report none).
    charged_by_plan: bool = False

    @property
    def priced(self) -> bool:
        return self.units_max > 0

    @property
    def prompt_bound_tokens(self) -> int:
        """The prompt's worst case: our estimate times the model's margin, rounded up."""
        return math.ceil(round(self.prompt_tokens * self.prompt_margin, 9))

    @property
    def wanted_tokens(self) -> int:
        if self.priced:
            return self.units_max * self.unit_tokens
        return platform_tokens(self.prompt_bound_tokens + self.choices * self.completion_tokens_max, self.factor)

    @property
    def minimum_tokens(self) -> int:
        """Below this the call cannot even produce one token (or one image), so it is refused."""
        if self.priced:
            return (1 if self.units_field else self.units_max) * self.unit_tokens
        return platform_tokens(
            self.prompt_bound_tokens + self.choices * min(1, self.completion_tokens_max), self.factor
        )

    def completion_bound(self, reserved_tokens: int) -> int:
        """The per-choice completion limit to send upstream given what was actually reserved."""
        if reserved_tokens >= self.wanted_tokens or self.factor <= 0:
            return self.completion_tokens_max
        return min(
            self.completion_tokens_max,
            completion_limit(reserved_tokens, self.prompt_bound_tokens, self.factor, self.choices),
        )

    def units_bound(self, reserved_tokens: int) -> int:
        """Priced calls: how many units fit in what was reserved."""
        if not self.units_field or self.unit_tokens <= 0:
            return self.units_max
        return min(self.units_max, reserved_tokens // self.unit_tokens)

    def write_bound(self, data: dict, reserved_tokens: int) -> None:
        """Lower the request's limits so its worst case fits in what was reserved."""
        if self.priced and self.units_field:
            data[self.units_field] = self.units_bound(reserved_tokens)
        if self.completion_tokens_max <= 0 or not self.limit_fields:
            return
        bound = self.completion_bound(reserved_tokens)
        used = [key for key in self.limit_fields if data.get(key) is not None]
        for key in used or self.limit_fields[:1]:
            data[key] = bound

    def settle_raw_tokens(self, reserved_tokens: int) -> int | None:
        """What the success event charges, in raw tokens at `factor`, when the plan decides
        it (priced calls, moderations); None: charge the provider's usage."""
        if not self.charged_by_plan:
            return None
        if self.priced:
            return self.units_bound(reserved_tokens) * self.unit_tokens
        return self.prompt_bound_tokens
