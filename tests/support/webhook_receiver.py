"""A webhook receiver for the tests: a real HTTP server on loopback (http.server in a thread)
that keeps what it is posted, and the check a receiver makes of a signed JSON alert.

stop() and start() again on the same port simulate a receiver that is down; `answer` set to
503 (or 410…) makes it refuse what it is posted, as a receiver in trouble does.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.harness import free_port, wait_for

# How old a signed timestamp a receiver accepts: enough for clock skew, too little to replay.
signature_age_max_s = 300


@dataclass(frozen=True)
class Post:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    answered: int

    def json(self) -> dict:
        return json.loads(self.body)


def verify_signature(secret: str, post: Post, now_s: float | None = None) -> bool:
    """What a receiver does with a `json` alert: recompute the HMAC of "<timestamp>." plus the
    raw body, compare in constant time, and refuse a stale timestamp."""
    timestamp = post.headers.get("x-solaris-timestamp", "")
    given = post.headers.get("x-solaris-signature", "")
    if not timestamp.isdigit() or not given.startswith("sha256="):
        return False
    if abs((now_s if now_s is not None else time.time()) - int(timestamp)) > signature_age_max_s:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + post.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given.removeprefix("sha256="))


class WebhookReceiver:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.answer = 200
        self.posts: list[Post] = []
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's hook name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                answer = receiver.answer
                post = Post(self.path, {name.lower(): value for name, value in self.headers.items()}, body, answer)
                with receiver._lock:
                    receiver.posts.append(post)
                self.send_response(answer)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if answer < 300 else b"unavailable")

            def log_message(self, *args: object) -> None:  # quiet: pytest shows stderr of failures
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def accepted(self, path: str | None = None) -> list[Post]:
        """The posts answered 2xx (to path, when given), in the order they came."""
        with self._lock:
            return [post for post in self.posts if post.answered < 300 and (path is None or post.path == path)]

    def refused(self, path: str | None = None) -> list[Post]:
        with self._lock:
            return [post for post in self.posts if post.answered >= 300 and (path is None or post.path == path)]

    def wait_for(self, path: str, count: int, timeout_s: float = 20) -> list[Post]:
        return wait_for(
            lambda: len(self.accepted(path)) >= count and self.accepted(path),
            timeout_s,
            what=f"{count} webhook post(s) to {path}",
        )
