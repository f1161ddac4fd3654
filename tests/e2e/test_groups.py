"""User groups (issue 18, part 1) through a real proxy: a group's allowance, factors and alert
thresholds apply to its members; LibreChat's role header puts a new user in a group; an
admin's choice wins over the header and takes effect at the next call."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import httpx
import psycopg
import pytest

from tests.support.harness import AdminClient, wait_for
from tests.support.suite import charged, master_key, proxy_of_its_own

groups = {
    # LibreChat's roles, lower-cased: `{{LIBRECHAT_USER_ROLE}}` sends USER or ADMIN.
    "user": {"default_tokens": 3000, "conversion_factor": 0.5, "alert_thresholds": [0.5]},
    "admin": {"default_tokens": 9000, "model_factors": {"fake-model": 1.0}},
}
settings = {
    "default_tokens_per_user": 1000,
    "conversion_factor": 0.376,
    "groups": groups,
    "group_header": "x-solaris-group",
    "lease_idle_s": 1,
}


@pytest.fixture(scope="module")
def grouped(database_url, fake_provider, tmp_path_factory):
    work = tmp_path_factory.mktemp("groups")
    with proxy_of_its_own(database_url, fake_provider.base_url, work, settings, "groups-proxy.log") as process:
        process.config_path = work / "litellm-config.yaml"  # type: ignore[attr-defined]
        yield process


def group_cli(grouped, *args: str) -> subprocess.CompletedProcess:
    """The CLI as an admin runs it beside the proxy: its database and its config (the groups)."""
    env = {name: value for name, value in os.environ.items() if name not in ("DATABASE_URL", "SMTP_HOST")}
    env.update(SOLARIS_DATABASE_URL=grouped.database_url, SOLARIS_CONFIG=str(grouped.config_path))
    command = [sys.executable, "-m", "solaris_hooks.cli.main", "users", "set-group", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def admin(grouped) -> AdminClient:
    return AdminClient(grouped.base_url, master_key)


@pytest.fixture
def user_id() -> str:
    return f"grouped-{uuid.uuid4().hex[:12]}@example.com"


def chat(base_url: str, user_id: str, role: str | None, tokens: int = 40) -> dict:
    headers = {"Authorization": f"Bearer {master_key}", "x-litellm-end-user-id": user_id}
    if role is not None:
        headers["x-solaris-group"] = role
    body = {
        "model": "fake-model",
        "max_tokens": 200,
        "messages": [{"role": "user", "content": f"[[tokens={tokens}]] oi"}],
    }
    response = httpx.post(f"{base_url}/v1/chat/completions", json=body, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def settles(database_url: str, user_id: str) -> list[tuple]:
    with psycopg.connect(database_url) as connection:
        return connection.execute(
            "SELECT tokens, raw_tokens, group_name, factor FROM solaris.ledger"
            " WHERE user_id = %s AND kind = 'settle' ORDER BY id",
            (user_id,),
        ).fetchall()


def settled_calls(database_url: str, user_id: str, count: int) -> list[tuple]:
    """The user's settle rows once there are `count` (with leases, settles come with a batch)."""

    def enough() -> list[tuple] | None:
        rows = settles(database_url, user_id)
        return rows if len(rows) >= count else None

    return wait_for(enough, 15, what=f"{count} settle rows")


def test_a_role_header_puts_a_new_user_in_its_group_with_the_groups_allowance_and_factor(grouped, admin, user_id):
    answer = chat(grouped.base_url, user_id, "USER")
    [(tokens, raw, group, factor)] = settled_calls(grouped.database_url, user_id, 1)
    assert raw == answer["usage"]["total_tokens"]
    assert (tokens, group, float(factor)) == (charged(raw, 0.5), "user", 0.5)
    account = admin.settled_account(user_id)
    assert (account["group"], account["group_source"], account["credited_tokens"]) == ("user", "header", 3000)


def test_a_header_naming_no_configured_group_leaves_the_top_level_settings(grouped, admin, user_id):
    answer = chat(grouped.base_url, user_id, "moderator")
    [(tokens, raw, group, _)] = settled_calls(grouped.database_url, user_id, 1)
    assert (tokens, group) == (charged(answer["usage"]["total_tokens"], 0.376), None)
    account = admin.settled_account(user_id)
    assert (account["group"], account["credited_tokens"]) == (None, 1000)


