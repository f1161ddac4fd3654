"""Versioned SQL migrations for the `solaris` schema, applied at start-up.

Files `migrations/NNNN_name.sql` run in order, each once. The whole run holds a
transaction-scoped advisory lock, so replicas that start together apply each file once
and the later ones find the work done. Nothing here touches `public`.

Each applied file's sha256 is recorded with it. A file edited after it was applied would
leave databases migrated before the edit different from those migrated after it, with
nothing to tell them apart: every run (and `solaris doctor`) compares the files with the
checksums and refuses, naming the files, when one changed. Applied migrations are history:
a change goes into a new file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from solaris_hooks.db.connection import one_command_prepare_threshold
from solaris_hooks.db.queries import sql
from solaris_hooks.exceptions import MigrationChanged, MigrationError

# Any fixed 64-bit number, the same in every replica: "solaris" in ASCII.
advisory_lock_id = 0x736F6C61726973
_file_name = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str
    checksum: str  # sha256 of the file's bytes, hex

    @property
    def file_name(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"


def available_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("solaris_hooks.db").joinpath("migrations").iterdir():
        match = _file_name.match(entry.name)
        if match:
            content = entry.read_bytes()
            found.append(
                Migration(int(match[1]), match[2], content.decode("utf-8"), hashlib.sha256(content).hexdigest())
            )
    return sorted(found, key=lambda migration: migration.version)


def applied_checksums(connection: psycopg.Connection) -> dict[int, str | None]:
    """Each applied version and the checksum recorded for it (None: applied before checksums
    were recorded). The schema_migrations table must exist."""
    rows: list[tuple[int, str | None]] = connection.execute(sql("db/applied_migrations")).fetchall()
    return dict(rows)


def changed_migrations(applied: dict[int, str | None], available: list[Migration]) -> list[Migration]:
    """The applied migrations whose file differs from the one recorded as applied."""
    return [
        migration
        for migration in available
        if applied.get(migration.version) is not None and applied[migration.version] != migration.checksum
    ]


def describe_changed(changed: list[Migration]) -> str:
    names = ", ".join(migration.file_name for migration in changed)
    return (
        f"applied migration(s) changed since they were applied: {names}; restore the file(s) as they were "
        "and put the change in a new migration"
    )


def migrate(url: str, connect_timeout_s: int = 10) -> list[int]:
    """Bring the schema up to date; returns the versions applied by this call.

    MigrationChanged (and nothing applied) when an applied migration's file changed."""
    try:
        connection = psycopg.connect(
            url, connect_timeout=connect_timeout_s, prepare_threshold=one_command_prepare_threshold
        )
    except psycopg.OperationalError as error:
        raise MigrationError(f"cannot connect to the database to migrate: {error}") from None
    applied_now = []
    with connection, connection.transaction():
        connection.execute(sql("db/lock_migrations"), {"lock_id": advisory_lock_id})
        connection.execute(sql("db/create_schema_migrations"))
        applied = applied_checksums(connection)
        available = available_migrations()
        changed = changed_migrations(applied, available)
        if changed:
            raise MigrationChanged(describe_changed(changed))
        for migration in available:
            if migration.version in applied:
                if applied[migration.version] is None:
                    # Trust on first use: a deployment migrated before checksums were recorded
                    # has none yet; the files it runs now are taken as the ones it applied.
                    connection.execute(
                        sql("db/record_migration_checksum"),
                        {"version": migration.version, "checksum": migration.checksum},
                    )
                continue
            try:
                connection.execute(migration.sql)
            except psycopg.Error as error:
                raise MigrationError(f"migration {migration.version:04d}_{migration.name} failed: {error}") from None
            connection.execute(
                sql("db/record_migration"),
                {"version": migration.version, "name": migration.name, "checksum": migration.checksum},
            )
            applied_now.append(migration.version)
    return applied_now
