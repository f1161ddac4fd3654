"""Metered streams reserved from leases (issue 16), through real proxies with leases on.

A busy user's stream takes its first chunk from the proxy's lease with no round trip and
grows from it (topping it up from all the user has free when it runs short); it is charged
exactly what it delivered, never past the allowance, and a proxy killed mid-stream leaves a
journal line by which the next one charges what the stream held.
"""

from __future__ import annotations

import json
import uuid

import httpx
import psutil
import psycopg
import pytest

from tests.e2e.test_metered_streams import concurrently, cut_notices, stream_chat
from tests.e2e.test_reliability import account_row, kill_tree, own_proxy, process_tree, solaris_cli, stop
from tests.support.fake_provider import count_prompt_tokens
from tests.support.harness import AdminClient, assert_ledger_consistent, wait_for
from tests.support.suite import charged, master_key, proxy_of_its_own

allowance = 3000
# max_tokens keeps a stream's worst case (~200 tokens) small enough for a lease of a 3,000
# allowance: a lease serves a stream only while it has that worst case free.
max_tokens = 500
settings = {
    "leases": True,
    "lease_idle_s": 1,
    "default_tokens_per_user": allowance,
    "conversion_factor": 0.376,
    "sweep_interval_s": 0.5,
}


@pytest.fixture(scope="module")
def leased(database_url, fake_provider, tmp_path_factory):
    with proxy_of_its_own(
        database_url, fake_provider.base_url, tmp_path_factory.mktemp("leased-streams"), settings, "leased-streams.log"
    ) as process:
        yield process, process.database_url


@pytest.fixture
def user_id() -> str:
    return f"leased-stream-{uuid.uuid4().hex[:12]}"


def settle_rows(database_url: str, user_id: str) -> list[tuple]:
    with psycopg.connect(database_url) as connection:
        return connection.execute(
            "SELECT call_id, lease_id, tokens, raw_tokens, reason FROM solaris.ledger"
            " WHERE user_id = %s AND kind = 'settle' ORDER BY id",
            (user_id,),
        ).fetchall()


def own_reservations(database_url: str, user_id: str) -> int:
    """Reservations of calls' own (not leases) the user's calls took in the ledger."""
    with psycopg.connect(database_url) as connection:
        return connection.execute(
            "SELECT count(*) FROM solaris.ledger"
            " WHERE user_id = %s AND kind = 'reserve' AND call_id NOT LIKE 'lease-%%'",
            (user_id,),
        ).fetchone()[0]


def test_a_busy_users_streams_come_from_the_lease_and_are_charged_what_they_delivered(leased, user_id):
    base_url, url = leased[0].base_url, leased[1]
    text = "[[tokens=120]] conte uma história"
    results = [stream_chat(base_url, user_id, text, max_tokens=max_tokens) for _ in range(6)]
    assert all(r["status"] == 200 and r["done"] and r["finish_reasons"] == ["stop"] for r in results), results
    assert all(result["chunks"] == 120 for result in results)
    account = AdminClient(base_url, master_key).settled_account(user_id)
    settles = settle_rows(url, user_id)
    assert len(settles) == 6
    # The first call finds no lease (a lease is for a user who calls again): its own
    # reservation; the five after it come from the lease, with no reservation of their own.
    assert own_reservations(url, user_id) == 1
    assert [lease_id is not None for _, lease_id, _, _, _ in settles] == [False] + [True] * 5, settles
    prompt = count_prompt_tokens([{"role": "user", "content": text}])
    assert all(raw == prompt + 120 and tokens == charged(raw) for _, _, tokens, raw, _ in settles), (prompt, settles)
    assert account["used_tokens"] == 6 * charged(prompt + 120)


def test_leased_streams_past_the_allowance_end_cleanly_and_spend_no_more_than_it(leased, user_id):
    base_url, url = leased[0].base_url, leased[1]
    stream_chat(base_url, user_id, "[[tokens=5]] oi", max_tokens=max_tokens)  # busy from here on
    results = concurrently(
        20, lambda: stream_chat(base_url, user_id, "[[chunk_sleep=0.01]] [[tokens=400]] conte", max_tokens=max_tokens)
    )
    assert [result["status"] for result in results] == [200] * 20, [r["content"][:200] for r in results]
    assert all(result["done"] and len(result["finish_reasons"]) == 1 for result in results), results
    cut = [result for result in results if result["finish_reasons"] == ["length"]]
    assert cut, "20 answers of 400 tokens at 0.376 are more than 3,000: some must be cut"
    assert all(any(notice in result["content"] for notice in cut_notices) for result in cut)
    account = AdminClient(base_url, master_key).settled_account(user_id)
    assert account["used_tokens"] <= account["credited_tokens"] == allowance, account
    assert account["used_tokens"] >= allowance - charged(400), "the allowance is spent, not held back in the lease"
    settles = settle_rows(url, user_id)
    assert len(settles) == 21 and sum(lease_id is not None for _, lease_id, _, _, _ in settles) >= 10, settles
    assert account["used_tokens"] == sum(tokens for _, _, tokens, _, _ in settles)
    # Each call paid at least the completion it delivered (a cut one's last chunk is the notice).
    assert all(tokens == charged(raw) for _, _, tokens, raw, _ in settles)
    delivered = sorted(result["chunks"] - (1 if result in cut else 0) for result in results)
    raws = sorted(raw for _, _, _, raw, _ in settles[1:]) if settles[0][1] is None else None
    assert raws is None or all(raw >= chunks for raw, chunks in zip(raws, delivered, strict=True))


