"""LibreChat's own client code against a proxy: the Node script in tests/librechat_client/, and
a recorder on the wire between it and the proxy.

The recorder is a loopback pass-through: the script's `baseURL` points at it, it forwards
every request to the proxy unchanged and streams the answer back unchanged, and it keeps
each exchange (path, identity header, body, status, the retry headers). Counting there sees
what LibreChat's client really sends, its own retries included, without touching the
client's configuration (retries, timeouts, fetch), and it also sees the refusals the proxy
answers itself, which never reach the provider's request log.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.support.harness import free_port, wait_or_kill
from tests.support.suite import repo_dir

client_dir = repo_dir / "tests" / "librechat_client"
node = client_dir / "node_modules" / ".bin" / "node"
script = client_dir / "run_case.mjs"
# LangChain waits out a retry-after of up to a minute before its retry.
case_timeout_s = 150
# Connection-level headers are the recorder's own business on each side.
_hop_by_hop = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}
_kept_answer_headers = ("retry-after", "x-should-retry", "x-solaris-refusal", "content-type")


class WireRecorder:
    """Forwards loopback HTTP to `target_url` and records every exchange, from a thread."""

    def __init__(self, target_url: str) -> None:
        self.target_url = target_url.rstrip("/")
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._exchanges: list[dict] = []
        self._lock = threading.Lock()
        app = Starlette(routes=[Route("/{path:path}", self._forward, methods=["GET", "POST", "DELETE"])])
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    async def _forward(self, request: Request) -> Response:
        body = await request.body()
        headers = [(name, value) for name, value in request.headers.items() if name not in _hop_by_hop]
        client = httpx.AsyncClient(timeout=120)
        upstream = client.build_request(
            request.method,
            self.target_url + request.url.path,
            params=request.query_params,
            headers=headers,
            content=body,
        )
        answer = await client.send(upstream, stream=True)
        exchange = {
            "at": time.time(),
            "path": request.url.path,
            "identity": request.headers.get("x-litellm-end-user-id"),
            "body": json.loads(body) if body else None,
            "status": answer.status_code,
            "headers": {name: answer.headers[name] for name in _kept_answer_headers if name in answer.headers},
        }
        with self._lock:
            self._exchanges.append(exchange)
        passed = {name: value for name, value in answer.headers.items() if name not in _hop_by_hop}
        if answer.status_code >= 400:
            content = await answer.aread()
            await answer.aclose()
            await client.aclose()
            exchange["error_body"] = content.decode("utf-8", "replace")
            return Response(content, status_code=answer.status_code, headers=passed)

        async def close() -> None:
            await answer.aclose()
            await client.aclose()

        return StreamingResponse(
            answer.aiter_raw(), status_code=answer.status_code, headers=passed, background=BackgroundTask(close)
        )

    def exchanges(self) -> list[dict]:
        """Every exchange so far, oldest first."""
        with self._lock:
            return list(self._exchanges)

    def sent_for(self, identity: str) -> list[dict]:
        """The exchanges whose identity header was `identity`, oldest first."""
        return [exchange for exchange in self.exchanges() if exchange["identity"] == identity]

    def start(self) -> WireRecorder:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("wire recorder did not start within 10 s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


class LibreChatClient:
    """tests/librechat_client/run_case.mjs as one process for many cases, since loading the
    package takes seconds: a case goes in as one JSON line, its result comes out as one."""

    def __init__(self, log_path: Path) -> None:
        assert installed(), (
            f"LibreChat's client is not installed in {client_dir}: `make test` installs it (npm ci from its lock file)"
        )
        self._log = open(log_path, "ab")  # noqa: SIM115 - open while the process runs; closed by close()
        self.process = subprocess.Popen(
            [str(node), str(script)], cwd=client_dir, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log
        )
        self._lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(b"")  # the process ended

    def run(self, base_url: str, api_key: str, case: str, email: str, librechat_user: str, text: str, **extra) -> dict:
        """One LibreChat turn against `base_url` (…/v1): what LibreChat stores and shows, as the script prints it."""
        request = {
            "case": case,
            "baseURL": base_url,
            "apiKey": api_key,
            "email": email,
            "librechatUser": librechat_user,
            "model": "fake-model",
            "text": text,
            **extra,
        }
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        self.process.stdin.flush()
        line = self._lines.get(timeout=case_timeout_s)
        assert line, f"run_case.mjs exited with {self.process.poll()}; see {self._log.name}"
        result = json.loads(line)
        assert "crashed" not in result, result
        return result

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()  # the client exits at the end of its input
        wait_or_kill(self.process)
        self._log.close()


def installed() -> bool:
    return node.exists() and script.exists()
