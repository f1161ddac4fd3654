"""Airtight enforcement (issue 12, classes 1, 4 and 5, and the learned prompt margin), attacked
as a hostile client would, through a real proxy with the official `openai` client.

The proxy here has a short reservation TTL (so calls can outlive their reservation) and its
own database (so the prompt margins it learns touch no other test).
"""

from __future__ import annotations

import uuid

import httpx
import openai
import psycopg
import pytest

from tests.support.harness import AdminClient, wait_for
from tests.support.suite import charged, master_key, proxy_of_its_own, proxy_settings

allowance = 1000
factor = proxy_settings["conversion_factor"]
reservation_ttl_s = 2
title_prompt = (
    "Please generate a concise, 5-word-or-less title for the conversation, using its same language, "
    'with no punctuation.\n\n||>User:\n"Olá, tudo bem?"\n||>Response:\n"Tudo ótimo!"\n\n||>Title:'
)


@pytest.fixture(scope="module")
def strict(database_url, fake_provider, tmp_path_factory):
    """A proxy of its own: reservations last 2 s, titles free, its own database."""
    settings = {
        "default_tokens_per_user": allowance,
        "conversion_factor": factor,
        "reservation_ttl_s": reservation_ttl_s,
        "sweep_interval_s": 0.3,
        "title_calls": "free",
    }
    with proxy_of_its_own(
        database_url, fake_provider.base_url, tmp_path_factory.mktemp("strict"), settings, "strict-proxy.log"
    ) as process:
        yield process, process.database_url


@pytest.fixture
def proxy_url(strict) -> str:
    return strict[0].base_url


@pytest.fixture
def strict_admin(proxy_url) -> AdminClient:
    return AdminClient(proxy_url, master_key)


@pytest.fixture
def openai_client(proxy_url) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{proxy_url}/v1", api_key=master_key, max_retries=0)


def chat(client: openai.OpenAI, user_id: str, text: str, **extra):
    headers = {"x-litellm-end-user-id": user_id, **extra.pop("extra_headers", {})}
    return client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": text}], extra_headers=headers, **extra
    )


def ledger_rows(database_url: str, user_id: str) -> list[tuple]:
    with psycopg.connect(database_url) as connection:
        return connection.execute(
            "SELECT kind, tokens, raw_tokens, call_id, reason FROM solaris.ledger WHERE user_id = %s ORDER BY id",
            (user_id,),
        ).fetchall()


def assert_within_allowance(account: dict) -> None:
    assert account["used_tokens"] <= account["credited_tokens"], account


class TestClientChosenCallIds:
    """Class 1: the reservation key is ours; an id the client sends never makes a call free."""

    @pytest.mark.parametrize("where", ["header", "body"])
    def test_a_reused_call_id_is_charged_every_time(self, openai_client, strict_admin, user_id, where):
        """Three calls with one client-chosen id are three reservations and three charges."""
        chosen = (
            {"extra_headers": {"x-litellm-call-id": "same-id"}}
            if where == "header"
            else {"extra_body": {"litellm_call_id": "same-id"}}
        )
        totals = [chat(openai_client, user_id, "[[tokens=10]] oi", **chosen).usage.total_tokens for _ in range(3)]
        account = strict_admin.settled_account(user_id)
        assert account["used_tokens"] == sum(charged(total) for total in totals)

    def test_a_used_up_user_reusing_an_earlier_id_is_refused(self, openai_client, strict_admin, user_id):
        """Before: reusing a reserved id let a used-up user through for free, again and again."""
        chat(
            openai_client,
            user_id,
            "[[tokens=100000]] tudo",
            max_tokens=100000,
            extra_headers={"x-litellm-call-id": "spent-id"},
        )
        assert strict_admin.settled_account(user_id)["remaining_tokens"] <= 1
        for _ in range(3):
            with pytest.raises(openai.RateLimitError) as refused:
                chat(
                    openai_client, user_id, "[[tokens=500]] de graça?", extra_headers={"x-litellm-call-id": "spent-id"}
                )
            assert "cota" in refused.value.body["message"]
        account = strict_admin.settled_account(user_id)
        assert_within_allowance(account)

    def test_a_call_asking_for_no_logging_is_still_charged(self, openai_client, strict_admin, user_id):
        """Before: `"no-log": true` made LiteLLM skip our success event; the reservation expired, the call was free."""
        response = chat(openai_client, user_id, "[[tokens=50]] sem registro", extra_body={"no-log": True})
        assert strict_admin.settled_account(user_id)["used_tokens"] == charged(response.usage.total_tokens)

    def test_a_blocked_user_reusing_an_id_is_refused(self, openai_client, strict_admin, user_id):
        """A blocked account gets its 403 whatever id the call carries."""
        chat(openai_client, user_id, "[[tokens=5]] oi", extra_headers={"x-litellm-call-id": "blocked-id"})
        strict_admin.http.patch(f"/solaris/users/{user_id}", json={"status": "blocked"}).raise_for_status()
        with pytest.raises(openai.PermissionDeniedError):
            chat(openai_client, user_id, "[[tokens=5]] oi", extra_headers={"x-litellm-call-id": "blocked-id"})

    def test_an_id_of_someone_elses_call_in_flight_charges_its_own_sender(self, proxy_url, strict_admin):
        """An attacker sending a victim's call id while the victim's call runs pays for its own call."""
        victim, attacker = (f"{name}-{uuid.uuid4().hex[:8]}@example.com" for name in ("victim", "attacker"))
        client = openai.AsyncOpenAI(base_url=f"{proxy_url}/v1", api_key=master_key, max_retries=0)

        async def both():
            import asyncio

            headers = {"x-litellm-call-id": "shared-id"}
            slow = asyncio.ensure_future(
                client.chat.completions.create(
                    model="fake-model",
                    messages=[{"role": "user", "content": "[[sleep=1]] [[tokens=10]] a"}],
                    extra_headers={**headers, "x-litellm-end-user-id": victim},
                )
            )
            await asyncio.sleep(0.3)
            fast = await client.chat.completions.create(
                model="fake-model",
                messages=[{"role": "user", "content": "[[tokens=30]] b"}],
                extra_headers={**headers, "x-litellm-end-user-id": attacker},
            )
            return await slow, fast

        import asyncio

        slow, fast = asyncio.run(both())
        assert strict_admin.settled_account(victim)["used_tokens"] == charged(slow.usage.total_tokens)
        assert strict_admin.settled_account(attacker)["used_tokens"] == charged(fast.usage.total_tokens)


