"""Token counts with OpenAI's published tokenizer, and the prompt's directives.

The tokenizer is cl100k_base, loaded from the copy LiteLLM ships (no internet here), so
a count made here equals what `litellm.token_counter` gives for plain chat messages.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path

# OpenAI's cookbook ("How to count tokens with tiktoken"): every chat message costs 3 tokens
# around its fields, a `name` one more, and every reply is primed with 3.
tokens_per_message = 3
tokens_per_name = 1
reply_priming_tokens = 3
# Tool, function and response-format definitions are rendered into the prompt with some
# framing of their own; the cookbook's num_tokens_for_tools counts 7 before and 12 after
# each function, which we round into one overhead per definition.
definition_overhead_tokens = 12

_directive_names = "tokens|fail|sleep|prompt_scale|die_after|chunk_sleep|reasoning"
_directive = re.compile(rf"\[\[({_directive_names})=([0-9.]+)\]\]|\[\[(no_usage)\]\]")
_walk_depth_max = 32


@functools.cache
def _encoding():
    import tiktoken

    spec = importlib.util.find_spec("litellm")
    if spec and spec.submodule_search_locations and "TIKTOKEN_CACHE_DIR" not in os.environ:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"
        os.environ["TIKTOKEN_CACHE_DIR"] = str(bundled)
    return tiktoken.get_encoding("cl100k_base")


def count_text(text: str, fast: bool = False) -> int:
    """Tokens of a text. fast: a length estimate, for benchmarks, where exact counts do not matter."""
    if not text:
        return 0
    if fast:
        return len(text) // 4 + 1
    return len(_encoding().encode(text, disallowed_special=()))


def count_definitions(definitions: list | None, fast: bool = False) -> int:
    """Tool, function or schema definitions: the tokens of their JSON plus a framing overhead each."""
    return sum(count_text(json.dumps(item), fast) + definition_overhead_tokens for item in definitions or [])


def count_tool_choice(tool_choice: object, fast: bool = False) -> int:
    """A named tool choice costs its JSON; "auto" costs nothing, "none"/"required" a token."""
    if tool_choice is None or tool_choice == "auto":
        return 0
    if isinstance(tool_choice, str):
        return 1
    return count_text(json.dumps(tool_choice), fast)


def scaled(tokens: int, scale: float | None) -> int:
    """A provider whose tokenizer counts more than ours reports tokens × scale, rounded up."""
    return math.ceil(tokens * scale) if scale else tokens


def _strings(value: object, depth: int = 0) -> Iterator[str]:
    if depth > _walk_depth_max:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, depth + 1)


def directives(body: object) -> dict[str, float]:
    """The `[[name=value]]` directives found in any string of a request body (the last one wins).

    Base64 data (images, audio) cannot hold `[[`, so scanning everything is safe and lets
    every route be steered the same way: messages, system, instructions, prompt, input.
    """
    found: dict[str, float] = {}
    for text in _strings(body):
        if "[[" not in text:
            continue
        for name, value, flag in _directive.findall(text):
            if flag:
                found[flag] = 1.0
                continue
            try:
                found[name] = float(value)
            except ValueError:  # "1.2.3": not a directive
                continue
    return found
