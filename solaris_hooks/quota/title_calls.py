"""LibreChat's conversation-title call, recognised by the whole shape of its request.

With `title_calls: free` such a call is charged 0 tokens, so recognising one is a way to
get tokens for free: a phrase anywhere in a message is not enough. A title call is what
LibreChat (and its `@librechat/agents` package) sends and nothing more: one user message
that starts with a title prompt, no other input parts, one choice, no tools except the
structured-output schema of the title itself, and a short prompt. Its completion is then
capped at `title_completion_tokens_max`, and the ledger refuses it to a used-up user.
"""

from __future__ import annotations

import re

from solaris_hooks.quota.estimate import set_completion_bound
from solaris_hooks.settings import Settings

# Call types of a chat completion: LibreChat's title calls are always one.
_chat_call_types = frozenset({"acompletion", "completion"})
# What the structured title asks the model to fill in (@librechat/agents utils/title).
_title_schema_properties = frozenset({"title", "language"})
# Request fields a title request may carry besides its message: sampling, and what the proxy
# itself adds (`secret_fields`, `metadata`, `litellm_*`, `proxy_server_request`). Anything else
# (audio, prompts, extra inputs) makes it an ordinary, charged call.
_allowed_fields = frozenset(
    {
        "model",
        "messages",
        "user",
        "stream",
        "stream_options",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "presence_penalty",
        "frequency_penalty",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "metadata",
        "secret_fields",
    }
)


def _title_schema(schema: object) -> bool:
    if not isinstance(schema, dict):
        return False
    properties = schema.get("properties")
    return (
        isinstance(properties, dict)
        and bool(properties)
        and set(properties) <= _title_schema_properties
        and all(isinstance(value, dict) and value.get("type") == "string" for value in properties.values())
    )


def _only_the_title_schema(data: dict) -> bool:
    """Tools and response formats, if any, ask for the title and nothing else."""
    tools = data.get("tools")
    if tools is not None:
        if not isinstance(tools, list) or len(tools) != 1 or not isinstance(tools[0], dict):
            return False
        function = tools[0].get("function")
        if not isinstance(function, dict) or not _title_schema(function.get("parameters")):
            return False
    response_format = data.get("response_format")
    if response_format is not None:
        if not isinstance(response_format, dict):
            return False
        if response_format.get("type") == "json_schema":
            json_schema = response_format.get("json_schema")
            if not isinstance(json_schema, dict) or not _title_schema(json_schema.get("schema")):
                return False
        elif response_format.get("type") not in ("text", "json_object"):
            return False
    return True


def _prompt_text(messages: object) -> str | None:
    """The text of the single user message, or None when the request is shaped otherwise."""
    if not isinstance(messages, list) or len(messages) != 1 or not isinstance(messages[0], dict):
        return None
    message = messages[0]
    if message.get("role") != "user" or set(message) - {"role", "content"}:
        return None
    content = message.get("content")
    if isinstance(content, list):
        if len(content) != 1 or not isinstance(content[0], dict) or content[0].get("type") != "text":
            return None
        content = content[0].get("text")
    return content if isinstance(content, str) else None


def is_title_call(data: dict, call_type: str, settings: Settings) -> bool:
    """Whether the request has the whole shape of LibreChat's title request (see module doc)."""
    if call_type not in _chat_call_types or not settings.title_prompt_patterns:
        return False
    if set(data) - _allowed_fields - {key for key in data if key.startswith(("litellm_", "proxy_server_"))}:
        return False
    if data.get("n") not in (None, 1) or not _only_the_title_schema(data):
        return False
    text = _prompt_text(data.get("messages"))
    if text is None:
        return False
    return any(re.match(pattern, text.lstrip(), re.IGNORECASE) for pattern in settings.title_prompt_patterns)


def cap_title_completion(data: dict, settings: Settings) -> None:
    """Bound a title's answer: a title is a few words, whatever the request asked for."""
    cap = settings.title_completion_tokens_max
    for key in ("max_tokens", "max_completion_tokens"):
        value = data.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value < cap:
            cap = value
    set_completion_bound(data, cap)
