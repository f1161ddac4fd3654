"""Where a refusal leaves the proxy: exactly the error our hook raised, or that error
written as the assistant's message.

The pre-call hook refuses with an HTTPException that LiteLLM renders itself, and not
faithfully: it puts the HTTP status where our `code` was ("429" for `quota_exhausted`), and
its image and audio routes drop our headers and write our whole detail, cut short, as a
Python repr into `message`. So the hook also notes its refusal (`note_refusal`) for this
ASGI wrapper around the proxy's router, which then sends the error as raised, with the
header `x-solaris-refusal: <code>`; or, when the hook asked for it (`refusal_style: message`
on chat and responses calls), a 200 whose one assistant message is the notice
(quota.refusal_answers).

LiteLLM hands the hook no handle on the response, hence the context variable: the wrapper
gives each request an empty slot, the hook (running inside that request) fills it. Only an
error response (status ≥ 400) of a request whose slot was filled is rewritten: every other
response, streams included, passes untouched.

Mount it once, with `install(app)`, from the routes module.
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from solaris_hooks.quota.refusal_answers import Answer, body

refusal_header = b"x-solaris-refusal"
# Headers of LiteLLM's error that describe its body, or say what ours say.
_replaced_headers = frozenset({b"content-length", b"content-type", b"retry-after", b"x-should-retry", refusal_header})


@dataclass(frozen=True)
class Refused:
    status_code: int
    error: dict  # message, type, code: as the hook raised it
    headers: dict[str, str]  # retry hints, sent with an error only
    answer: Answer | None = None


_refusal_slot: ContextVar[list[Refused] | None] = ContextVar("solaris_refusal_slot", default=None)


def note_refusal(refused: Refused) -> None:
    """Tell the edge how the refusal of the request being handled must be sent."""
    slot = _refusal_slot.get()
    if slot is not None:
        slot.append(refused)


class RefusalEdge:
    """ASGI middleware: sends our refusal as raised, or as an assistant message."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        slot: list[Refused] = []
        replaced: Message | None = None

        async def send_rewritten(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start" and message["status"] >= 400 and slot:
                replaced = message  # LiteLLM's error: its body is dropped, ours sent in its place
                return
            if replaced is not None and message["type"] == "http.response.body":
                if not message.get("more_body", False):
                    for ours in _refusal_messages(slot[-1], replaced):
                        await send(ours)
                return
            await send(message)

        token = _refusal_slot.set(slot)
        try:
            await self.app(scope, receive, send_rewritten)
        finally:
            _refusal_slot.reset(token)


def _refusal_messages(refused: Refused, replaced: Message) -> list[Message]:
    """Our refusal, with the headers LiteLLM gave its error (call id…) but those of its body."""
    headers = [(key, value) for key, value in replaced.get("headers", ()) if key.lower() not in _replaced_headers]
    headers.append((refusal_header, str(refused.error["code"]).encode("latin-1", "replace")))
    if refused.answer is not None:
        content, content_type = body(refused.answer, refused.error["message"])
        return _messages(200, headers, content, content_type)
    headers += [(name.encode(), value.encode("latin-1", "replace")) for name, value in refused.headers.items()]
    content = json.dumps({"error": {**refused.error, "param": None}}, ensure_ascii=False).encode()
    return _messages(refused.status_code, headers, content, "application/json")


def _messages(status: int, headers: list[tuple[bytes, bytes]], content: bytes, content_type: str) -> list[Message]:
    headers = [
        *headers,
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(content)).encode()),
    ]
    if content_type == "text/event-stream":
        headers.append((b"cache-control", b"no-cache"))
    return [
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": content, "more_body": False},
    ]


def install(app: Starlette) -> None:
    """Wrap the app's router with the edge (once, however often it is called)."""
    router = app.router
    if isinstance(router.middleware_stack, RefusalEdge):
        return
    router.middleware_stack = RefusalEdge(router.middleware_stack)
