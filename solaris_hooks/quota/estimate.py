"""How many platform tokens a call may cost before it runs: a request read into its Plan.

A call is reserved for its worst case: every input part it is billed for (`input_parts`),
times the model's prompt margin, plus the largest completion each of its choices may
produce, per the route's completion limit (`max_tokens`, `max_completion_tokens`,
`max_output_tokens`). Priced routes (images, speech, transcriptions) cost their price
(`prices`); routes without a rule are refused (`route_rules`). How a plan is bounded to
what was reserved: plan.py.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from solaris_hooks.exceptions import CallUnbounded
from solaris_hooks.quota import prices
from solaris_hooks.quota.input_parts import InputCounter, anthropic_tool_prompt_tokens
from solaris_hooks.quota.plan import Plan
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
