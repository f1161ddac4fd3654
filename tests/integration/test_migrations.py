"""Schema migrations: once, in order, safe with replicas, never in `public`."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import uuid

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from solaris_hooks.admin import doctor
from solaris_hooks.cli import main as cli
from solaris_hooks.db import migrations
from solaris_hooks.db.migrations import available_migrations, migrate
from solaris_hooks.exceptions import MigrationChanged, MigrationError


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


def recorded_checksums(url: str) -> dict[int, str | None]:
    with psycopg.connect(url) as connection:
        return dict(connection.execute("SELECT version, checksum FROM solaris.schema_migrations").fetchall())


def doctor_line(url: str) -> doctor.CheckResult:
    """What `solaris doctor` says of the migrations."""
    return next(result for result in doctor.run_checks(lambda: url) if result.name == "migrations")


def edited(version: int) -> list[migrations.Migration]:
    """The package's migrations, as if the file of `version` had been edited after it was applied."""
    found = available_migrations()
    for position, migration in enumerate(found):
        if migration.version == version:
            text = migration.sql + "\n-- edited after it was applied\n"
            checksum = hashlib.sha256(text.encode()).hexdigest()
            found[position] = dataclasses.replace(migration, sql=text, checksum=checksum)
    return found


class TestChecksums:
    def test_an_untouched_database_records_each_file_and_migrates_as_before(self, empty_database):
        """Each applied file's sha256 is recorded; the next run finds nothing changed and applies nothing."""
        migrate(empty_database)
        assert recorded_checksums(empty_database) == {
            migration.version: hashlib.sha256(migration.sql.encode()).hexdigest()
            for migration in available_migrations()
        }
        assert migrate(empty_database) == []
        assert doctor_line(empty_database) == doctor.CheckResult(
            "migrations", True, f"{len(available_migrations())} applied"
        )

    def test_an_edited_applied_migration_is_refused_naming_the_file(self, empty_database, monkeypatch):
        """migrate raises MigrationChanged naming the file and applies nothing; doctor fails its line."""
        migrate(empty_database)
        changed = edited(2)
        monkeypatch.setattr(migrations, "available_migrations", lambda: changed)
        name = changed[1].file_name
        with pytest.raises(MigrationChanged, match=name):
            migrate(empty_database)
        result = doctor_line(empty_database)
        assert not result.ok and name in result.detail

    def test_the_cli_says_which_file_changed_in_one_line(self, empty_database, monkeypatch, capsys):
        """`solaris migrate`: exit 2 and one readable line, never a traceback (after the line
        that says which database the command uses)."""
        migrate(empty_database)
        monkeypatch.setattr(migrations, "available_migrations", lambda: edited(3))
        monkeypatch.setenv("SOLARIS_DATABASE_URL", empty_database)
        assert cli.main(["migrate"]) == 2
        using, error = capsys.readouterr().err.splitlines()
        assert using.startswith("solaris: using the database in SOLARIS_DATABASE_URL")
        assert error.startswith("solaris: applied migration(s) changed") and "0003_" in error
        assert "Traceback" not in error

    def test_a_database_migrated_before_checksums_trusts_its_files_on_first_use(self, empty_database):
        """A schema_migrations table without the checksum column (made before this change): doctor
        still reads it, and the next migrate adds the column and records the files as they are."""
        migrate(empty_database)
        with psycopg.connect(empty_database) as connection:
            connection.execute("ALTER TABLE solaris.schema_migrations DROP COLUMN checksum")
        assert doctor_line(empty_database).ok
        assert migrate(empty_database) == []
        assert recorded_checksums(empty_database) == {
            migration.version: migration.checksum for migration in available_migrations()
        }
