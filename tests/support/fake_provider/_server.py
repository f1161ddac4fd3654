"""The routes, the Starlette app, and FakeProvider, which serves it from a thread on a free port."""

from __future__ import annotations

import threading
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.fake_provider import _anthropic, _audio, _chat, _embeddings, _images, _responses
from tests.support.fake_provider._http import RequestLog, failure, receive
from tests.support.fake_provider._tokens import scaled
from tests.support.harness import free_port

# (path without the /v1 prefix, handler): each served with and without /v1, as api_base may carry it or not.
_routes = [
    ("/chat/completions", _chat.chat_completions),
    ("/completions", _chat.completions),
    ("/responses", _responses.responses),
    ("/messages", _anthropic.messages),
    ("/embeddings", _embeddings.embeddings),
    ("/moderations", _embeddings.moderations),
    ("/images/generations", _images.generations),
    ("/images/edits", _images.edits),
    ("/audio/speech", _audio.speech),
    ("/audio/transcriptions", _audio.transcriptions),
]


async def _count_tokens(request: Request) -> Response:
    """Anthropic's `/v1/messages/count_tokens`, with the same count the messages route bills."""
    call = await receive(request)
    return JSONResponse({"input_tokens": scaled(_anthropic.input_tokens(call.body, call.fast), call.prompt_scale)})


async def _models(request: Request) -> Response:
    return JSONResponse({"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "fake"}]})


async def _recorded(request: Request) -> Response:
    if request.method == "DELETE":
        request.app.state.requests.clear()
        return Response(status_code=204)
    return JSONResponse({"requests": request.app.state.requests.snapshot()})


async def _unknown(request: Request) -> Response:
    """Recorded too: a test can see that the proxy called something the fake does not serve."""
    await receive(request)
    return failure(404, f"fake provider: no route {request.method} {request.url.path}")


class _FakeApp(Starlette):
    async def __call__(self, scope, receive, send) -> None:
        # Kept for drop_connection: the server's own send, before any middleware wraps it.
        scope["fake.raw_send"] = send
        await super().__call__(scope, receive, send)


def app(fast: bool = False) -> Starlette:
    routes = [Route(prefix + path, handler, methods=["POST"]) for path, handler in _routes for prefix in ("/v1", "")]
    routes += [
        Route("/v1/messages/count_tokens", _count_tokens, methods=["POST"]),
        Route("/v1/models", _models, methods=["GET"]),
        Route("/models", _models, methods=["GET"]),
        Route("/_fake/requests", _recorded, methods=["GET", "DELETE"]),
        Route("/_fake/image.png", _images.image_file, methods=["GET"]),
        Route("/{path:path}", _unknown, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ]
    application = _FakeApp(routes=routes)
    application.state.fast = fast
    application.state.requests = RequestLog()
    return application


class FakeProvider:
    """Serves the fake provider from a thread of this process, on a free loopback port.

    `base_url` ends in /v1, as OpenAI's does; `root_url` has no path, as Anthropic's api_base.
    """

    def __init__(self, port: int | None = None, fast: bool = False) -> None:
        self.port = port or free_port()
        self.root_url = f"http://127.0.0.1:{self.port}"
        self.base_url = f"{self.root_url}/v1"
        self.app = app(fast)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def requests(self) -> list[dict]:
        """The last 1,000 requests received, oldest first: method, path, headers (keys redacted),
        `json` body or `form` fields and `files` (names and sizes, not bytes)."""
        return self.app.state.requests.snapshot()

    def clear_requests(self) -> None:
        self.app.state.requests.clear()

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
