"""The quota as a LibreChat user meets it: through a real proxy, with the official client."""

from __future__ import annotations

import asyncio
import math

import httpx
import openai
import psycopg
import pytest

from tests.support.proxy_calls import ask, exhaust
from tests.support.suite import credits_email, master_key, premium_factor, proxy_settings

factor = proxy_settings["conversion_factor"]
allowance = proxy_settings["default_tokens_per_user"]


def charged(raw_tokens: int, rate: float = factor) -> int:
    return math.ceil(round(raw_tokens * rate, 9))


class TestAllowance:
    def test_a_new_user_gets_the_default_allowance(self, client, admin, user_id):
        """The first call provisions the user with default_tokens_per_user as a grant."""
        ask(client, user_id)
        account = admin.settled_account(user_id)
        assert account["credited_tokens"] == allowance
        assert account["status"] == "active"

    def test_usage_is_charged_times_the_factor_rounded_up(self, client, admin, user_id):
        """A call costs ceil(provider total tokens × conversion_factor)."""
        response = ask(client, user_id, "[[tokens=10]] uma resposta curta")
        account = admin.settled_account(user_id)
        assert response.usage.completion_tokens == 10
        assert account["used_tokens"] == charged(response.usage.total_tokens)
        assert account["remaining_tokens"] == allowance - account["used_tokens"]

    def test_a_model_factor_overrides_the_default_factor(self, client, admin, user_id):
        """model_factors prices a model group at its own rate."""
        response = ask(client, user_id, "[[tokens=7]] caro", model="fake-premium")
        account = admin.settled_account(user_id)
        assert account["used_tokens"] == charged(response.usage.total_tokens, premium_factor)

    def test_streamed_calls_are_charged_with_the_provider_usage(self, client, admin, user_id):
        """A streamed answer is settled from the usage of its final chunk."""
        stream = ask(client, user_id, "[[tokens=12]] em partes", stream=True, stream_options={"include_usage": True})
        usage = None
        text = ""
        for chunk in stream:
            usage = chunk.usage or usage
            text += "".join(choice.delta.content or "" for choice in chunk.choices)
        assert usage is not None and usage.completion_tokens == 12
        assert text.split() == ["ok"] * 12
        account = admin.settled_account(user_id)
        assert account["used_tokens"] == charged(usage.total_tokens)

    def test_a_failed_upstream_call_charges_nothing(self, client, admin, user_id):
        """When the provider fails, the reservation is released and nothing is debited."""
        with pytest.raises(openai.InternalServerError):
            ask(client.with_options(max_retries=0), user_id, "[[fail=500]]")
        account = admin.settled_account(user_id)
        assert account["used_tokens"] == 0
        assert account["remaining_tokens"] == allowance

    def test_max_tokens_is_clamped_to_what_is_left(self, client, admin, user_id):
        """A call asking for more than the allowance is bounded, not refused, and cannot overspend."""
        response = ask(client, user_id, "[[tokens=100000]] muito longo", max_tokens=100000)
        account = admin.settled_account(user_id)
        assert response.usage.completion_tokens < 100000
        assert response.choices[0].finish_reason == "length"
        assert 0 <= account["remaining_tokens"] < charged(1)
        assert account["used_tokens"] <= account["credited_tokens"]

    def test_a_call_without_max_tokens_is_bounded_too(self, client, admin, user_id):
        """The hook writes a max_tokens into calls that set none, so the worst case is known."""
        ask(client, user_id, "[[tokens=100000]] sem limite")
        account = admin.settled_account(user_id)
        assert account["used_tokens"] <= account["credited_tokens"]


