"""What a served call used: the provider's usage when it reports one, else our own count.

Every served call is charged (docs/architecture.md invariant 8). Providers name their counts
differently (chat: prompt/completion tokens; Responses and Anthropic: input/output
tokens), and some report none at all: then the call is charged our estimate of its prompt
plus our count of the text it delivered, never zero.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Usage:
    raw_tokens: int
    prompt_tokens: int | None  # as the provider counted it; None when it did not say


def _read(usage: object, *names: str) -> int | None:
    for name in names:
        value = usage.get(name) if isinstance(usage, dict) else getattr(usage, name, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(value)
    return None


def reported_usage(response_obj: object) -> Usage | None:
    """The provider's usage block, or None when the response carries none."""
    usage = getattr(response_obj, "usage", None)
    if usage is None and isinstance(response_obj, dict):
        usage = response_obj.get("usage")
    if usage is None:
        return None
    prompt = _read(usage, "prompt_tokens", "input_tokens")
    completion = _read(usage, "completion_tokens", "output_tokens")
    total = max(_read(usage, "total_tokens") or 0, (prompt or 0) + (completion or 0))
    if total <= 0:
        # LiteLLM fills in zeros when a provider sent no usage: a served call is never free.
        return None
    return Usage(raw_tokens=total, prompt_tokens=prompt or None)


def _field(item: object, name: str) -> Any:
    """A field of a response part: a dict, or one of LiteLLM's objects, shaped per provider."""
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


def _function_text(function: object) -> str:
    return str(_field(function, "name") or "") + str(_field(function, "arguments") or "")


def _choices_text(choices: Any, message_key: str) -> list[str]:
    """What chat choices carry in their message (or streamed delta): content, tool and function
    calls, and the text of legacy completions."""
    parts: list[str] = []
    for choice in choices or []:
        message = _field(choice, message_key) or {}
        content = _field(message, "content")
        if isinstance(content, str):
            parts.append(content)
        for call in _field(message, "tool_calls") or []:
            parts.append(_function_text(_field(call, "function") or {}))
        function_call = _field(message, "function_call")
        if function_call:
            parts.append(_function_text(function_call))
        text = _field(choice, "text")  # legacy completions
        if isinstance(text, str):
            parts.append(text)
    return parts


def delivered_text(response_obj: object) -> str:
    """The text a non-streamed response delivered: contents, tool calls, output items."""
    parts = _choices_text(_field(response_obj, "choices"), "message")
    for item in _field(response_obj, "output") or []:  # Responses API
        for content in _field(item, "content") or []:
            text = _field(content, "text")
            if isinstance(text, str):
                parts.append(text)
        arguments = _field(item, "arguments")
        if isinstance(arguments, str):
            parts.append(arguments)
    for block in _field(response_obj, "content") or []:  # Anthropic messages
        text = _field(block, "text")
        if isinstance(text, str):
            parts.append(text)
        tool_input = _field(block, "input")
        if tool_input is not None:
            parts.append(json.dumps(tool_input, ensure_ascii=False, default=str))
    return "".join(parts)


def chunk_text(chunk: object) -> str:
    """The text one streamed chunk delivers (chat deltas, Responses and Anthropic events)."""
    parts = _choices_text(_field(chunk, "choices"), "delta")
    delta = _field(chunk, "delta")  # Responses `response.*.delta` events, Anthropic content_block_delta
    if isinstance(delta, str):
        parts.append(delta)
    elif delta is not None:
        for name in ("text", "partial_json"):
            value = _field(delta, name)
            if isinstance(value, str):
                parts.append(value)
    if isinstance(chunk, (bytes, bytearray, str)) and not parts:
        parts.append(_sse_text(chunk if isinstance(chunk, str) else bytes(chunk).decode("utf-8", errors="replace")))
    return "".join(parts)


def _sse_text(raw: str) -> str:
    """The text in server-sent events a route relays as raw bytes (`data: {json}` lines)."""
    parts: list[str] = []
    for line in raw.splitlines():
        if not line.startswith("data:"):
            continue
        try:
            event = json.loads(line[5:].strip())
        except ValueError:
            continue
        if isinstance(event, dict):
            parts.append(chunk_text(event))
    return "".join(parts)
