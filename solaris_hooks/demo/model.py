"""An offline demo model, so the proxy answers out of the box with no API key at all.

A fresh install has no provider key yet, but the portal, the quotas and the usage
reports still need something to talk to. ``demo_llm`` answers locally and instantly,
always the same way for the same question, in Portuguese. Its ``usage`` counts are real
cl100k token counts (the tokenizer litellm ships with, so nothing is downloaded), and it
honours ``max_tokens``, so quota accounting and clamping behave as with a real model.

Wire it in ``litellm-config.yaml``::

    model_list:
      - model_name: solaris-demo
        litellm_params:
          model: solaris/demo
    litellm_settings:
      custom_provider_map:
        - {provider: solaris, custom_handler: solaris_hooks.demo.model.demo_llm}
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Literal

import litellm
from litellm import CustomLLM
from litellm.types.utils import ChatCompletionUsageBlock, GenericStreamingChunk, ModelResponse

# cl100k, bundled with litellm and its fallback for unknown models: counts match what the
# proxy itself would estimate, and nothing is downloaded.
_TOKENIZER_MODEL = "gpt-3.5-turbo"
_TOKENS_PER_CHUNK = 4
_ECHO_CHARS = 40


def _last_user_text(messages: list) -> str:
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content") or ""
        if isinstance(content, list):  # multimodal parts: only the text is worth echoing
            content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
        return " ".join(str(content).split())
    return ""


def _reply(messages: list) -> str:
    said = _last_user_text(messages)
    echo = said if len(said) <= _ECHO_CHARS else said[: _ECHO_CHARS - 1].rstrip() + "…"
    return (
        f"Olá! Sou o modelo de demonstração do IA SOLARIS. Você escreveu: «{echo}». "
        "Respondo localmente, sem chave de API. Configure um modelo real para respostas de verdade."
    )


def _answer(
    messages: list, optional_params: dict
) -> tuple[list[int], Literal["length", "stop"], ChatCompletionUsageBlock]:
    """Token ids of the answer, its finish reason, and the usage block."""
    ids = litellm.encode(model=_TOKENIZER_MODEL, text=_reply(messages))
    limit = optional_params.get("max_completion_tokens", optional_params.get("max_tokens"))
    finish_reason: Literal["length", "stop"] = "length" if limit is not None and len(ids) > limit else "stop"
    ids = ids[:limit] if limit is not None else ids
    prompt_tokens = litellm.token_counter(model=_TOKENIZER_MODEL, messages=messages)
    usage = ChatCompletionUsageBlock(
        prompt_tokens=prompt_tokens,
        completion_tokens=len(ids),
        total_tokens=prompt_tokens + len(ids),
    )
    return ids, finish_reason, usage


def _chunks(messages: list, optional_params: dict) -> Iterator[GenericStreamingChunk]:
    ids, finish_reason, usage = _answer(messages, optional_params)
    full = litellm.decode(model=_TOKENIZER_MODEL, tokens=ids)
    sent = ""
    for end in range(_TOKENS_PER_CHUNK, len(ids) + _TOKENS_PER_CHUNK, _TOKENS_PER_CHUNK):
        text = litellm.decode(model=_TOKENIZER_MODEL, tokens=ids[:end])
        # A cut inside a multi-byte character decodes to U+FFFD: wait for the rest of it.
        if end < len(ids) and not full.startswith(text):
            continue
        yield GenericStreamingChunk(
            text=text[len(sent) :], is_finished=False, finish_reason="", usage=None, index=0, tool_use=None
        )
        sent = text
    # The usage rides on the last chunk: that is where LiteLLM's stream wrapper reads it.
    yield GenericStreamingChunk(
        text="", is_finished=True, finish_reason=finish_reason, usage=usage, index=0, tool_use=None
    )


class DemoLLM(CustomLLM):
    """Answers every chat completion locally; see the module docstring."""

    def completion(self, *args, **kwargs) -> ModelResponse:
        ids, finish_reason, usage = _answer(kwargs["messages"], kwargs.get("optional_params") or {})
        response: ModelResponse = kwargs["model_response"]
        response.model = kwargs["model"]
        response.choices[0].message.content = litellm.decode(model=_TOKENIZER_MODEL, tokens=ids)
        response.choices[0].finish_reason = finish_reason
        response.usage = litellm.Usage(**usage)  # type: ignore[attr-defined]
        return response

    async def acompletion(self, *args, **kwargs) -> ModelResponse:
        return self.completion(*args, **kwargs)

    def streaming(self, *args, **kwargs) -> Iterator[GenericStreamingChunk]:
        return _chunks(kwargs["messages"], kwargs.get("optional_params") or {})

    # LiteLLM iterates what astreaming returns without awaiting it (custom_chat_llm_router in
    # litellm/llms/custom_llm.py, then CustomStreamWrapper): an async generator, not the
    # coroutine the base class declares.
    async def astreaming(self, *args, **kwargs) -> AsyncIterator[GenericStreamingChunk]:  # type: ignore[override]
        for chunk in _chunks(kwargs["messages"], kwargs.get("optional_params") or {}):
            yield chunk


demo_llm = DemoLLM()
