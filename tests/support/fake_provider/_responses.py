"""OpenAI's `/v1/responses`, non-streamed and streamed with the real event sequence."""

from __future__ import annotations

import json
import time
import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.support.fake_provider._chat import count_content_part
from tests.support.fake_provider._http import dropped, event_stream, preamble, receive, sse, words
from tests.support.fake_provider._media import openai_image_tokens
from tests.support.fake_provider._tokens import (
    count_definitions,
    count_text,
    count_tool_choice,
    reply_priming_tokens,
    scaled,
    tokens_per_message,
)


def _count_part(part: object, fast: bool) -> int:
    if isinstance(part, dict) and part.get("type") in ("input_text", "output_text"):
        return count_text(str(part.get("text") or ""), fast)
    if isinstance(part, dict) and part.get("type") == "input_image":
        if part.get("file_id"):
            return openai_image_tokens("", part.get("detail"))  # not ours to open: the most it can cost
        return openai_image_tokens(str(part.get("image_url") or ""), part.get("detail"))
    return count_content_part(part)


def _count_item(item: object, fast: bool) -> int:
    """One `input` item: a message (string or parts), a function call or its output, or anything else."""
    if isinstance(item, str):
        return tokens_per_message + count_text(item, fast)
    if not isinstance(item, dict):
        return 0
    kind = item.get("type", "message")
    if kind == "message":
        content = item.get("content")
        parts = [{"type": "input_text", "text": content}] if isinstance(content, str) else content or []
        return (
            tokens_per_message
            + count_text(str(item.get("role") or ""), fast)
            + sum(_count_part(part, fast) for part in parts if isinstance(parts, list))
        )
    if kind == "function_call_output":
        output = item.get("output")
        text = output if isinstance(output, str) else json.dumps(output)
        return tokens_per_message + count_text(text, fast)
    if kind == "function_call":
        return (
            tokens_per_message
            + count_text(str(item.get("name") or ""), fast)
            + count_text(str(item.get("arguments") or ""), fast)
        )
    return tokens_per_message + count_text(json.dumps(item), fast)


def input_tokens(body: dict, fast: bool = False) -> int:
    """What a Responses call bills as input: instructions, every input item, tool definitions,
    the text format's schema, a named tool choice, and the reply's priming."""
    tokens = reply_priming_tokens
    if isinstance(body.get("instructions"), str):
        tokens += tokens_per_message + count_text("developer", fast) + count_text(body["instructions"], fast)
    given = body.get("input")
    items = [{"role": "user", "content": given}] if isinstance(given, str) else given if isinstance(given, list) else []
    tokens += sum(_count_item(item, fast) for item in items)
    if isinstance(body.get("tools"), list):
        tokens += count_definitions(body["tools"], fast)
    text_format = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(text_format, dict) and text_format.get("type") not in (None, "text"):
        tokens += count_definitions([text_format], fast)
    return tokens + count_tool_choice(body.get("tool_choice"), fast)


def _usage(input_count: int, output_count: int) -> dict:
    return {
        "input_tokens": input_count,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_count,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_count + output_count,
    }


async def responses(request: Request) -> Response:
    call = await receive(request)
    if refused := await preamble(call):
        return refused
    stream = bool(call.body.get("stream"))
    if call.die_after is not None and not stream:
        return dropped(request)
    limit = call.body.get("max_output_tokens")
    output_count = call.completion_tokens(limit)
    usage = (
        None if call.no_usage else _usage(scaled(input_tokens(call.body, call.fast), call.prompt_scale), output_count)
    )
    # OpenAI stops at max_output_tokens with status "incomplete" and says why.
    capped = isinstance(limit, int) and output_count >= limit
    response_id, message_id, created = f"resp_{uuid.uuid4().hex}", f"msg_{uuid.uuid4().hex}", int(time.time())
    text = words(output_count)

    def message(status: str, content: list[dict]) -> dict:
        return {"id": message_id, "type": "message", "status": status, "role": "assistant", "content": content}

    def output_text(value: str) -> dict:
        return {"type": "output_text", "text": value, "annotations": [], "logprobs": []}

    def envelope(status: str, output: list[dict], final_usage: dict | None) -> dict:
        return {
            "id": response_id,
            "object": "response",
            "created_at": created,
            "status": status,
            "completed_at": int(time.time()) if status != "in_progress" else None,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": call.body.get("instructions"),
            "max_output_tokens": limit,
            "model": call.model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": call.body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None},
            "store": bool(call.body.get("store", True)),
            "temperature": call.body.get("temperature", 1.0),
            "text": {"format": {"type": "text"}},
            "tool_choice": call.body.get("tool_choice", "auto"),
            "tools": call.body.get("tools") or [],
            "top_p": call.body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": final_usage,
            "user": call.body.get("user"),
            "metadata": call.body.get("metadata") or {},
        }

    final_status = "incomplete" if capped else "completed"
    if not stream:
        return JSONResponse(envelope(final_status, [message(final_status, [output_text(text)])], usage))

    def events():
        sequence = iter(range(1_000_000))

        def event(kind: str, **fields: object) -> str:
            return sse({"type": kind, "sequence_number": next(sequence), **fields}, event=kind)

        yield event("response.created", response=envelope("in_progress", [], None)), False
        yield event("response.in_progress", response=envelope("in_progress", [], None)), False
        yield event("response.output_item.added", output_index=0, item=message("in_progress", [])), False
        yield (
            event(
                "response.content_part.added", item_id=message_id, output_index=0, content_index=0, part=output_text("")
            ),
            False,
        )
        for position in range(output_count):
            yield (
                event(
                    "response.output_text.delta",
                    item_id=message_id,
                    output_index=0,
                    content_index=0,
                    delta="ok" if position == 0 else " ok",
                    logprobs=[],
                ),
                True,
            )
        yield (
            event(
                "response.output_text.done", item_id=message_id, output_index=0, content_index=0, text=text, logprobs=[]
            ),
            False,
        )
        yield (
            event(
                "response.content_part.done",
                item_id=message_id,
                output_index=0,
                content_index=0,
                part=output_text(text),
            ),
            False,
        )
        done = message(final_status, [output_text(text)])
        yield event("response.output_item.done", output_index=0, item=done), False
        yield event(f"response.{final_status}", response=envelope(final_status, [done], usage)), False

    return event_stream(call, events())
