"""Real parts shared by the kinds of test: one Postgres, one fake provider, one SMTP catcher.

Each starts only when a test asks for it (the unit tests never do). Postgres is
`SOLARIS_DATABASE_URL`/`DATABASE_URL` when set, else an embedded pgserver in a temporary
directory. The session's LiteLLM proxy is in tests/e2e/conftest.py; the names tests share
(keys, settings, helpers) are in tests/support/suite.py.
"""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING

import pytest

# Before anything imports LiteLLM: otherwise it fetches its cost map from GitHub at import.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

if TYPE_CHECKING:
    import openai

    from tests.support.fake_provider import FakeProvider
    from tests.support.harness import MailCatcher

# The parts are imported by the fixtures that start them: a unit run pays for none of them.


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    from solaris_hooks.db.migrations import migrate

    given = os.environ.get("SOLARIS_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if given:
        migrate(given)
        yield given
        return
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="delete")
    url = server.get_uri()
    migrate(url)
    yield url
    server.cleanup()


@pytest.fixture
def empty_database(database_url: str) -> str:
    from tests.support.harness import scratch_database

    with scratch_database(database_url, migrated=False) as url:
        yield url


@pytest.fixture
def own_database(database_url: str, request: pytest.FixtureRequest) -> str:
    """A migrated database that only this test uses; its ledger must replay too."""
    from tests.support.harness import assert_ledger_consistent, scratch_database

    with scratch_database(database_url) as url:
        yield url
        assert_ledger_consistent(url, getattr(request.module, "overspent_on_purpose", ()))


@pytest.fixture(scope="session")
def fake_provider() -> FakeProvider:
    from tests.support.fake_provider import FakeProvider

    provider = FakeProvider().start()
    yield provider
    provider.stop()


@pytest.fixture
def fake(fake_provider: FakeProvider) -> openai.OpenAI:
    """The fake provider itself, through the official client (no proxy in between)."""
    import openai

    return openai.OpenAI(base_url=fake_provider.base_url, api_key="fake-key", max_retries=0)


@pytest.fixture(scope="session")
def mail_catcher() -> MailCatcher:
    """The SMTP server the session's proxy sends its alerts to."""
    from tests.support.harness import MailCatcher

    catcher = MailCatcher().start()
    yield catcher
    catcher.stop()


@pytest.fixture
def user_id() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


@pytest.fixture
def fresh_degraded():
    """Every kind of LiteLLM failure is logged again on its first occurrence in the test."""
    from solaris_hooks.quota import degraded

    degraded.forget_logged()
    yield
    degraded.forget_logged()


@pytest.fixture(autouse=True)
def ledger_replays(request: pytest.FixtureRequest):
    """After every test that touched the database, the ledger replays to the balances."""
    yield
    if "database_url" in request.fixturenames:
        from tests.support.harness import assert_ledger_consistent

        assert_ledger_consistent(request.getfixturevalue("database_url"))
