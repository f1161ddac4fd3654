"""Anthropic's `/v1/messages`, which LiteLLM calls for `anthropic/…` models at `{api_base}/v1/messages`."""

from __future__ import annotations

import json
import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.support.fake_provider._http import dropped, event_stream, failure, preamble, receive, sse, words
from tests.support.fake_provider._media import anthropic_image_tokens
from tests.support.fake_provider._tokens import count_definitions, count_text, scaled, tokens_per_message

# Anthropic, "Tool use > Pricing": tools bring a system prompt of their own, billed as input
# (Claude Opus 4 / Sonnet 4 / Sonnet 3.7: 346 tokens with tool_choice auto or none, 313 with any or tool).
tool_system_prompt_tokens = {"auto": 346, "none": 346, "any": 313, "tool": 313}


def _count_block(block: object, fast: bool) -> int:
    if isinstance(block, str):
        return count_text(block, fast)
    if not isinstance(block, dict):
        return 0
    kind = block.get("type")
    if kind == "text":
        return count_text(str(block.get("text") or ""), fast)
    if kind == "image":
        return anthropic_image_tokens(block.get("source") if isinstance(block.get("source"), dict) else {})
    if kind == "tool_use":
        return count_text(str(block.get("name") or ""), fast) + count_text(json.dumps(block.get("input")), fast)
    if kind == "tool_result":
        content = block.get("content")
        if isinstance(content, list):
            return sum(_count_block(part, fast) for part in content)
        return count_text(str(content or ""), fast)
    return count_text(json.dumps(block), fast)  # documents and anything newer: their JSON


def _count_content(content: object, fast: bool) -> int:
    if isinstance(content, list):
        return sum(_count_block(block, fast) for block in content)
    return count_text(str(content or ""), fast)


def input_tokens(body: dict, fast: bool = False) -> int:
    """The top-level system, every message block, tool definitions and the tool system prompt.

    Anthropic does not publish its tokenizer: text is counted with cl100k and 3 tokens per
    message; `[[prompt_scale=X]]` plays a tokenizer that counts more.
    """
    tokens = _count_content(body.get("system"), fast)
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    for message in messages:
        if isinstance(message, dict):
            tokens += tokens_per_message + _count_content(message.get("content"), fast)
    tools = body.get("tools") if isinstance(body.get("tools"), list) else []
    if tools:
        choice = body.get("tool_choice") if isinstance(body.get("tool_choice"), dict) else {}
        tokens += count_definitions(tools, fast) + tool_system_prompt_tokens.get(str(choice.get("type", "auto")), 346)
    return tokens


async def messages(request: Request) -> Response:
    call = await receive(request)
    if refused := await preamble(call, anthropic=True):
        return refused
    limit = call.body.get("max_tokens")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        return failure(400, "max_tokens: Field required (a positive integer)", anthropic=True)
    stream = bool(call.body.get("stream"))
    if call.die_after is not None and not stream:
        return dropped(request)
    output_count = call.completion_tokens(limit)
    input_count = scaled(input_tokens(call.body, call.fast), call.prompt_scale)
    stop_reason = "max_tokens" if output_count >= limit else "end_turn"
    message_id, text = f"msg_{uuid.uuid4().hex[:24]}", words(output_count)

    def usage(output: int) -> dict:
        return {
            "input_tokens": input_count,
            "output_tokens": output,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }

    def message(content: list[dict], reason: str | None, output: int) -> dict:
        body = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": call.model,
            "content": content,
            "stop_reason": reason,
            "stop_sequence": None,
        }
        if not call.no_usage:
            body["usage"] = usage(output)
        return body

    if not stream:
        return JSONResponse(message([{"type": "text", "text": text}], stop_reason, output_count))

    def events():
        def event(kind: str, **fields: object) -> str:
            return sse({"type": kind, **fields}, event=kind)

        yield event("message_start", message=message([], None, 1)), False
        yield event("content_block_start", index=0, content_block={"type": "text", "text": ""}), False
        yield event("ping"), False
        for position in range(output_count):
            yield (
                event(
                    "content_block_delta",
                    index=0,
                    delta={"type": "text_delta", "text": "ok" if position == 0 else " ok"},
                ),
                True,
            )
        yield event("content_block_stop", index=0), False
        delta: dict = {"delta": {"stop_reason": stop_reason, "stop_sequence": None}}
        if not call.no_usage:
            delta["usage"] = {"output_tokens": output_count}
        yield event("message_delta", **delta), False
        yield event("message_stop"), False

    return event_stream(call, events())
