"""An embedded Postgres (pgserver) for `solaris run` when no database URL is given.

Its data lives in `<data dir>/pgdata` and survives restarts; it listens only on a Unix
socket inside the data dir, so it needs no port and is reachable by no one else.
"""

from __future__ import annotations

import warnings
from pathlib import Path


def start(data_dir: Path) -> str:
    """Start (or reuse) the server and return its connection URL."""
    pgdata = data_dir / "pgdata"
    pgdata.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # platformdirs warns about XDG_RUNTIME_DIR on servers; its fallback works here.
        warnings.simplefilter("ignore")
        import pgserver  # imported late: only this path needs it

        server = pgserver.get_server(pgdata, cleanup_mode="stop")
    return server.get_uri()
