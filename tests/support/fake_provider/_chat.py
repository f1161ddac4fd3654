"""OpenAI's `/v1/chat/completions` and legacy `/v1/completions`, billed as OpenAI bills them."""

from __future__ import annotations

import json
import time
import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.support.fake_provider._http import (
    dropped,
    event_stream,
    failure,
    preamble,
    receive,
    sse,
    words,
)
from tests.support.fake_provider._media import audio_tokens, decode_base64, openai_image_tokens
from tests.support.fake_provider._tokens import (
    count_definitions,
    count_text,
    count_tool_choice,
    reply_priming_tokens,
    scaled,
    tokens_per_message,
    tokens_per_name,
)

# OpenAI accepts n up to 128; more is refused, as there.
choices_max = 128


def count_prompt_tokens(messages: list[dict], fast: bool = False) -> int:
    """Chat messages counted as OpenAI does: 3 per message, each string field, a name 1 more,
    every content part (text, images by the tile formula, audio by duration), 3 to prime the reply.

    fast: an estimate from the text's length instead, for benchmarks, where the fake must
    cost the machine as little as possible and exact counts do not matter.
    """
    if fast:
        return 3 + sum(4 + len(str(message.get("content") or "")) // 4 for message in messages)
    tokens = reply_priming_tokens
    for message in messages:
        if not isinstance(message, dict):
            continue
        tokens += tokens_per_message
        for key, value in message.items():
            if isinstance(value, str):
                tokens += count_text(value) + (tokens_per_name if key == "name" else 0)
            elif key == "content" and isinstance(value, list):
                tokens += sum(count_content_part(part) for part in value)
            elif key == "tool_calls" and isinstance(value, list):
                tokens += sum(
                    count_text(json.dumps(call.get("function") or call)) for call in value if isinstance(call, dict)
                )
            elif key == "function_call" and isinstance(value, dict):
                tokens += count_text(json.dumps(value))
    return tokens


def count_content_part(part: object) -> int:
    """One part of a message's content list."""
    if isinstance(part, str):
        return count_text(part)
    if not isinstance(part, dict):
        return 0
    kind = part.get("type")
    if kind == "text":
        return count_text(str(part.get("text") or ""))
    if kind == "image_url":
        image = part.get("image_url")
        if isinstance(image, str):
            return openai_image_tokens(image, None)
        image = image if isinstance(image, dict) else {}
        return openai_image_tokens(str(image.get("url") or ""), image.get("detail"))
    if kind == "input_audio":
        audio = part.get("input_audio") if isinstance(part.get("input_audio"), dict) else {}
        return audio_tokens(decode_base64(str(audio.get("data") or "")) or b"")
    if kind == "refusal":
        return count_text(str(part.get("refusal") or ""))
    # Files and anything newer: their JSON, base64 included, which counts more than the text inside.
    return count_text(json.dumps(part))


def chat_prompt_tokens(body: dict, fast: bool = False) -> int:
    """Everything a chat call bills as input: messages, tool and function definitions, the
    response format's schema, and a named tool choice."""
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    tokens = count_prompt_tokens(messages, fast)
    for key in ("tools", "functions"):
        if isinstance(body.get(key), list):
            tokens += count_definitions(body[key], fast)
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") not in (None, "text"):
        tokens += count_definitions([response_format.get("json_schema") or response_format], fast)
    tokens += count_tool_choice(body.get("tool_choice"), fast) + count_tool_choice(body.get("function_call"), fast)
    return tokens


def _usage(prompt_tokens: int, completion_tokens: int, reasoning_tokens: int = 0) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _choices(body: dict, name: str = "n", default: int | None = 1) -> int | Response:
    value = body.get(name, default)
    if value is None:
        value = default
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= choices_max:
        return failure(400, f"{name} must be an integer from 1 to {choices_max}")
    return value


def _finish_reason(tokens: int, limit: object) -> str:
    return "length" if isinstance(limit, int) and tokens >= limit else "stop"


async def chat_completions(request: Request) -> Response:
    call = await receive(request)
    if refused := await preamble(call):
        return refused
    choices = _choices(call.body)
    if isinstance(choices, Response):
        return choices
    stream = bool(call.body.get("stream"))
    if call.die_after is not None and not stream:
        return dropped(request)
    limit = call.body.get("max_completion_tokens") or call.body.get("max_tokens")
    per_choice = call.completion_tokens(limit)
    prompt_tokens = scaled(chat_prompt_tokens(call.body, call.fast), call.prompt_scale)
    # OpenAI's reasoning models bill hidden reasoning as completion tokens, within the same
    # completion limit as the visible answer, and never send it.
    bounded = isinstance(limit, int) and not isinstance(limit, bool) and limit > 0
    reasoning = min(call.reasoning_tokens, limit - per_choice) if bounded else call.reasoning_tokens
    usage = _usage(prompt_tokens, (per_choice + reasoning) * choices, reasoning * choices)
    finish = _finish_reason(per_choice, limit)
    call_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    if not stream:
        answer = {
            "id": call_id,
            "object": "chat.completion",
            "created": created,
            "model": call.model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": index,
                    "message": {"role": "assistant", "content": words(per_choice), "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish,
                }
                for index in range(choices)
            ],
        }
        if not call.no_usage:
            answer["usage"] = usage
        return JSONResponse(answer)

    include_usage = bool((call.body.get("stream_options") or {}).get("include_usage")) and not call.no_usage

    def chunk(index: int | None, delta: dict, finish_reason: str | None = None, final_usage: dict | None = None) -> str:
        payload: dict = {
            "id": call_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": call.model,
            "system_fingerprint": "fp_fake",
            "choices": []
            if index is None
            else [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if include_usage:
            payload["usage"] = final_usage  # null on every chunk but the last, as OpenAI sends it
        return sse(payload)

    def events():
        for index in range(choices):
            yield chunk(index, {"role": "assistant", "content": "", "refusal": None}), False
        for position in range(per_choice):
            for index in range(choices):
                yield chunk(index, {"content": _stream_word(position)}), True
        for index in range(choices):
            yield chunk(index, {}, finish), False
        if include_usage:
            yield chunk(None, {}, final_usage=usage), False
        yield "data: [DONE]\n\n", False

    return event_stream(call, events())


def _prompts(prompt: object) -> list[str | list[int]]:
    """The legacy `prompt`: a string, a list of strings, a token array, or a list of token arrays."""
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(item, int) for item in prompt):
        return [prompt]
    if isinstance(prompt, list):
        return [item if isinstance(item, (str, list)) else str(item) for item in prompt] or [""]
    return [""]


def _count_prompt(prompt: str | list[int], fast: bool) -> int:
    return len(prompt) if isinstance(prompt, list) else count_text(prompt, fast)


async def completions(request: Request) -> Response:
    """Legacy completions: every prompt of a batch gets n choices and bills best_of completions."""
    call = await receive(request)
    if refused := await preamble(call):
        return refused
    choices = _choices(call.body)
    if isinstance(choices, Response):
        return choices
    generated = _choices(call.body, "best_of", choices)
    if isinstance(generated, Response):
        return generated
    if generated < choices:
        return failure(400, "best_of must be greater than or equal to n")
    stream = bool(call.body.get("stream"))
    if stream and generated > 1:
        return failure(400, "best_of cannot be used with stream")
    if call.die_after is not None and not stream:
        return dropped(request)
    prompts = _prompts(call.body.get("prompt"))
    limit = call.body.get("max_tokens", 16)  # the legacy API's documented default
    per_choice = call.completion_tokens(limit)
    prompt_tokens = sum(_count_prompt(prompt, call.fast) for prompt in prompts)
    prompt_tokens += count_text(str(call.body.get("suffix") or ""), call.fast)
    usage = _usage(scaled(prompt_tokens, call.prompt_scale), per_choice * generated * len(prompts))
    del usage["completion_tokens_details"], usage["prompt_tokens_details"]
    finish = _finish_reason(per_choice, limit)
    call_id, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    total_choices = choices * len(prompts)

    def payload(choice_list: list[dict]) -> dict:
        return {
            "id": call_id,
            "object": "text_completion",
            "created": created,
            "model": call.model,
            "system_fingerprint": "fp_fake",
            "choices": choice_list,
        }

    if not stream:
        answer = payload(
            [
                {"text": words(per_choice), "index": index, "logprobs": None, "finish_reason": finish}
                for index in range(total_choices)
            ]
        )
        if not call.no_usage:
            answer["usage"] = usage
        return JSONResponse(answer)

    include_usage = bool((call.body.get("stream_options") or {}).get("include_usage")) and not call.no_usage

    def events():
        for position in range(per_choice):
            for index in range(total_choices):
                text = "ok" if position == 0 else " ok"
                yield sse(payload([{"text": text, "index": index, "logprobs": None, "finish_reason": None}])), True
        for index in range(total_choices):
            yield sse(payload([{"text": "", "index": index, "logprobs": None, "finish_reason": finish}])), False
        if include_usage:
            yield sse({**payload([]), "usage": usage}), False
        yield "data: [DONE]\n\n", False

    return event_stream(call, events())


def _stream_word(position: int) -> str:
    """One cl100k token per content event; every 50th differs, since LiteLLM breaks a stream of
    100 identical chunks (REPEATED_STREAMING_CHUNK_LIMIT) and real answers never repeat so."""
    if position == 0:
        return "ok"
    return " no" if position % 50 == 0 else " ok"
