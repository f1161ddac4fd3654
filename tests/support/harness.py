"""Helpers for testing code that runs behind solaris_hooks: waits, the admin API, the ledger check.

Used by this project's tests and benchmarks, and usable by anyone who deploys us.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import TypeVar

import httpx

from solaris_hooks.admin.doctor import Finding, diagnose, overspend_invariant

T = TypeVar("T")


def wait_for(probe: Callable[[], T], timeout_s: float = 10, interval_s: float = 0.05, what: str = "condition") -> T:
    """Poll until probe() returns something truthy; its value is returned."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout_s} s (last value: {value!r})")
        time.sleep(interval_s)


@contextmanager
def scratch_database(server_url: str, migrated: bool = True) -> Iterator[str]:
    """A database of its own on the same server (migrated unless told not to), dropped after."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    from solaris_hooks.db.migrations import migrate

    name = f"solaris_scratch_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(server_url, dbname=name)
    try:
        if migrated:
            migrate(url)
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def assert_ledger_consistent(database_url: str, overspent_on_purpose: Collection[str] = ()) -> None:
    """Fail with the offending rows unless every ledger invariant holds.

    overspent_on_purpose: users a test took past their allowance on purpose (a report that
    must show a negative balance); their overspend is expected, anybody else's fails.
    """
    findings = []
    for finding in diagnose(database_url):
        if finding.invariant == overspend_invariant:
            finding = Finding(finding.invariant, [row for row in finding.rows if row[0] not in overspent_on_purpose])
        if finding.rows:
            findings.append(finding)
    assert not findings, "\n".join(f"{finding.invariant}: {finding.rows}" for finding in findings)


def api_client(base_url: str, key: str, timeout_s: float = 60) -> httpx.Client:
    """An HTTP client of a proxy's routes that sends `key` as its bearer token."""
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout_s)


class AdminClient:
    """The `/solaris` admin API of a running proxy."""

    def __init__(self, base_url: str, admin_key: str) -> None:
        self.http = api_client(base_url, admin_key, timeout_s=30)

    def account(self, user_id: str) -> dict | None:
        response = self.http.get(f"/solaris/users/{user_id}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def add_tokens(self, user_id: str, tokens: int, reason: str = "test") -> dict:
        response = self.http.post(f"/solaris/users/{user_id}/add-tokens", json={"tokens": tokens, "reason": reason})
        response.raise_for_status()
        return response.json()

    def update_user(self, user_id: str, **changes: object) -> httpx.Response:
        """PATCH /solaris/users/{id}: the answer, whatever its status, for the test to check."""
        return self.http.patch(f"/solaris/users/{user_id}", json=changes)

    def settled_account(self, user_id: str, timeout_s: float = 30) -> dict:
        """The account once no call of the user is in flight (success logging is async) and,
        with leases on, their lease returned (lease_idle_s after their last call)."""

        def settled() -> dict | None:
            account = self.account(user_id)
            return account if account is not None and account["reserved_tokens"] == 0 else None

        return wait_for(settled, timeout_s, what=f"no pending reservation for {user_id}")

    def settles(self, user_id: str, calls: int, timeout_s: float = 15) -> list[dict]:
        """The user's settle rows (newest first) once at least `calls` are in the ledger. With
        leases on, a call's charge is written by the batch after its answer: a call that held
        no reservation (a free title call) or one reserved from a lease is charged only then."""

        def written() -> list[dict] | None:
            response = self.http.get(f"/solaris/users/{user_id}/ledger", params={"kind": "settle", "limit": 500})
            response.raise_for_status()
            rows = response.json()["rows"]
            return rows if len(rows) >= calls else None

        return wait_for(written, timeout_s, what=f"{calls} settled call(s) of {user_id} in the ledger")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class StoppablePostgres:
    """A pgserver of our own, so stopping it disturbs no other test."""

    def __init__(self, directory: Path) -> None:
        import pgserver

        from solaris_hooks.db.migrations import migrate

        self.server = pgserver.get_server(directory, cleanup_mode="delete")
        self.url = self.server.get_uri()
        migrate(self.url)

    def stop(self) -> None:
        from pgserver._commands import pg_ctl

        # -m fast: what a crash or a restart looks like to clients (their sessions are ended).
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user, timeout=30)

    def start(self) -> None:
        self.server.ensure_postgres_running()

    def close(self) -> None:
        self.server.cleanup()


def terminate(process: subprocess.Popen, timeout_s: float = 10) -> None:
    """Stop a server process of a test: SIGTERM, then SIGKILL if it has not exited in timeout_s."""
    if process.poll() is None:
        process.terminate()
    wait_or_kill(process, timeout_s)


def wait_or_kill(process: subprocess.Popen, timeout_s: float = 10) -> None:
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class ProxyProcess:
    """`solaris run` as a child process on a free port, with its output in a log file."""

    def __init__(self, config: Path, env: dict[str, str | None], log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        command = [
            sys.executable,
            "-m",
            "solaris_hooks.cli.main",
            "run",
            "--config",
            str(config),
            "--port",
            str(self.port),
        ]
        self._log = open(log_path, "ab")  # noqa: SIM115 - open while the process runs; closed by stop()
        # A None value removes the variable from the child's environment.
        child_env = {name: value for name, value in {**os.environ, **env}.items() if value is not None}
        self.process = subprocess.Popen(command, env=child_env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = 120) -> ProxyProcess:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"proxy exited with {self.process.returncode}; see {self.log_path}:\n{self.log()[-3000:]}"
                )
            try:
                return httpx.get(f"{self.base_url}/health/liveliness", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout_s, interval_s=0.2, what=f"proxy on port {self.port}")
        return self

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout_s: float = 20) -> int:
        terminate(self.process, timeout_s)
        self._log.close()
        return self.process.returncode


class MailCatcher:
    """A real SMTP server (aiosmtpd) on loopback that keeps what it receives.

    stop() and start() again on the same port simulate a mail server outage.
    """

    def __init__(self, port: int | None = None, **server_options: object) -> None:
        self.port = port or free_port()
        self.received: list[EmailMessage] = []
        self._server_options = server_options
        self._controller = None

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd handler hook
        message = message_from_bytes(envelope.original_content or envelope.content, policy=default_policy)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.received.append(message)
        return "250 Message accepted for delivery"

    def start(self) -> MailCatcher:
        from aiosmtpd.controller import Controller

        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, **self._server_options)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def to(self, address: str) -> list[EmailMessage]:
        """Messages whose envelope included address (To, Cc or Bcc)."""
        return [message for message in self.received if address in message["X-Envelope-To"].split(", ")]

    def wait_for(self, address: str, count: int, timeout_s: float = 15) -> list[EmailMessage]:
        return wait_for(
            lambda: len(self.to(address)) >= count and self.to(address),
            timeout_s,
            what=f"{count} message(s) to {address}",
        )


def text_part(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def html_part(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("html",)).get_content()


def assert_readable_error(response: httpx.Response, *statuses: int) -> dict:
    """A 4xx in our shape: JSON `{"error": {"message", "code"}}` with a sentence, no traceback."""
    assert response.status_code in statuses, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error["message"], str) and len(error["message"]) > 10
    assert isinstance(error["code"], str) and error["code"]
    assert "Traceback" not in response.text
    return error
