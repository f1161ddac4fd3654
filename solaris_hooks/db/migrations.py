"""Versioned SQL migrations for the `solaris` schema, applied at start-up.

Files `migrations/NNNN_name.sql` run in order, each once. The whole run holds a
transaction-scoped advisory lock, so replicas that start together apply each file once
and the later ones find the work done. Nothing here touches `public`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from solaris_hooks.exceptions import MigrationError

schema = "solaris"
# Any fixed 64-bit number, the same in every replica: "solaris" in ASCII.
advisory_lock_id = 0x736F6C61726973
_file_name = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("solaris_hooks.db").joinpath("migrations").iterdir():
        match = _file_name.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda migration: migration.version)


def migrate(url: str, connect_timeout_s: int = 10) -> list[int]:
    """Bring the schema up to date; returns the versions applied by this call."""
    try:
        connection = psycopg.connect(url, connect_timeout=connect_timeout_s)
    except psycopg.OperationalError as error:
        raise MigrationError(f"cannot connect to the database to migrate: {error}") from None
    applied_now = []
    with connection, connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_lock_id,))
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        connection.execute(
            f"""CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
                        version integer PRIMARY KEY,
                        name text NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {row[0] for row in connection.execute(f"SELECT version FROM {schema}.schema_migrations")}
        for migration in available_migrations():
            if migration.version in done:
                continue
            try:
                connection.execute(migration.sql)
            except psycopg.Error as error:
                raise MigrationError(f"migration {migration.version:04d}_{migration.name} failed: {error}") from None
            connection.execute(
                f"INSERT INTO {schema}.schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            applied_now.append(migration.version)
    return applied_now