class TestCallsThatEndWithoutANormalSettle:
    """Class 4: every served call is charged, however it ends."""

    def test_a_call_that_outlives_its_reservation_is_still_charged(self, openai_client, strict_admin, strict, user_id):
        """Before: the sweeper expired the reservation and the late settle was ignored (free)."""
        response = chat(openai_client, user_id, f"[[sleep={reservation_ttl_s * 2}]] [[tokens=10]] devagar")
        # The reservation expired long ago, so wait for the (background) settle itself.
        account = wait_for(
            lambda: (found := strict_admin.account(user_id))["used_tokens"] and found, 15, what="the late settle"
        )
        assert account["used_tokens"] == charged(response.usage.total_tokens)
        kinds = [row[0] for row in ledger_rows(strict[1], user_id)]
        assert kinds == ["grant", "reserve", "expire", "settle"]

    def test_a_stream_that_breaks_after_content_is_charged_what_it_delivered(
        self, openai_client, strict_admin, user_id
    ):
        """Before: a stream failing mid-way released its whole reservation (free content)."""
        received = []
        with pytest.raises(openai.APIError):
            # The pauses let each chunk reach the client before the connection drops; without them
            # a loaded machine reads the chunks and the reset together, and LiteLLM raises first.
            prompt = "[[die_after=8]] [[chunk_sleep=0.05]] [[tokens=200]] conte"
            for chunk in chat(openai_client, user_id, prompt, stream=True):
                received += [choice.delta.content or "" for choice in chunk.choices]
        assert "".join(received).split(), "content reached the client before the break"
        account = strict_admin.settled_account(user_id)
        assert account["used_tokens"] >= charged(8), account  # at least the 8 chunks delivered
        assert account["used_tokens"] < charged(200)

    def test_an_open_stream_keeps_its_reservation_past_the_ttl(self, openai_client, strict_admin, strict, user_id):
        """A stream three TTLs long is never expired while it runs: its tokens are not handed back early."""
        chunks = list(
            chat(
                openai_client,
                user_id,
                "[[chunk_sleep=0.2]] [[tokens=30]] devagar",
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        usage = next(chunk.usage for chunk in reversed(chunks) if chunk.usage)
        account = strict_admin.settled_account(user_id)
        assert account["used_tokens"] == charged(usage.total_tokens)
        assert [row[0] for row in ledger_rows(strict[1], user_id)] == ["grant", "reserve", "settle"]

    @pytest.mark.parametrize("stream", [False, True])
    def test_a_response_without_usage_is_charged_by_our_count(self, openai_client, strict_admin, user_id, stream):
        """Before: no usage block meant no charge. Now: our prompt estimate plus the text delivered."""
        answer = chat(openai_client, user_id, "[[no_usage]] [[tokens=40]] responda", stream=stream)
        if stream:
            list(answer)
        account = strict_admin.settled_account(user_id)
        assert account["used_tokens"] >= charged(40), account

    def test_a_client_that_walks_away_mid_stream_is_charged_what_it_was_sent(self, proxy_url, strict_admin, user_id):
        """Closing the connection after a few chunks does not make the delivered part free."""
        body = {
            "model": "fake-model",
            "stream": True,
            "max_tokens": 400,
            "messages": [{"role": "user", "content": "[[tokens=400]] [[no_usage]] longa"}],
        }
        headers = {"Authorization": f"Bearer {master_key}", "x-litellm-end-user-id": user_id}
        with httpx.stream(
            "POST", f"{proxy_url}/v1/chat/completions", json=body, headers=headers, timeout=30
        ) as response:
            assert response.status_code == 200
            for index, _ in enumerate(response.iter_lines()):
                if index > 20:
                    break
        account = strict_admin.settled_account(user_id)
        assert account["used_tokens"] > 0, account
        assert_within_allowance(account)


class TestFreeTitleCalls:
    """Class 5: only LibreChat's whole title request is free, capped, and never for a used-up user."""

    def test_the_title_request_is_free_and_its_answer_capped(self, openai_client, strict_admin, fake_provider, user_id):
        """The exact shape is recorded at 0 tokens, and upstream gets at most title_completion_tokens_max."""
        fake_provider.clear_requests()
        response = openai_client.chat.completions.create(
            model="fake-model",
            messages=[{"role": "user", "content": title_prompt + " [[tokens=5000]]"}],
            max_tokens=100000,
            extra_headers={"x-litellm-end-user-id": user_id},
        )
        upstream = [entry for entry in fake_provider.requests if entry["path"].endswith("/chat/completions")]
        assert upstream[-1]["json"]["max_tokens"] <= 100
        assert response.usage.completion_tokens <= 100
        account = strict_admin.settled_account(user_id)
        assert account["used_tokens"] == 0

    @pytest.mark.parametrize("shape", ["phrase_inside", "second_message", "extra_tool", "two_choices"])
    def test_anything_else_that_mentions_a_title_is_charged(self, openai_client, strict_admin, user_id, shape):
        """Before: any message containing the phrase was free and unbounded."""
        messages = [{"role": "user", "content": title_prompt}]
        extra: dict = {}
        if shape == "phrase_inside":
            messages = [{"role": "user", "content": "Escreva um ensaio longo. " + title_prompt}]
        elif shape == "second_message":
            messages = [{"role": "system", "content": "Escreva um ensaio longo."}, *messages]
        elif shape == "extra_tool":
            extra["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": "essay",
                        "parameters": {"type": "object", "properties": {"essay": {"type": "string"}}},
                    },
                }
            ]
        else:
            extra["n"] = 2
        openai_client.chat.completions.create(
            model="fake-model",
            messages=messages,
            max_tokens=50,
            extra_headers={"x-litellm-end-user-id": user_id},
            **extra,
        )
        assert strict_admin.settled_account(user_id)["used_tokens"] > 0

    def test_a_used_up_user_gets_no_free_title(self, openai_client, strict_admin, user_id):
        """Before: a user with 0 left still got title answers, unbounded."""
        chat(openai_client, user_id, "[[tokens=100000]] tudo", max_tokens=100000)
        strict_admin.settled_account(user_id)
        with pytest.raises(openai.RateLimitError):
            openai_client.chat.completions.create(
                model="fake-model",
                messages=[{"role": "user", "content": title_prompt}],
                extra_headers={"x-litellm-end-user-id": user_id},
            )


