"""Refused calls per user (issue 18, part 5): counted without a write of their own and shown
on the account, whatever refused them (a used-up allowance, a block)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.support.harness import AdminClient, wait_for
from tests.support.suite import master_key, proxy_of_its_own

settings = {"default_tokens_per_user": 60, "conversion_factor": 0.376}


@pytest.fixture(scope="module")
def proxy(database_url, fake_provider, tmp_path_factory):
    work = tmp_path_factory.mktemp("refusal-counts")
    with proxy_of_its_own(database_url, fake_provider.base_url, work, settings, "refusal-counts.log") as process:
        yield process


def chat(base_url: str, user_id: str) -> int:
    body = {"model": "fake-model", "max_tokens": 50, "messages": [{"role": "user", "content": "[[tokens=40]] oi"}]}
    headers = {"Authorization": f"Bearer {master_key}", "x-litellm-end-user-id": user_id}
    return httpx.post(f"{base_url}/v1/chat/completions", json=body, headers=headers, timeout=60).status_code


def test_each_refused_call_is_counted_on_its_account_whatever_refused_it(proxy):
    admin = AdminClient(proxy.base_url, master_key)
    user_id = f"refused-{uuid.uuid4().hex[:12]}@example.com"
    statuses = [chat(proxy.base_url, user_id) for _ in range(6)]  # 60 tokens: a few calls, then refusals
    refused = statuses.count(429)
    assert statuses[0] == 200 and refused >= 2 and set(statuses) == {200, 429}, statuses
    account = wait_for(
        lambda: (row := admin.account(user_id)) and row["refused_calls"] == refused and row,
        15,
        what=f"{refused} refusals counted",
    )
    assert account["last_refused_at"] is not None
    admin.add_tokens(user_id, 10_000)
    blocked = admin.update_user(user_id, status="blocked")
    assert blocked.status_code == 200, blocked.text
    # A blocked account's calls are refused, and counted too.
    for _ in range(2):
        assert chat(proxy.base_url, user_id) == 403
    wait_for(lambda: admin.account(user_id)["refused_calls"] == refused + 2, 15, what="blocked calls counted")


def test_an_account_never_refused_counts_none(proxy):
    admin = AdminClient(proxy.base_url, master_key)
    user_id = f"served-{uuid.uuid4().hex[:12]}@example.com"
    assert chat(proxy.base_url, user_id) == 200
    account = admin.settled_account(user_id)
    assert (account["refused_calls"], account["last_refused_at"]) == (0, None)
