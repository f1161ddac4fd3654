"""Unit tests: pure functions and in-process objects; no process, no Postgres, no socket.

A unit test that asks for a fixture starting one of those fails the collection, naming the
test and the fixture, instead of quietly starting a database or a proxy. Tests that drive
LiteLLM's completion path or import its proxy app are integration tests: seconds each,
and the whole unit run has 15 s on this project's 2-core machines.
"""

from __future__ import annotations

from pathlib import Path

import pytest

unit_dir = Path(__file__).resolve().parent
# The shared fixtures that start a database, a server or a process (tests/conftest.py and
# tests/e2e/conftest.py); fixtures built on them bring them into a test's closure too.
process_fixtures = frozenset(
    {
        "database_url",
        "empty_database",
        "own_database",
        "fake_provider",
        "fake",
        "mail_catcher",
        "proxy",
        "admin",
        "http",
        "client",
        "async_client",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    offenders = []
    for item in items:
        asked = process_fixtures.intersection(getattr(item, "fixturenames", ()))
        if asked and unit_dir in Path(item.path).resolve().parents:
            offenders.append(f"  {item.nodeid} asks for {', '.join(sorted(asked))}")
    if offenders:
        raise pytest.UsageError(
            "unit tests start no process, database or server; move these to tests/integration or tests/e2e:\n"
            + "\n".join(offenders)
        )
