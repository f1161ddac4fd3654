"""Metered streams (issue 14) through a real proxy with the shipped defaults (1,000 tokens,
factor 0.376): a streamed chat call holds its prompt and a chunk, grows as it delivers, and
ends cleanly with a notice when the allowance is used up."""

from __future__ import annotations

import json
import threading
import time
import uuid

import httpx
import psycopg
import pytest

from tests.support.fake_provider import count_prompt_tokens
from tests.support.harness import AdminClient
from tests.support.suite import charged, master_key, proxy_of_its_own

allowance = 1000
factor = 0.376
cut_notices = ("[Resposta interrompida", "[Answer cut")


@pytest.fixture(scope="module")
def metered(database_url, fake_provider, tmp_path_factory):
    settings = {"default_tokens_per_user": allowance, "conversion_factor": factor, "sweep_interval_s": 0.5}
    with proxy_of_its_own(
        database_url, fake_provider.base_url, tmp_path_factory.mktemp("metered"), settings, "metered-proxy.log"
    ) as process:
        yield process, process.database_url


@pytest.fixture
def admin(metered) -> AdminClient:
    return AdminClient(metered[0].base_url, master_key)


@pytest.fixture
def user_id() -> str:
    return f"metered-{uuid.uuid4().hex[:12]}"


def stream_chat(base_url: str, user_id: str, text: str, lines_max: int | None = None, **extra: object) -> dict:
    """One streamed call without max_tokens, read as a client reads it: status, content, end."""
    body = {"model": "fake-model", "stream": True, "messages": [{"role": "user", "content": text}], **extra}
    headers = {"Authorization": f"Bearer {master_key}", "x-litellm-end-user-id": user_id}
    result: dict = {"status": None, "content": "", "finish_reasons": [], "done": False, "chunks": 0, "usage_chunks": 0}
    with httpx.stream("POST", f"{base_url}/v1/chat/completions", json=body, headers=headers, timeout=60) as response:
        result["status"] = response.status_code
        if response.status_code != 200:
            result["content"] = response.read().decode()
            return result
        for index, line in enumerate(response.iter_lines()):
            if lines_max is not None and index >= lines_max:
                return result  # the client walks away
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                result["done"] = True
                continue
            chunk = json.loads(line[6:])
            result["usage_chunks"] += bool(chunk.get("usage"))
            for choice in chunk.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    result["content"] += content
                    result["chunks"] += 1
                if choice.get("finish_reason"):
                    result["finish_reasons"].append(choice["finish_reason"])
    return result