def test_an_admins_group_wins_over_the_header_from_the_next_call_and_is_audited(grouped, admin, user_id):
    base_url, url = grouped.base_url, grouped.database_url
    for _ in range(3):  # busy: with leases on, the later calls come from a lease priced for "user"
        chat(base_url, user_id, "USER")
    moved = admin.update_user(user_id, group="Admin")
    assert moved.status_code == 200, moved.text
    assert (moved.json()["group"], moved.json()["group_source"]) == ("admin", "admin")
    # The header still says "user". A process holding a lease for the user learns of the
    # change from the batch that writes its next leased call (as of a block): calls until
    # that batch may still be priced for "user", none after it.
    chat(base_url, user_id, "USER")
    settled_calls(url, user_id, 4)
    answer = chat(base_url, user_id, "USER")
    rows = settled_calls(url, user_id, 5)
    assert rows[-1][2:] == ("admin", 1) and rows[-1][0] == charged(answer["usage"]["total_tokens"], 1.0), rows
    with psycopg.connect(url) as connection:
        [(before, after)] = connection.execute(
            "SELECT before->>'group', after->>'group' FROM solaris.audit WHERE user_id = %s AND action = 'user.update'",
            (user_id,),
        ).fetchall()
    assert (before, after) == ("user", "admin")
    # Cleared by the admin: the header's group again, from the next call.
    cleared = admin.update_user(user_id, group=None)
    assert cleared.json()["group"] is None
    chat(base_url, user_id, "USER")
    settled_calls(url, user_id, 6)
    chat(base_url, user_id, "USER")
    assert settled_calls(url, user_id, 7)[-1][2] == "user"


def test_a_group_an_admin_names_must_be_configured(grouped, user_id):
    chat(grouped.base_url, user_id, None)  # the user exists now
    response = AdminClient(grouped.base_url, master_key).update_user(user_id, group="interns")
    assert response.status_code == 422, response.text  # the API's answer to a value it cannot take
    message = response.json()["error"]["message"]
    assert "interns" in message and "admin, user" in message


def test_a_groups_members_are_alerted_at_its_own_thresholds(grouped, admin, user_id):
    """Group "user": 3,000 tokens, alerted at 50 % (the top level alerts at 80 % and 95 %)."""
    chat(grouped.base_url, user_id, "user", tokens=5)
    admin.settled_account(user_id)
    while (account := admin.settled_account(user_id))["used_tokens"] < 1500:
        chat(grouped.base_url, user_id, "user", tokens=190)
    assert account["used_tokens"] < 0.8 * 3000
    with psycopg.connect(grouped.database_url) as connection:
        thresholds = [
            float(level)
            for (level,) in connection.execute(
                "SELECT threshold FROM solaris.alerts WHERE user_id = %s AND kind = 'usage'", (user_id,)
            )
        ]
    assert thresholds == [0.5]


def test_the_cli_and_a_csv_import_put_users_in_groups(grouped, admin, user_id):
    imported = f"imported-{uuid.uuid4().hex[:12]}@example.com"
    csv_text = f"user_id,group\n{imported},ADMIN\n"
    response = httpx.post(
        f"{grouped.base_url}/solaris/users/import",
        content=csv_text.encode(),
        headers={"Authorization": f"Bearer {master_key}", "Content-Type": "text/csv"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    account = admin.account(imported)
    assert (account["group"], account["group_source"], account["credited_tokens"]) == ("admin", "admin", 9000)
    chat(grouped.base_url, user_id, None)
    done = group_cli(grouped, user_id, "user")
    assert done.returncode == 0, done.stderr
    assert admin.account(user_id)["group"] == "user"
    refused = group_cli(grouped, user_id, "nobody")
    assert refused.returncode != 0 and "not a configured group" in refused.stderr


@pytest.fixture(scope="module")
def per_call(database_url, fake_provider, tmp_path_factory):
    work = tmp_path_factory.mktemp("groups-per-call")
    leases_off = {**settings, "leases": False}
    with proxy_of_its_own(database_url, fake_provider.base_url, work, leases_off, "groups-per-call.log") as process:
        yield process


def test_without_leases_an_admins_group_prices_the_very_next_call(per_call, user_id):
    """Every call is reserved in the ledger, which checks the group it was priced for: the
    first call after the change is priced again for the new group (one more round trip)."""
    for _ in range(2):
        chat(per_call.base_url, user_id, "user")
    moved = AdminClient(per_call.base_url, master_key).update_user(user_id, group="admin")
    assert moved.status_code == 200, moved.text
    answer = chat(per_call.base_url, user_id, "user")
    rows = settled_calls(per_call.database_url, user_id, 3)
    assert [row[2:] for row in rows] == [("user", 0.5), ("user", 0.5), ("admin", 1)]
    assert rows[-1][0] == charged(answer["usage"]["total_tokens"], 1.0)