class TestLearnedPromptMargin:
    """A provider that counts more prompt tokens than we do teaches a margin; nobody passes the allowance."""

    # One model each: a margin is per model, and each case must start from none.
    @pytest.mark.parametrize(
        ("model", "words", "scale", "learned"),
        [("fake-premium", 8, 1.6, "excess_tokens"), ("fake-model", 300, 1.3, "margin")],
        ids=["short prompt: excess", "long prompt: ratio"],
    )
    def test_a_provider_counting_more_prompt_tokens_cannot_push_usage_past_the_allowance(
        self, openai_client, strict_admin, strict, user_id, model, words, scale, learned
    ):
        """Before: 1,035 used of 1,000 with such a provider. Now a first call teaches the margin,
        and a call clamped to what is left still fits when the provider counts its prompt."""
        prompt = f"[[prompt_scale={scale}]] " + "palavra " * words
        for directive, max_tokens in (("[[tokens=1000]]", 100), ("[[tokens=9000]]", 100000)):  # same token count
            openai_client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": f"{prompt} {directive}"}],
                max_tokens=max_tokens,
                extra_headers={"x-litellm-end-user-id": user_id},
            )
            account = strict_admin.settled_account(user_id)
        assert_within_allowance(account)
        assert account["remaining_tokens"] < 20  # the clamp still spends what is left
        with psycopg.connect(strict[1]) as connection:
            row = connection.execute(
                f"SELECT {learned} FROM solaris.model_margins WHERE model = %s", (model,)
            ).fetchone()
        assert row is not None and float(row[0]) > 1
