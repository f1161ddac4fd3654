"""Debian's `pgbouncer` as a child process, in transaction mode, in front of the tests' Postgres.

Its ini file and user list live in a directory of its own; it listens on a free loopback
port and logs to a file. Any database of the server is reachable through it by name (a
`*` entry), so a scratch database needs no entry of its own. It serves at most
`server_connections` server connections per database and hands them out round robin, so
the transactions of many clients interleave on few server connections: what a statement
prepared on one of them, or any other session state, would not survive.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from tests.support.harness import free_port, terminate, wait_for

# Prepared statements in transaction mode arrived in 1.21 (max_prepared_statements).
prepared_statements_since = (1, 21)


def find_pgbouncer() -> str | None:
    """The pgbouncer binary: on PATH, else where Debian puts it (/usr/sbin, often off a user's PATH)."""
    found = shutil.which("pgbouncer")
    if found is None and os.access("/usr/sbin/pgbouncer", os.X_OK):
        found = "/usr/sbin/pgbouncer"
    return found


def pgbouncer_version(executable: str) -> tuple[int, ...]:
    """(1, 18, 0) from `PgBouncer 1.18.0` on the first line of --version."""
    first_line = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=10).stdout
    match = re.search(r"PgBouncer (\d+(?:\.\d+)+)", first_line)
    assert match, f"unexpected `pgbouncer --version`: {first_line!r}"
    return tuple(int(part) for part in match[1].split("."))


class PgBouncer:
    def __init__(
        self, executable: str, server_url: str, work: Path, log_path: Path, server_connections: int = 3
    ) -> None:
        self.version = pgbouncer_version(executable)
        self.port = free_port()
        server = conninfo_to_dict(server_url)
        self.user = str(server.get("user") or "postgres")
        # pgserver gives a Unix socket directory as the host; pgbouncer takes one the same way.
        target = {
            "host": server.get("host") or "/var/run/postgresql",
            "port": server.get("port") or "5432",
            "user": self.user,
            "password": server.get("password"),
        }
        target_line = " ".join(f"{key}={value}" for key, value in target.items() if value)
        settings = {
            "listen_addr": "127.0.0.1",
            "listen_port": self.port,
            "unix_socket_dir": "",
            # Clients are trusted (loopback, a test); pgbouncer logs in to Postgres as the URL's user.
            "auth_type": "trust",
            "auth_file": work / "userlist.txt",
            "admin_users": self.user,
            "pool_mode": "transaction",
            "default_pool_size": server_connections,
            "min_pool_size": server_connections,
            "server_round_robin": 1,
            "max_client_conn": 500,
        }
        if self.version >= prepared_statements_since:
            # Off, as in every version before 1.21: the setting under test must be what makes it work.
            settings["max_prepared_statements"] = 0
        lines = ["[databases]", f"* = {target_line}", "[pgbouncer]"]
        lines += [f"{key} = {value}" for key, value in settings.items()]
        work.mkdir(parents=True, exist_ok=True)
        (work / "userlist.txt").write_text(f'"{self.user}" ""\n', encoding="utf-8")
        config = work / "pgbouncer.ini"
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        command = [executable, str(config)]
        if os.geteuid() == 0:
            command[1:1] = ["-u", _unprivileged_user(work)]
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - open while the process runs; closed by stop()
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        self._server_url = server_url
        wait_for(self._answers, 15, interval_s=0.1, what=f"pgbouncer on port {self.port}")

    def url_of(self, database_url: str) -> str:
        """The same database (and user), reached through pgbouncer."""
        return make_conninfo(database_url, host="127.0.0.1", port=str(self.port))

    def show(self, what: str) -> list[dict]:
        """A SHOW of the admin console (simple query protocol only: a client-side cursor)."""
        admin = make_conninfo(self.url_of(self._server_url), dbname="pgbouncer")
        with (
            psycopg.connect(admin, autocommit=True, cursor_factory=psycopg.ClientCursor) as connection,
            connection.cursor(row_factory=dict_row) as cursor,
        ):
            cursor.execute(f"SHOW {what}")
            return cursor.fetchall()

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        terminate(self.process)
        self._log.close()

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited with {self.process.returncode}:\n{self.log()[-2000:]}")
        try:
            with psycopg.connect(self.url_of(self._server_url), connect_timeout=2) as connection:
                connection.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True


def _unprivileged_user(work: Path) -> str:
    """pgbouncer refuses to run as root. As root, pgserver runs Postgres as its user
    `pgserver`, whose socket directory only that user may enter: pgbouncer runs as it too,
    able to read its own files."""
    from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

    user = "pgserver"
    ensure_user_exists(user)
    ensure_prefix_permissions(work)
    work.chmod(0o755)
    for path in work.iterdir():
        path.chmod(0o644)
    return user
