"""How many platform tokens a call may cost before it runs, and how to bound it.

Platform tokens = ceil(raw tokens × factor). A call is reserved for its worst case:
the prompt plus the largest completion it may produce. When the user has less left,
the completion bound (`max_tokens`) is lowered until the worst case fits.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

# Call types that produce no completion tokens.
_input_only_call_types = frozenset({"embedding", "aembedding", "moderation", "amoderation"})


def platform_tokens(raw_tokens: int, factor: float) -> int:
    # round() first drops float noise: 0.1 × 30 is 3.0000000000000004, which must cost 3.
    return math.ceil(round(raw_tokens * factor, 9))


def completion_limit(budget_tokens: int, prompt_tokens: int, factor: float) -> int:
    """The largest completion (raw tokens) whose worst case fits in budget_tokens."""
    limit = max(0, math.floor(budget_tokens / factor) - prompt_tokens)
    while limit > 0 and platform_tokens(prompt_tokens + limit, factor) > budget_tokens:
        limit -= 1
    return limit


@dataclass(frozen=True)
class Plan:
    prompt_tokens: int  # raw, as counted before the call
    completion_tokens_max: int  # raw; 0 for calls that produce no completion
    factor: float

    @property
    def wanted_tokens(self) -> int:
        return platform_tokens(self.prompt_tokens + self.completion_tokens_max, self.factor)

    @property
    def minimum_tokens(self) -> int:
        """Below this the call cannot even produce one token, so it is refused."""
        return platform_tokens(self.prompt_tokens + min(1, self.completion_tokens_max), self.factor)

    def completion_bound(self, reserved_tokens: int) -> int:
        """The `max_tokens` to send upstream given what was actually reserved."""
        if reserved_tokens >= self.wanted_tokens:
            return self.completion_tokens_max
        return min(self.completion_tokens_max, completion_limit(reserved_tokens, self.prompt_tokens, self.factor))


def requested_completion_tokens(data: dict) -> int | None:
    values = [data.get(key) for key in ("max_completion_tokens", "max_tokens")]
    numbers = [int(value) for value in values if isinstance(value, (int, float)) and not isinstance(value, bool)]
    return min(numbers) if numbers else None


def set_completion_bound(data: dict, bound: int) -> None:
    """Write the bound into whichever field the client used (max_tokens when neither)."""
    used = [key for key in ("max_completion_tokens", "max_tokens") if data.get(key) is not None]
    for key in used or ["max_tokens"]:
        data[key] = bound


def count_prompt_tokens(data: dict) -> int:
    import litellm  # the proxy has it loaded already; imported here to keep this module light

    model = str(data.get("model") or "")
    messages = data.get("messages")
    if isinstance(messages, list) and messages:
        return int(litellm.token_counter(model=model, messages=messages))
    text = data.get("prompt", data.get("input", ""))
    if not isinstance(text, str):
        text = json.dumps(text, ensure_ascii=False, default=str)
    return int(litellm.token_counter(model=model, text=text)) if text else 0


def plan_call(data: dict, call_type: str, factor: float, completion_tokens_default: int) -> Plan:
    prompt_tokens = count_prompt_tokens(data)
    if call_type in _input_only_call_types:
        return Plan(prompt_tokens, 0, factor)
    requested = requested_completion_tokens(data)
    completion_max = completion_tokens_default if requested is None or requested <= 0 else requested
    return Plan(prompt_tokens, completion_max, factor)
