"""`solaris users merge` from the shell, on a database with an account as an older version
wrote it. Through the proxy: tests/e2e/test_identity_enforcement.py."""

from __future__ import annotations

import psycopg

from tests.support.cli import cli_env, solaris
from tests.support.ledger_sql import legacy_account


class TestMergeCli:
    def test_users_merge_from_the_shell(self, own_database):
        """`solaris users merge FROM INTO` merges, says what moved, and audits as cli:<login>."""
        legacy_account(own_database, "Lia@Example.COM", credit=100, settled_raw=100, pending=5)
        env = cli_env(own_database)
        assert solaris("users", "create", "lia@example.com", "--tokens", "0", env=env).returncode == 0
        merged = solaris("users", "merge", "Lia@Example.COM", "LIA@example.com", env=env)
        assert merged.returncode == 0, merged.stderr
        assert "merged Lia@Example.COM into lia@example.com" in merged.stdout and "1 pending" in merged.stdout
        shown = solaris("users", "show", "Lia@Example.COM", env=env)
        assert "lia@example.com" in shown.stdout and "1100" in shown.stdout
        with psycopg.connect(own_database) as connection:
            actor = connection.execute("SELECT actor FROM solaris.audit WHERE action = 'user.merge'").fetchone()[0]
        assert actor.startswith("cli")
        again = solaris("users", "merge", "Lia@Example.COM", "lia@example.com", env=env)
        assert again.returncode == 1 and "same account" in again.stderr and "Traceback" not in again.stderr
        unknown = solaris("users", "merge", "Nobody@Example.COM", "lia@example.com", env=env)
        assert unknown.returncode == 1 and "no user 'nobody@example.com'" in unknown.stderr
