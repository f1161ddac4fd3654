"""How many platform tokens a call may cost before it runs, and how to bound it.

Platform tokens = ceil(raw tokens × factor). A call is reserved for its worst case: every
input part it is billed for (`input_parts`), times the model's prompt margin, plus the
largest completion each of its choices may produce. When the user has less left, the
per-choice completion limit of the route (`max_tokens`, `max_completion_tokens`,
`max_output_tokens`) is lowered until the worst case fits, and written into the request.
Priced routes (images, speech, transcriptions) cost their price (`prices`); routes
without a rule are refused (`route_rules`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from solaris_hooks.exceptions import CallUnbounded
from solaris_hooks.quota import prices
from solaris_hooks.quota.input_parts import InputCounter, anthropic_tool_prompt_tokens
from solaris_hooks.quota.route_rules import check_route, route_of_call_type

if TYPE_CHECKING:
    from solaris_hooks.settings import Settings

# OpenAI accepts at most 128 choices; more is refused before any arithmetic on it.
choices_max = 128
# A completion limit above this is treated as this (it is lowered to what is left anyway),
# so absurd numbers never reach float arithmetic.
completion_tokens_cap = 10**9

# Request fields whose cost no estimate made before the call can bound, per route: state
# kept at the provider (earlier responses, conversations, stored prompts), calls answered
# later (background), provider-side tools, extra_body (LiteLLM merges it into the
# provider's request over the fields we bound), and a client's own fallbacks or router
# config (another model, at another factor, may answer).
_client_routing = ("extra_body", "fallbacks", "context_window_fallbacks", "content_policy_fallbacks", "user_config")
_unbounded_fields: dict[str, tuple[str, ...]] = {
    "chat": (*_client_routing, "web_search_options"),
    "completions": _client_routing,
    "responses": (*_client_routing, "previous_response_id", "conversation", "prompt", "background"),
    "messages": (*_client_routing, "mcp_servers", "container"),
    "embeddings": _client_routing,
    "moderations": _client_routing,
    "images": _client_routing,
    "image_edits": _client_routing,
    "speech": _client_routing,
    "transcriptions": _client_routing,
}
# Where each token route carries its per-choice completion limit; the first is written
# when the request sets none.
_limit_fields: dict[str, tuple[str, ...]] = {
    "chat": ("max_tokens", "max_completion_tokens"),
    "completions": ("max_tokens",),
    "responses": ("max_output_tokens",),
    "messages": ("max_tokens",),
}


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


def _int_field(data: dict, name: str, default: int | None) -> int | None:
    """A whole number the client sent (numbers in strings too, as providers accept them)."""
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        raise CallUnbounded("value_invalid", field=name)
    if isinstance(value, str):
        value = value.strip()
        if not value.lstrip("-").isdigit() or len(value) > 20:
            raise CallUnbounded("value_invalid", field=name)
        value = int(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise CallUnbounded("value_invalid", field=name)
        value = int(value)
    if not isinstance(value, int):
        raise CallUnbounded("value_invalid", field=name)
    return value


def _choices(data: dict, name: str) -> int:
    """The number of choices asked for, written back as a plain integer."""
    choices = _int_field(data, name, None)
    if choices is None:
        return 1
    if not 1 <= choices <= choices_max:
        raise CallUnbounded("value_invalid", field=name)
    data[name] = choices
    return choices


def requested_completion_tokens(
    data: dict, fields: tuple[str, ...] = ("max_completion_tokens", "max_tokens")
) -> int | None:
    values = [_int_field(data, key, None) for key in fields]
    numbers = [value for value in values if value is not None]
    return min(min(numbers), completion_tokens_cap) if numbers else None


def set_completion_bound(data: dict, bound: int) -> None:
    """Write the bound into whichever chat field the client used (max_tokens when neither)."""
    used = [key for key in ("max_completion_tokens", "max_tokens") if data.get(key) is not None]
    for key in used or ["max_tokens"]:
        data[key] = bound


def _refuse_unbounded_fields(data: dict, route: str) -> None:
    for name in _unbounded_fields.get(route, ()):
        value = data.get(name)
        # Present is enough (web_search_options: {} turns search on), but an empty extra_body adds nothing.
        if value is not None and value is not False and not (name == "extra_body" and value in ({}, [], "")):
            raise CallUnbounded("field_unbounded", field=name)


def _count_input(route: str, data: dict, counter: InputCounter) -> int:
    """Counts the route's input parts into `counter`; returns the number of prompts."""
    prompts = 1
    if route == "chat":
        counter.messages(data.get("messages") or [])
        counter.text(data.get("prediction"))  # rejected predicted tokens are billed, at most its length
    elif route == "completions":
        prompts = counter.prompt(data.get("prompt"))
        counter.text(data.get("suffix"))
    elif route == "responses":
        instructions = data.get("instructions")
        if instructions is not None:
            counter.messages(
                instructions if isinstance(instructions, list) else [{"role": "system", "content": instructions}]
            )
        counter.messages(
            data.get("input")
            if isinstance(data.get("input"), list)
            else [{"role": "user", "content": data.get("input")}]
        )
        text = data.get("text")
        if isinstance(text, dict) and text.get("format") is not None:
            counter.definitions(text.get("format"), "response_format")
    elif route == "messages":
        system = data.get("system")
        if system is not None:
            counter.messages([{"role": "system", "content": system}])
        counter.messages(data.get("messages") or [])
        if data.get("tools"):
            counter.tokens += anthropic_tool_prompt_tokens
    elif route in ("embeddings", "moderations"):
        prompts = counter.prompt(data.get("input"))
    for key in ("tools", "functions"):
        if data.get(key):
            counter.definitions(data.get(key), "tools" if key == "tools" else "functions")
            if route != "messages":
                counter.tokens += int(counter.bound("tool_prompt_tokens") or 0)
    for key in ("tool_choice", "function_call"):
        if isinstance(data.get(key), (dict, list)):
            counter.definitions(data.get(key), key)
        elif data.get(key) is not None:
            counter.text(data.get(key))
    response_format = data.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") not in (None, "text"):
        counter.definitions(response_format, "response_format")
    return prompts


