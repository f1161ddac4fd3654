"""Schema migrations: once, in order, safe with replicas, never in `public`."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from solaris_hooks.db.migrations import available_migrations, migrate
from solaris_hooks.exceptions import MigrationError


class TestMigrate:
    def test_a_second_run_applies_nothing(self, empty_database):
        """Migrations are recorded and applied once."""
        first = migrate(empty_database)
        assert first == [migration.version for migration in available_migrations()]
        assert migrate(empty_database) == []

    def test_replicas_starting_together_apply_each_migration_once(self, empty_database):
        """Four concurrent migrate() calls on an empty database: each version applied by exactly one."""
        results: list[list[int]] = []
        errors: list[BaseException] = []

        def start_replica():
            try:
                results.append(migrate(empty_database))
            except BaseException as error:  # surfaced below
                errors.append(error)

        threads = [threading.Thread(target=start_replica) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        applied = sorted(version for result in results for version in result)
        assert applied == [migration.version for migration in available_migrations()]

    def test_nothing_is_created_in_public(self, empty_database):
        """LiteLLM's Prisma owns `public`; our objects all live in `solaris`."""
        migrate(empty_database)
        with psycopg.connect(empty_database) as connection:
            public = connection.execute(
                """SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = 'public'"""
            ).fetchone()[0]
            functions = connection.execute(
                """SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                    WHERE n.nspname = 'public'"""
            ).fetchone()[0]
        assert (public, functions) == (0, 0)

    def test_an_unreachable_database_is_a_clear_error(self, database_url):
        """A wrong URL says it cannot connect, without a traceback from deep inside."""
        bad = make_conninfo(database_url, dbname="no_such_db_" + uuid.uuid4().hex[:6], connect_timeout=3)
        with pytest.raises(MigrationError, match="cannot connect"):
            migrate(bad)
