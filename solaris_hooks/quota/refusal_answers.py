"""A refusal written as the assistant's answer (`refusal_style: message`).

Some clients show an error badly: LibreChat wraps it in "Something went wrong…" and an
English troubleshooting link, and LangChain under it may retry. For them a refused chat or
responses call is answered 200 with one assistant message whose whole text is our notice,
zero usage and nothing else, in the shape the client asked for: a chat completion or a
Responses API response, streamed as server-sent events when the request streamed.

`Answer` is what the pre-call hook knows of the request; `body` builds the bytes.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Literal

Api = Literal["chat", "responses"]
# A model name only labels the answer: a client may send any text, so it is cut short.
model_length_max = 200


@dataclass(frozen=True)
class Answer:
    api: Api
    stream: bool
    model: str
    include_usage: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, fields: dict) -> Answer:
        """Raises KeyError or TypeError for fields that are not an Answer's."""
        return cls(
            api="responses" if fields["api"] == "responses" else "chat",
            stream=fields["stream"] is True,
            model=str(fields["model"])[:model_length_max],
            include_usage=fields.get("include_usage") is True,
        )


def answer_for(data: dict, route: str) -> Answer | None:
    """How to answer a refused call on `route` as a message; None for routes answered as errors."""
    if route not in ("chat", "responses"):
        return None
    options = data.get("stream_options")
    return Answer(
        api="chat" if route == "chat" else "responses",
        stream=data.get("stream") is True,
        model=str(data.get("model") or "")[:model_length_max],
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
    )


def body(answer: Answer, text: str) -> tuple[bytes, str]:
    """The answer's bytes and content type."""
    if answer.api == "chat":
        return (
            (_chat_events(answer, text), _event_stream) if answer.stream else (_json(_chat(answer, text)), _json_type)
        )
    if answer.stream:
        return _responses_events(answer, text), _event_stream
    return _json(_response(answer, text, "completed")), _json_type


_event_stream = "text/event-stream"
_json_type = "application/json"


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _chat(answer: Answer, text: str) -> dict:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answer.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def _chat_events(answer: Answer, text: str) -> bytes:
    """Chunks as OpenAI streams them: role, content, finish, [usage], then [DONE]."""
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time())}
    head["model"] = answer.model

    def chunk(delta: dict, finish_reason: str | None) -> dict:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**head, "choices": [choice]}

    chunks = [
        chunk({"role": "assistant", "content": ""}, None),
        chunk({"content": text}, None),
        chunk({}, "stop"),
    ]
    if answer.include_usage:
        chunks.append({**head, "choices": [], "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}})
    return b"".join(b"data: " + _json(item) + b"\n\n" for item in chunks) + b"data: [DONE]\n\n"


def _response(answer: Answer, text: str, status: str, response_id: str = "", message_id: str = "") -> dict:
    completed = status == "completed"
    return {
        "id": response_id or f"resp_{uuid.uuid4().hex}",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": answer.model,
        "output": [_message(text, message_id)] if completed else [],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": {
            "input_tokens": 0,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 0,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 0,
        }
        if completed
        else None,
        "user": None,
        "metadata": {},
    }


def _message(text: str, message_id: str, status: str = "completed") -> dict:
    content = [{"type": "output_text", "text": text, "annotations": []}] if status == "completed" else []
    return {
        "id": message_id or f"msg_{uuid.uuid4().hex}",
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def _responses_events(answer: Answer, text: str) -> bytes:
    """The events OpenAI's Responses API streams for one text message, in order."""
    response_id, message_id = f"resp_{uuid.uuid4().hex}", f"msg_{uuid.uuid4().hex}"
    part = {"item_id": message_id, "output_index": 0, "content_index": 0}
    events: list[dict] = [
        {"type": "response.created", "response": _response(answer, text, "in_progress", response_id)},
        {"type": "response.in_progress", "response": _response(answer, text, "in_progress", response_id)},
        {"type": "response.output_item.added", "output_index": 0, "item": _message(text, message_id, "in_progress")},
        {"type": "response.content_part.added", **part, "part": {"type": "output_text", "text": "", "annotations": []}},
        {"type": "response.output_text.delta", **part, "delta": text, "logprobs": []},
        {"type": "response.output_text.done", **part, "text": text, "logprobs": []},
        {
            "type": "response.content_part.done",
            **part,
            "part": {"type": "output_text", "text": text, "annotations": []},
        },
        {"type": "response.output_item.done", "output_index": 0, "item": _message(text, message_id)},
        {"type": "response.completed", "response": _response(answer, text, "completed", response_id, message_id)},
    ]
    return b"".join(
        b"event: " + event["type"].encode() + b"\ndata: " + _json({**event, "sequence_number": number}) + b"\n\n"
        for number, event in enumerate(events)
    )