def _priced_plan(route: str, data: dict, model: str, settings: Settings) -> Plan:
    if route in ("images", "image_edits"):
        unit = math.ceil(prices.images_price(data, model, settings.model_prices))
        images = _choices(data, "n")
        return Plan(
            0,
            0,
            1.0,
            route=route,
            limit_fields=(),
            unit_tokens=unit,
            units_max=images,
            units_field="n",
            charged_by_plan=True,
        )
    total = (prices.speech_tokens if route == "speech" else prices.transcription_tokens)(
        data, model, settings.model_prices
    )
    return Plan(0, 0, 1.0, route=route, limit_fields=(), unit_tokens=total, units_max=1, charged_by_plan=True)


def plan_call(data: dict, call_type: str, factor: float, settings: Settings, prompt_margin: float = 1.0) -> Plan:
    """The worst case of a call, or a Refusal (RouteClosed, CallUnbounded) when it has none."""
    route = route_of_call_type(call_type)
    if check_route(route, settings.routes) == "free":
        return Plan(0, 0, factor, route=route, limit_fields=(), free=True)
    _refuse_unbounded_fields(data, route)
    model = str(data.get("model") or "")
    if "," in model:
        # LiteLLM sends "a,b" to every model listed (batch completion): each one bills.
        raise CallUnbounded("value_invalid", field="model")
    if route in ("images", "image_edits", "speech", "transcriptions"):
        return _priced_plan(route, data, model, settings)
    counter = InputCounter(model, settings.input_part_bounds)
    prompts = _count_input(route, data, counter)
    if route in ("embeddings", "moderations"):
        return Plan(
            counter.tokens,
            0,
            factor,
            prompt_margin=max(1.0, prompt_margin),
            route=route,
            limit_fields=(),
            charged_by_plan=route == "moderations",
        )
    choices = 1
    if route == "chat":
        choices = _choices(data, "n")
    elif route == "completions":
        # Every prompt of a batch generates best_of completions (all billed), n when best_of is unset.
        n, best_of = _choices(data, "n"), _choices(data, "best_of")
        choices = prompts * max(n, best_of)
    fields = _limit_fields[route]
    requested = requested_completion_tokens(data, fields)
    completion_max = settings.completion_tokens_default if requested is None or requested <= 0 else requested
    return Plan(
        counter.tokens,
        completion_max,
        factor,
        choices=choices,
        prompt_margin=max(1.0, prompt_margin),
        route=route,
        limit_fields=fields,
    )