class TestRefusal:
    def test_a_used_up_allowance_is_refused_with_a_readable_message(self, proxy, admin, user_id):
        """At 100 % the call gets 429, x-should-retry false, and a pt-BR message with the credits e-mail."""
        requests_sent = []
        http = httpx.Client(event_hooks={"request": [requests_sent.append]})
        client = openai.OpenAI(base_url=f"{proxy.base_url}/v1", api_key=master_key, http_client=http)
        exhaust(client, admin, user_id)
        requests_sent.clear()
        with pytest.raises(openai.RateLimitError) as refused:
            ask(client, user_id, "mais uma pergunta")
        message = refused.value.body["message"]
        assert f"{allowance} tokens" in message
        assert credits_email in message
        assert "acabou" in message
        assert refused.value.response.headers["x-should-retry"] == "false"
        assert len(requests_sent) == 1, "the SDK must not retry a refusal"

    def test_a_credit_unblocks_the_user(self, client, admin, user_id):
        """After add-tokens the same user is served again."""
        exhaust(client, admin, user_id)
        with pytest.raises(openai.RateLimitError):
            ask(client, user_id)
        balance = admin.add_tokens(user_id, 200, "reposição")
        assert balance["credited_tokens"] == allowance + 200
        ask(client, user_id, "[[tokens=5]] de novo")
        assert admin.settled_account(user_id)["used_tokens"] > balance["used_tokens"]

    def test_an_unresolved_librechat_placeholder_is_refused(self, client, database_url):
        """`{{LIBRECHAT_USER_EMAIL}}` sent literally gets a 400 that says how to configure LibreChat."""
        with pytest.raises(openai.BadRequestError) as refused:
            ask(client, "{{LIBRECHAT_USER_EMAIL}}")
        assert "librechat.yaml" in refused.value.body["message"]
        with psycopg.connect(database_url) as connection:
            accounts = connection.execute("SELECT count(*) FROM solaris.accounts WHERE user_id LIKE '%{{%'").fetchone()
        assert accounts == (0,)

    def test_an_empty_identity_is_refused(self, client):
        """An empty identity header is a 400, not an account named ''."""
        with pytest.raises(openai.BadRequestError) as refused:
            ask(client, "")
        assert "x-litellm-end-user-id" in refused.value.body["message"]

    def test_the_body_user_is_charged_when_no_header_is_sent(self, client, admin, user_id):
        """Without the header, the OpenAI `user` field names the account."""
        client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "oi"}], user=user_id)
        assert admin.settled_account(user_id)["used_tokens"] > 0


class TestConcurrency:
    def test_concurrent_calls_near_the_end_never_overspend(self, async_client, admin, user_id, client):
        """50 calls at once from a user with little left: used never passes credited."""
        ask(client, user_id, "[[tokens=2200]] quase tudo", max_tokens=2200)
        before = admin.settled_account(user_id)
        assert 0 < before["remaining_tokens"] < 200

        async def one() -> str:
            try:
                await async_client.chat.completions.create(
                    model="fake-model",
                    messages=[{"role": "user", "content": "[[tokens=40]] paralelo"}],
                    extra_headers={"x-litellm-end-user-id": user_id},
                )
                return "served"
            except openai.RateLimitError:
                return "refused"

        async def all_calls() -> list[str]:
            return await asyncio.gather(*(one() for _ in range(50)))

        outcomes = asyncio.run(all_calls())
        after = admin.settled_account(user_id)
        assert "served" in outcomes and "refused" in outcomes
        assert after["used_tokens"] <= after["credited_tokens"]
        assert after["reserved_tokens"] == 0


class TestLedgerEvents:
    def test_an_expired_reservation_is_returned_by_the_sweeper(self, proxy, admin, database_url, user_id):
        """A reservation past its TTL is expired by the proxy's sweeper and its tokens come back."""
        with psycopg.connect(database_url, autocommit=True) as connection:
            outcome = connection.execute(
                "SELECT outcome, reserved FROM solaris.reserve(%s, %s, 300, 1, %s, 1, 'fake-model', 0.376)",
                (user_id, f"stranded-{user_id}", allowance),
            ).fetchone()
            assert outcome == ("reserved", 300)
            account = admin.settled_account(user_id, timeout_s=20)
            assert account["remaining_tokens"] == allowance
            kinds = [
                row[0]
                for row in connection.execute(
                    "SELECT kind FROM solaris.ledger WHERE user_id = %s ORDER BY id", (user_id,)
                )
            ]
            assert kinds == ["grant", "reserve", "expire"]
            assert admin.account(user_id)["used_tokens"] == 0
            # A result that arrives after all is owed: one late settle, once.
            for _ in range(2):
                connection.execute(
                    "SELECT * FROM solaris.resolve(%s, 'settle', 500, NULL, NULL)", (f"stranded-{user_id}",)
                )
        assert admin.account(user_id)["used_tokens"] == charged(500)