def test_hidden_reasoning_of_a_leased_stream_is_charged(leased, user_id):
    base_url = leased[0].base_url
    stream_chat(base_url, user_id, "[[tokens=5]] oi", max_tokens=max_tokens)
    result = stream_chat(base_url, user_id, "[[tokens=20]] [[reasoning=400]] pense", max_tokens=max_tokens)
    assert result["status"] == 200 and result["done"] and result["chunks"] == 20, result
    AdminClient(base_url, master_key).settled_account(user_id)
    call_id, lease_id, tokens, raw, _ = settle_rows(leased[1], user_id)[-1]
    assert lease_id is not None and raw > 420 and tokens == charged(raw), (lease_id, tokens, raw)


def test_a_proxy_killed_mid_stream_is_charged_what_the_stream_held(own_database, fake_provider, tmp_path):
    """kill -9 while a leased stream is delivering: nothing of it is in the ledger, the lease
    would expire and give it all back; the journal's running line makes the next proxy charge
    what the stream held, at least what the client had read."""
    user_id = f"leased-stream-kill-{uuid.uuid4().hex[:12]}"
    crash_settings = {
        **settings,
        "default_tokens_per_user": 20_000,
        "settle_batch_interval_ms": 200,
        "lease_ttl_s": 5,
        "spool_dir": str(tmp_path / "spool"),
    }
    first = own_proxy("leased-stream-kill", own_database, fake_provider.base_url, crash_settings, tmp_path / "a")
    trees: list[psutil.Process] = []
    read_chunks = 0
    try:
        first.wait_ready()
        trees += process_tree(first)
        stream_chat(first.base_url, user_id, "[[tokens=5]] oi", max_tokens=2000)  # busy from here on
        body = {
            "model": "fake-model",
            "stream": True,
            "max_tokens": 2000,
            "messages": [{"role": "user", "content": "[[chunk_sleep=0.01]] [[tokens=1500]] longa"}],
        }
        headers = {"Authorization": f"Bearer {master_key}", "x-litellm-end-user-id": user_id}
        try:
            with httpx.stream(
                "POST", f"{first.base_url}/v1/chat/completions", json=body, headers=headers, timeout=60
            ) as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        read_chunks += bool(json.loads(line[6:])["choices"][0]["delta"].get("content"))
                    if read_chunks >= 300:  # past two growths: held more than its first chunk
                        assert not kill_tree(trees), "a proxy process survived SIGKILL"
                        break
        except httpx.HTTPError:
            pass  # the proxy died under the client
        first.stop()
        before = account_row(own_database, user_id)
        second = own_proxy("leased-stream-kill-2", own_database, fake_provider.base_url, crash_settings, tmp_path / "b")
        try:
            second.wait_ready()
            trees += process_tree(second)
            account = wait_for(
                lambda: (
                    (row := account_row(own_database, user_id))["reserved_tokens"] == 0
                    and row["used_tokens"] > before["used_tokens"]
                    and row
                ),
                60,
                0.2,
                what="the journal replayed and the lease expired",
            )
        finally:
            stop(second)
    finally:
        kill_tree(trees)
        first.stop()
    prompt = count_prompt_tokens([{"role": "user", "content": body["messages"][0]["content"]}])
    charged_now = account["used_tokens"] - before["used_tokens"]
    assert charged(prompt + read_chunks) <= charged_now <= charged(prompt + 2000), (read_chunks, charged_now)
    [row] = [row for row in settle_rows(own_database, user_id) if row[4] and "mid-stream" in row[4]]
    assert row[1] is not None and row[2] == charged_now, row
    assert account["used_tokens"] <= account["credited_tokens"]
    assert_ledger_consistent(own_database)
    doctor = solaris_cli("doctor", database_url=own_database)
    assert doctor.returncode == 0 and "FAIL" not in doctor.stdout, doctor.stdout + doctor.stderr
