"""Which database the `solaris` commands use, and where `solaris run` keeps its files.

Every command finds the deployment's database as `solaris run` does: SOLARIS_DATABASE_URL,
else DATABASE_URL, else the embedded Postgres in SOLARIS_DATA_DIR (./.solaris by default),
and says on stderr which one it used. Only `solaris run` creates an embedded Postgres: the
other commands, run from a directory that is not the deployment's, stop with one line that
names the directory and what to do, instead of creating an empty database beside them.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg

from solaris_hooks.db.connection import database_url
from solaris_hooks.db.queries import sql
from solaris_hooks.demo import embedded_postgres
from solaris_hooks.exceptions import DatabaseUnavailable, SettingsError
from solaris_hooks.settings import Environment

hidden = "***"
# `password=...` in a key/value conninfo, quoted or not.
_conninfo_password = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
# What to do when the commands do not find the deployment: one sentence, for every case.
_where_to_look = (
    "run the command from the deployment's directory (where `make run` / `solaris run` started once), "
    "or set SOLARIS_DATA_DIR to its .solaris folder, or SOLARIS_DATABASE_URL to its Postgres"
)


def data_dir() -> Path:
    """SOLARIS_DATA_DIR (./.solaris by default), created: the embedded Postgres, the master key.
    For `solaris run` only; the other commands never create it (`embedded_data_dir`)."""
    path = embedded_data_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


def embedded_data_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Where the embedded Postgres lives, whether or not it exists."""
    return Path(Environment.read(environ).solaris_data_dir or ".solaris").resolve()


def url_source(environ: Mapping[str, str] = os.environ) -> str | None:
    """The variable the database URL comes from (blank ones count as unset), or None: embedded."""
    environment = Environment.read(environ)
    named = (("SOLARIS_DATABASE_URL", environment.solaris_database_url), ("DATABASE_URL", environment.database_url))
    return next((name for name, url in named if url.get_secret_value().strip()), None)


def shown_url(url: str) -> str:
    """The URL with its password replaced by ***, for messages and logs."""
    if not re.match(r"^postgres(ql)?://", url, re.IGNORECASE):
        return _conninfo_password.sub(rf"\g<1>{hidden}", url)
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        credentials, _, host = netloc.rpartition("@")
        user, has_password, _password = credentials.partition(":")
        netloc = f"{user}:{hidden}@{host}" if has_password else netloc
    query = urlencode(
        [(key, hidden if key.lower() == "password" else value) for key, value in parse_qsl(parts.query)], safe="/*:"
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def cli_database_url(environ: Mapping[str, str] = os.environ, *, create: bool = False) -> str:
    """The configured URL, else the embedded Postgres of the data dir (started if the proxy is
    not running, stopped again when this command exits). Only `solaris run` passes create: for
    any other command a data dir without an embedded Postgres is a SettingsError in one line,
    never an empty database made beside it."""
    source = url_source(environ)
    if source is not None:
        url = database_url(environ)
        print(f"solaris: using the database in {source}: {shown_url(url)}", file=sys.stderr, flush=True)
        return url
    embedded_postgres.check_installed()
    directory = embedded_data_dir(environ)
    if not create and not embedded_postgres.exists(directory):
        raise SettingsError(
            f"no embedded Postgres in {directory} (SOLARIS_DATA_DIR, default ./.solaris): {_where_to_look}"
        )
    print(f"solaris: using the embedded Postgres in {directory}", file=sys.stderr, flush=True)
    return embedded_postgres.start(directory)


def require_schema(url: str, environ: Mapping[str, str] = os.environ) -> None:
    """SettingsError when the database has no `solaris` schema (never migrated), and
    DatabaseUnavailable when it cannot be reached; each in one line naming the database."""
    source = url_source(environ)
    where = (
        f"the database in {source} ({shown_url(url)})"
        if source
        else f"the embedded Postgres in {embedded_data_dir(environ)}"
    )
    try:
        with psycopg.connect(url, connect_timeout=10, autocommit=True) as connection:
            row = connection.execute(sql("db/schema_migrations_exists")).fetchone()
    except psycopg.Error as error:
        reason = " ".join(str(error).split())
        raise DatabaseUnavailable(f"cannot reach {where}: {reason}") from None
    if not (row and row[0]):
        raise SettingsError(
            f"{where} has no `solaris` schema (never migrated): if it is the deployment's database, run "
            f"`solaris migrate` (`solaris run` migrates when it starts); if not, {_where_to_look}"
        )


def deployment_database_url(environ: Mapping[str, str] = os.environ) -> str:
    """The deployment's database for the commands that read or write the ledger: found as
    `solaris run` finds it, never created, and migrated; else one line saying what to do."""
    url = cli_database_url(environ)
    require_schema(url, environ)
    return url
