"""An embedded Postgres (pgserver) for `solaris run` when no database URL is given.

Its data lives in `<data dir>/pgdata` and survives restarts; it listens only on a Unix
socket inside the data dir, so it needs no port and is reachable by no one else.
pgserver is the optional extra `solaris-hooks[embedded]`: a production install uses a
Postgres of its own and does without it.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

from solaris_hooks.exceptions import SettingsError


def check_installed() -> None:
    """SettingsError, in one line that says what to install, when pgserver is missing."""
    if importlib.util.find_spec("pgserver") is None:
        raise SettingsError(
            "no database URL, and the embedded Postgres is not installed: "
            "pip install 'solaris-hooks[embedded]', or set SOLARIS_DATABASE_URL to a Postgres URL"
        )


def exists(data_dir: Path) -> bool:
    """Whether `start` has made a server in `data_dir` before (initdb writes PG_VERSION)."""
    return (data_dir / "pgdata" / "PG_VERSION").is_file()


def start(data_dir: Path) -> str:
    """Start (or reuse) the server and return its connection URL."""
    check_installed()
    pgdata = data_dir / "pgdata"
    pgdata.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # platformdirs warns about XDG_RUNTIME_DIR on servers; its fallback works here.
        warnings.simplefilter("ignore")
        import pgserver  # imported late: only this path needs it, and only with the extra

        server = pgserver.get_server(pgdata, cleanup_mode="stop")
    return server.get_uri()