def concurrently(count: int, call) -> list[dict]:
    results: list[dict] = [{} for _ in range(count)]

    def one(position: int) -> None:
        results[position] = call()

    threads = [threading.Thread(target=one, args=(position,)) for position in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def ledger_rows(database_url: str, user_id: str) -> list[tuple]:
    with psycopg.connect(database_url) as connection:
        return connection.execute(
            "SELECT kind, tokens, raw_tokens, call_id FROM solaris.ledger WHERE user_id = %s ORDER BY id", (user_id,)
        ).fetchall()


def test_two_concurrent_streams_without_max_tokens_are_both_answered(metered, admin, user_id):
    """Before: the first call reserved ceil((prompt + 4096) × 0.376) > 1,000 and the second was refused."""
    results = concurrently(
        2, lambda: stream_chat(metered[0].base_url, user_id, "[[chunk_sleep=0.02]] [[tokens=60]] oi")
    )
    assert [result["status"] for result in results] == [200, 200], results
    assert all(result["done"] and result["finish_reasons"] == ["stop"] for result in results), results
    assert all(result["chunks"] == 60 for result in results)
    account = admin.settled_account(user_id)
    assert 0 < account["used_tokens"] <= account["credited_tokens"]


def test_ten_streams_past_the_allowance_all_end_cleanly_and_spend_no_more_than_it(metered, admin, user_id):
    results = concurrently(
        10, lambda: stream_chat(metered[0].base_url, user_id, "[[chunk_sleep=0.01]] [[tokens=400]] conte")
    )
    assert [result["status"] for result in results] == [200] * 10, [r["content"][:200] for r in results]
    assert all(result["done"] and len(result["finish_reasons"]) == 1 for result in results), results
    cut = [result for result in results if result["finish_reasons"] == ["length"]]
    assert cut, "400 × 10 raw tokens at 0.376 is more than 1,000: some answer must be cut"
    assert all(any(notice in result["content"] for notice in cut_notices) for result in cut)
    account = admin.settled_account(user_id)
    assert account["used_tokens"] <= account["credited_tokens"], account
    rows = ledger_rows(metered[1], user_id)
    settles = [row for row in rows if row[0] == "settle"]
    assert len(settles) == 10
    # Every call is charged its raw tokens at the factor, rounded up, and the account's used
    # tokens are exactly those charges; each call paid at least the completion it delivered.
    assert all(tokens == charged(raw) for _, tokens, raw, _ in settles)
    assert account["used_tokens"] == sum(tokens for _, tokens, _, _ in settles)
    # Each call's raw tokens are its prompt (one text, so one count for all ten) and exactly
    # the completion tokens it delivered (one per chunk; a cut answer's last chunk is our notice).
    delivered = sorted(result["chunks"] - (1 if result in cut else 0) for result in results)
    prompts = {raw - tokens for raw, tokens in zip(sorted(raw for _, _, raw, _ in settles), delivered, strict=True)}
    assert len(prompts) == 1 and 0 < prompts.pop() < 30, (sorted(row[2] for row in settles), delivered)
    assert account["used_tokens"] >= allowance - charged(400), "the allowance is spent, not held back"
    assert any(row[0] == "extend" for row in rows)


def test_hidden_reasoning_the_provider_bills_is_charged_though_never_streamed(metered, admin, user_id):
    """A reasoning model bills thinking it never sends: our chunk count covers 20 tokens, the
    provider's usage says 420 more. Before: the settle was capped at what the stream held (its
    prompt and first chunk), so the reasoning was free; now the reservation grows to the usage."""
    result = stream_chat(
        metered[0].base_url,
        user_id,
        "[[tokens=20]] [[reasoning=400]] pense",
        stream_options={"include_usage": True},
    )
    assert result["status"] == 200 and result["done"] and result["chunks"] == 20, result
    account = admin.settled_account(user_id)
    assert charged(420) < account["used_tokens"] <= account["credited_tokens"], account
    settle = next(row for row in ledger_rows(metered[1], user_id) if row[0] == "settle")
    assert settle[1] == charged(settle[2]) and settle[2] > 420, settle


def test_hidden_reasoning_is_charged_when_the_client_asks_for_no_usage(metered, admin, user_id):
    """LibreChat streams without `stream_options`: the provider's usage is asked for upstream
    all the same, so its reasoning is charged, and the client gets no usage chunk it did not ask for."""
    result = stream_chat(metered[0].base_url, user_id, "[[tokens=20]] [[reasoning=400]] pense")
    assert result["status"] == 200 and result["done"] and result["chunks"] == 20, result
    assert not result["usage_chunks"], result
    account = admin.settled_account(user_id)
    assert charged(420) < account["used_tokens"] <= account["credited_tokens"], account


def test_reasoning_past_what_is_free_is_charged_up_to_the_allowance_and_no_further(metered, admin, user_id):
    """Usage beyond what the user has free is charged up to the allowance: never an overspend."""
    result = stream_chat(
        metered[0].base_url,
        user_id,
        "[[tokens=20]] [[reasoning=9000]] pense muito",
        stream_options={"include_usage": True},
    )
    assert result["status"] == 200 and result["done"], result
    account = admin.settled_account(user_id)
    assert account["used_tokens"] == account["credited_tokens"] == allowance, account


def test_a_provider_error_mid_stream_is_charged_what_was_delivered(metered, admin, user_id):
    # Paced, so the chunks before the break reach the client before the drop on a loaded machine too.
    result = stream_chat(metered[0].base_url, user_id, "[[die_after=8]] [[chunk_sleep=0.05]] [[tokens=200]] conte")
    assert result["chunks"] >= 1
    account = admin.settled_account(user_id)
    assert charged(8) <= account["used_tokens"] < charged(200), account


def test_a_client_that_leaves_while_the_stream_grows_is_charged_what_it_was_sent(metered, admin, user_id):
    """The client walks away around the first growths (128 raw tokens held, then 256 more)."""
    for lines_max in (250, 262, 274):  # two lines per event: about 125 to 137 chunks read
        stream_chat(metered[0].base_url, user_id, "[[chunk_sleep=0.005]] [[tokens=2000]] longa", lines_max=lines_max)
    account = admin.settled_account(user_id)
    assert account["used_tokens"] >= 3 * charged(100), account
    assert account["used_tokens"] <= account["credited_tokens"]
    kinds = [row[0] for row in ledger_rows(metered[1], user_id)]
    assert kinds.count("reserve") == 3 and kinds.count("settle") == 3, kinds


def test_a_client_that_leaves_while_a_growth_waits_is_charged_what_it_was_sent(metered, admin, user_id):
    """A growth is held in flight on purpose: the test locks the account row, so the stream's
    first growth (at 128 raw tokens) waits on it; the client reads what it was sent, leaves
    while that growth waits, and only then is the lock let go. The call is settled at what
    was delivered: at least what the client read, never more than was held."""
    stream_chat(metered[0].base_url, user_id, "[[tokens=3]] abre a conta")  # the account exists
    before = admin.settled_account(user_id)
    body = {
        "model": "fake-model",
        "stream": True,
        "messages": [{"role": "user", "content": "[[chunk_sleep=0.005]] [[tokens=2000]] longa"}],
    }
    headers = {"Authorization": f"Bearer {master_key}", "x-litellm-end-user-id": user_id}
    read_chunks = 0
    url = f"{metered[0].base_url}/v1/chat/completions"
    with psycopg.connect(metered[1]) as locker:
        with httpx.stream("POST", url, json=body, headers=headers, timeout=60) as response:
            lines = response.iter_lines()
            next(line for line in lines if line.startswith("data: "))  # reserved: the stream runs
            locker.execute("SELECT 1 FROM solaris.accounts WHERE user_id = %s FOR UPDATE", (user_id,))
            for line in lines:
                if line.startswith("data: ") and "content" in line:
                    read_chunks += 1
                    if read_chunks >= 120:  # short of the 128 held: the growth comes next
                        break
            waiting = wait_for_lock_waiters(metered[1], 1)
        # The client is gone; the growth still waits on the lock until the locker commits.
        locker.commit()
    assert waiting, "the stream's growth never waited on the locked account"
    account = admin.settled_account(user_id)
    charged_now = account["used_tokens"] - before["used_tokens"]
    assert charged(120) <= charged_now <= charged(128 + 30), (charged_now, account)
    assert account["used_tokens"] <= account["credited_tokens"] and account["reserved_tokens"] == 0, account


def wait_for_lock_waiters(database_url: str, count: int, timeout_s: float = 20) -> bool:
    """Whether `count` sessions came to wait on a row lock within timeout_s."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(database_url, autocommit=True) as connection:
        while time.monotonic() < deadline:
            waiting = connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            ).fetchone()[0]
            if waiting >= count:
                return True
            time.sleep(0.05)
    return False


def test_a_stream_without_usage_is_charged_its_tokens_not_the_bytes_it_was_let_through_on(metered, admin, user_id):
    """Far from the edge chunks pass on their UTF-8 length (3 bytes a token here); a stream
    without usage, whole or broken off, is still charged the tokenizer's count of what it
    delivered, never those bytes."""
    base_url = metered[0].base_url
    with_usage = stream_chat(base_url, user_id, "[[tokens=200]] conte")
    without_usage = stream_chat(base_url, user_id, "[[no_usage]] [[tokens=200]] conte")
    assert with_usage["content"] == without_usage["content"] and without_usage["usage_chunks"] == 0
    assert len(without_usage["content"].encode()) >= 3 * 200 - 1
    broken_text = "[[die_after=150]] [[chunk_sleep=0.005]] [[tokens=200]] conte"
    broken = stream_chat(base_url, user_id, broken_text)
    assert broken["chunks"] >= 100
    admin.settled_account(user_id)
    reported, counted, counted_broken = (row[2] for row in ledger_rows(metered[1], user_id) if row[0] == "settle")
    assert 200 < counted <= reported + 5, (reported, counted)
    prompt = count_prompt_tokens([{"role": "user", "content": broken_text}])
    assert prompt + 100 <= counted_broken <= prompt + 150 + 5, (prompt, counted_broken)
