"""An OpenAI-compatible model provider that runs on loopback, for tests and benchmarks.

It stands in for what lies outside this machine (OpenAI and friends). Answers carry a
realistic ``usage`` block, streamed or not. The prompt steers it, so a test can ask for
a precise outcome through the proxy, which forwards messages untouched:

- ``[[tokens=N]]``  answer with N completion tokens (capped by ``max_tokens``)
- ``[[fail=CODE]]`` answer with that HTTP error status
- ``[[sleep=S]]``   wait S seconds before answering

Without ``[[tokens=N]]`` it answers with ``max_tokens`` tokens, or 20 when the request
sets none: the worst case a quota has to cover.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from solaris_hooks.testing import free_port

default_completion_tokens = 20
_directive = re.compile(r"\[\[(tokens|fail|sleep)=([0-9.]+)\]\]")


def count_prompt_tokens(messages: list[dict], fast: bool = False) -> int:
    """Counted as OpenAI does for its chat models (tiktoken, shipped inside LiteLLM).

    fast: an estimate from the text's length instead, for benchmarks, where the fake
    must cost the machine as little as possible and exact counts do not matter.
    """
    if fast:
        return 3 + sum(4 + len(str(message.get("content") or "")) // 4 for message in messages)
    import litellm  # late: only the request path needs it, and it takes seconds to import

    return int(litellm.token_counter(model="gpt-3.5-turbo", messages=messages))


def _directives(messages: list[dict]) -> dict[str, float]:
    found: dict[str, float] = {}
    for message in messages:
        for name, value in _directive.findall(str(message.get("content") or "")):
            found[name] = float(value)
    return found


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


async def _chat_completions(request: Request) -> Response:
    body = await request.json()
    messages = body.get("messages") or []
    directives = _directives(messages)
    if "sleep" in directives:
        await asyncio.sleep(directives["sleep"])
    if "fail" in directives:
        status = int(directives["fail"])
        return JSONResponse(
            {"error": {"message": "fake provider failure", "type": "server_error", "code": status}},
            status_code=status,
        )
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    wanted = int(directives.get("tokens", max_tokens or default_completion_tokens))
    completion_tokens = min(wanted, max_tokens) if max_tokens else wanted
    prompt_tokens = count_prompt_tokens(messages, fast=request.app.state.fast)
    words = ["ok"] * completion_tokens
    created = int(time.time())
    call_id = f"chatcmpl-{uuid.uuid4().hex}"
    model = body.get("model", "fake")

    if not body.get("stream"):
        return JSONResponse(
            {
                "id": call_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": " ".join(words)},
                        "finish_reason": "length" if completion_tokens == max_tokens else "stop",
                    }
                ],
                "usage": _usage(prompt_tokens, completion_tokens),
            }
        )

    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    async def events():
        def chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> str:
            payload = {
                "id": call_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if usage:
                payload["usage"] = usage
            return f"data: {json.dumps(payload)}\n\n"

        yield chunk({"role": "assistant", "content": ""})
        for index, word in enumerate(words):
            yield chunk({"content": word if index == 0 else " " + word})
        yield chunk({}, finish="stop")
        if include_usage:
            yield chunk({}, usage=_usage(prompt_tokens, completion_tokens))
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def _models(request: Request) -> Response:
    return JSONResponse({"object": "list", "data": [{"id": "fake", "object": "model"}]})


def app(fast: bool = False) -> Starlette:
    application = Starlette(
        routes=[
            Route("/v1/chat/completions", _chat_completions, methods=["POST"]),
            Route("/chat/completions", _chat_completions, methods=["POST"]),
            Route("/v1/models", _models, methods=["GET"]),
        ]
    )
    application.state.fast = fast
    return application


class FakeProvider:
    """Serves the fake provider from a thread of this process, on a free loopback port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        config = uvicorn.Config(app(), host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> FakeProvider:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake provider did not start within 10 s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="An OpenAI-compatible fake provider on loopback.")
    parser.add_argument("port", type=int, nargs="?", default=8099)
    parser.add_argument("--fast", action="store_true", help="estimate prompt tokens instead of tokenizing")
    options = parser.parse_args()
    uvicorn.run(app(options.fast), host="127.0.0.1", port=options.port, log_level="warning", access_log=False)
