"""What every route shares: reading and recording a request, its directives, failing, dropping the connection."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from tests.support.fake_provider._tokens import directives

default_completion_tokens = 20
recorded_requests_max = 1000
# An uploaded file above this is refused, as OpenAI refuses audio over 25 MB.
upload_bytes_max = 25 * 1024 * 1024
sleep_max_s = 300  # a typo in a test's [[sleep]] must not hang a worker for hours
_secret_headers = {"authorization", "x-api-key", "api-key"}


class RequestLog:
    """The last requests the fake received, oldest first, for tests to see what the proxy sent upstream."""

    def __init__(self, size_max: int = recorded_requests_max) -> None:
        self._entries: deque[dict] = deque(maxlen=size_max)
        self._sequence = itertools.count(1)
        # The server's thread appends while a test's thread reads.
        self._lock = threading.Lock()

    def add(self, entry: dict) -> None:
        with self._lock:
            self._entries.append({"seq": next(self._sequence), **entry})

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


@dataclass
class Call:
    """One request as a route sees it: its body (JSON, or form fields), uploaded files and directives."""

    request: Request
    body: dict
    files: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)
    directives: dict[str, float] = field(default_factory=dict)

    @property
    def fast(self) -> bool:
        return bool(self.request.app.state.fast)

    @property
    def model(self) -> str:
        return str(self.body.get("model") or "fake")

    @property
    def prompt_scale(self) -> float | None:
        return self.directives.get("prompt_scale")

    @property
    def reasoning_tokens(self) -> int:
        """`[[reasoning=N]]`: hidden reasoning tokens, billed as completion tokens, never streamed."""
        return int(self.directives.get("reasoning", 0))

    @property
    def no_usage(self) -> bool:
        return "no_usage" in self.directives

    @property
    def chunk_sleep_s(self) -> float:
        """`[[chunk_sleep=S]]`: seconds between content events of a stream (a slow, long answer)."""
        return min(float(self.directives.get("chunk_sleep", 0.0)), 60.0)

    @property
    def die_after(self) -> int | None:
        value = self.directives.get("die_after")
        return None if value is None else int(value)

    def completion_tokens(self, limit: object) -> int:
        """Per choice: `[[tokens=N]]`, else the limit the request sets, else 20; never above the limit."""
        limit_tokens = (
            int(limit) if isinstance(limit, (int, float)) and not isinstance(limit, bool) and limit > 0 else None
        )
        wanted = int(self.directives.get("tokens", limit_tokens or default_completion_tokens))
        return min(wanted, limit_tokens) if limit_tokens else wanted


async def receive(request: Request) -> Call:
    """Parse the request (JSON or multipart form) and record it, before any directive acts."""
    entry: dict = {
        "time": time.time(),
        "method": request.method,
        "path": request.url.path,
        "query": dict(request.query_params),
        "headers": {
            name: ("<redacted>" if name in _secret_headers else value) for name, value in request.headers.items()
        },
    }
    body: dict = {}
    files: dict[str, list[tuple[str, bytes]]] = {}
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form(max_part_size=upload_bytes_max)
        for name in form:
            for value in form.getlist(name):
                if isinstance(value, UploadFile):
                    data = await value.read(upload_bytes_max + 1)
                    files.setdefault(name, []).append((value.filename or "", data[:upload_bytes_max]))
                else:
                    body[name] = value if name not in body else [*_as_list(body[name]), value]
        entry["form"] = body
        entry["files"] = [
            {"field": name, "filename": filename, "size_bytes": len(data)}
            for name, uploads in files.items()
            for filename, data in uploads
        ]
    elif request.method in ("POST", "PUT", "PATCH"):
        raw = await request.body()
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = None
        entry["json"] = parsed
        body = parsed if isinstance(parsed, dict) else {}
    request.app.state.requests.add(entry)
    return Call(request, body, files, directives(body))


def _as_list(value: object) -> list:
    return value if isinstance(value, list) else [value]


def failure(status: int, message: str = "fake provider failure", anthropic: bool = False) -> Response:
    """An error in the provider's own shape."""
    if anthropic:
        kind = "invalid_request_error" if 400 <= status < 500 else "api_error"
        return JSONResponse({"type": "error", "error": {"type": kind, "message": message}}, status_code=status)
    kind = "invalid_request_error" if 400 <= status < 500 else "server_error"
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": None, "code": status}}, status_code=status
    )


async def preamble(call: Call, anthropic: bool = False) -> Response | None:
    """Act on `[[sleep]]` then `[[fail]]` (an error status, 400 to 599); a response to send instead of the answer."""
    if "sleep" in call.directives:
        await asyncio.sleep(min(call.directives["sleep"], sleep_max_s))
    if "fail" in call.directives and 400 <= call.directives["fail"] <= 599:
        return failure(int(call.directives["fail"]), anthropic=anthropic)
    return None


def drop_connection(request: Request) -> None:
    """Close the client's connection now, without a word more: a provider that died.

    uvicorn gives no public way to do this; its protocol object is the owner of the raw
    `send`, and marking it disconnected makes it drop, silently, what the app sends after.
    """
    cycle = getattr(request.scope.get("fake.raw_send"), "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise ConnectionAbortedError("fake provider: die_after")  # the server then closes the connection
    cycle.disconnected = True
    transport.close()


def dropped(request: Request) -> Response:
    """A non-streamed call that dies: the connection closes before any answer."""
    drop_connection(request)
    return Response(status_code=204)  # never sent: the connection is gone


def event_stream(call: Call, events: Iterable[tuple[str, bool]]) -> StreamingResponse:
    """Server-sent events; each pair is (text, whether it carries content) so that
    `[[die_after=K]]` can break the connection after K content events."""
    die_after = call.die_after

    async def body() -> AsyncIterator[str]:
        delivered = 0
        for text, is_content in events:
            if die_after is not None and is_content and delivered >= die_after:
                drop_connection(call.request)
                return
            yield text
            delivered += is_content
            # Let the loop flush each event, as a real stream arrives in pieces.
            await asyncio.sleep(call.chunk_sleep_s if is_content else 0)

    return StreamingResponse(body(), media_type="text/event-stream")


def sse(payload: dict, event: str | None = None) -> str:
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {json.dumps(payload)}\n\n"


def words(tokens: int) -> str:
    """A text of exactly `tokens` cl100k tokens: "ok", then " ok" for each further one."""
    return " ".join(["ok"] * tokens)
