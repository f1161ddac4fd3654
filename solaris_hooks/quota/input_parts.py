"""An upper bound of the input tokens a request is billed for, counting every part of it.

Text is counted with tiktoken (quota.tokenizer; the UTF-8 length when that fails: an upper
bound for BPE tokenizers), in pieces, so no merge across pieces lowers the count, plus
the framing providers add (per message, per tool definition, the reply's priming).
Parts that are not text have per-model upper bounds from `input_part_bounds`, because we
never fetch a URL or decode a picture: images and files by a bound per part, audio by its
length (read from a WAV header, or bounded by its size). A part we cannot bound, or of a
type we do not know, refuses the call (CallUnbounded) instead of being served on hope.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

from solaris_hooks.exceptions import CallUnbounded
from solaris_hooks.quota.audio_length import audio_seconds, base64_bytes
from solaris_hooks.quota.tokenizer import count_tokens
from solaris_hooks.settings import InputPartBounds

# OpenAI's cookbook: 3 tokens around every chat message (its role is counted as text), 1
# more for a name, 3 to prime the reply. Exactly, not more: a token too many per message
# is a token of allowance no call can use (providers that count more teach the margin).
message_overhead_tokens = 3
name_overhead_tokens = 1
reply_priming_tokens = 3
# Tool, function and schema definitions are rendered into the prompt with framing of their
# own (the cookbook counts 7 before and 12 after each function); their JSON, counted as
# text, is longer than that rendering, and this covers the framing.
definition_overhead_tokens = 20
# Anthropic's tool-use system prompt, added to the input of any call with tools: its
# documented maximum (530, Claude 3 Opus; 346 for current models).
anthropic_tool_prompt_tokens = 530
# Nesting deeper than this is refused: no real request needs it, and a recursive walk
# must not be driven by the client.
nesting_depth_max = 32

# Part types whose every string is text the provider reads.
_text_types = frozenset(
    {
        "text",
        "input_text",
        "output_text",
        "refusal",
        "summary_text",
        "reasoning_text",
        "thinking",
        "redacted_thinking",
        "tool_use",
        "server_tool_use",
        "tool_result",
        "function_call",
        "function_call_output",
        "custom_tool_call",
        "custom_tool_call_output",
        "reasoning",
        "message",
        "web_search_tool_result",
        "search_result",
    }
)
_image_types = frozenset({"image_url", "input_image", "image"})
_audio_types = frozenset({"input_audio"})
_file_types = frozenset({"file", "input_file", "document"})
# Tool types a client runs itself: only their definition is billed. Hosted tools (web
# search, file search, code interpreter, MCP servers, computer use…) bring content or
# fees of their own that no estimate made before the call can bound.
_client_tool_types = frozenset({None, "function", "custom"})
# Keys of a part that carry no text the provider bills.
_unbilled_keys = frozenset({"type", "cache_control"})


class InputCounter:
    """Adds up the raw input tokens of one request, part by part."""

    def __init__(self, model: str, bounds: Mapping[str, InputPartBounds]) -> None:
        self.model = model
        self._own = bounds.get(model)
        self._default = bounds.get("*")
        self.tokens = 0

    def bound(self, name: str) -> float | None:
        for bounds in (self._own, self._default):
            value = getattr(bounds, name, None) if bounds is not None else None
            if value is not None:
                return value
        return None

    def _unbounded(self, part: str, name: str) -> CallUnbounded:
        model = self.model or "*"
        return CallUnbounded(part=part, model=self.model, setting=f"input_part_bounds: {{{model}: {{{name}: N}}}}")

    # -- text ------------------------------------------------------------------------

    def text(self, value: object) -> None:
        if value is None or value == "":
            return
        # JSON as it travels (non-ASCII escaped): never fewer tokens than the same text unescaped.
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        self.tokens += count_tokens(text, self.model)

    def definitions(self, value: object, what: str) -> None:
        """Tool, function or schema definitions: their JSON plus framing, hosted tools refused."""
        items = value if isinstance(value, list) else [value]
        for item in items:
            if item is None:
                continue
            kind = item.get("type") if isinstance(item, dict) else None
            if what == "tools" and kind not in _client_tool_types:
                raise CallUnbounded("tool_unbounded", tool=str(kind)[:100])
            self.text(item)
            self.tokens += definition_overhead_tokens

    # -- prompts made of parts -----------------------------------------------------------

    def messages(self, messages: object) -> None:
        """A list of chat messages, Anthropic messages or Responses input items."""
        items = messages if isinstance(messages, list) else [messages]
        for item in items:
            self.tokens += message_overhead_tokens
            if isinstance(item, Mapping) and item.get("name"):
                self.tokens += name_overhead_tokens
            self.part(item, 0)
        self.tokens += reply_priming_tokens

    def part(self, part: object, depth: int) -> None:
        if depth > nesting_depth_max:
            raise CallUnbounded("value_invalid", field="messages")
        if isinstance(part, list):
            for item in part:
                self.part(item, depth + 1)
            return
        if not isinstance(part, dict):
            self.text(part)
            return
        kind = part.get("type")
        if kind in _image_types:
            self._add_bound("image", "image_tokens_max")
        elif kind in _audio_types:
            self.audio(part)
        elif kind in _file_types:
            self._add_bound("file", "file_tokens_max")
        elif kind is None or kind in _text_types:
            for key, value in part.items():
                if key in _unbilled_keys:
                    continue
                if key == "audio" and isinstance(value, dict) and value.get("id"):
                    # An earlier answer's audio, by reference: the provider bills it again.
                    raise CallUnbounded("part_reference", part="audio.id")
                if key in ("content", "output") and isinstance(value, list):
                    self.part(value, depth + 1)
                else:
                    self.text(value)
        else:
            raise CallUnbounded("part_type_unknown", part=str(kind)[:100])

    def _add_bound(self, part: str, name: str) -> None:
        bound = self.bound(name)
        if bound is None:
            raise self._unbounded(part, name)
        self.tokens += int(bound)

    def audio(self, part: dict) -> None:
        rate = self.bound("audio_tokens_per_second_max")
        if rate is None:
            raise self._unbounded("input_audio", "audio_tokens_per_second_max")
        audio: dict = part["input_audio"] if isinstance(part.get("input_audio"), dict) else part
        blob = base64_bytes(audio.get("data"))
        seconds = audio_seconds(blob, self.bound("audio_bytes_per_second_min")) if blob is not None else None
        if seconds is None:
            raise self._unbounded("input_audio", "audio_bytes_per_second_min")
        self.tokens += math.ceil(seconds * float(rate))

    def prompt(self, prompt: object) -> int:
        """A legacy or embedding prompt: a string, a token array, or a list of either.
        Returns how many prompts it holds (each generates its own choices)."""
        if prompt is None or prompt == "":
            return 1
        if isinstance(prompt, str):
            self.text(prompt)
            return 1
        if isinstance(prompt, list) and all(isinstance(item, int) and not isinstance(item, bool) for item in prompt):
            self.tokens += len(prompt)
            return 1
        if isinstance(prompt, list):
            for item in prompt:
                if isinstance(item, str):
                    self.text(item)
                elif isinstance(item, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in item):
                    self.tokens += len(item)
                elif isinstance(item, dict):  # multimodal moderation input
                    self.part(item, 1)
                else:
                    raise CallUnbounded("value_invalid", field="prompt")
            return max(1, len(prompt))
        raise CallUnbounded("value_invalid", field="prompt")
