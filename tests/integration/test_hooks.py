"""The LiteLLM hooks called in-process, for events a real proxy only sends when it misbehaves."""

from __future__ import annotations

import math
import uuid

import litellm
import pytest
from fastapi import HTTPException
from litellm.proxy._types import UserAPIKeyAuth

from solaris_hooks.quota.service import QuotaService
from tests.support.event_loop import run_with_callback, settles_written
from tests.support.payloads import hooks_model, request_data


def model_response(prompt_tokens: int, completion_tokens: int) -> litellm.ModelResponse:
    return litellm.ModelResponse(
        model=hooks_model,
        choices=[{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        usage={
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    )


async def balance(service: QuotaService, user_id: str):
    """The user's balance once the settles waiting for a batch are written (leases on)."""
    from solaris_hooks.db import ledger

    await settles_written(service)
    async with service.connection() as connection:
        return await ledger.balance(connection, user_id)


# The master key, as LibreChat's shared key usually is: it may name end users.
key = UserAPIKeyAuth(api_key="litellm_proxy_master_key", user_id="key-owner")


class TestSolarisCallback:
    def test_a_duplicated_success_event_charges_once(self, database_url):
        """LiteLLM's double logging cannot charge a call twice."""
        user_id = f"dup-{uuid.uuid4().hex}"

        async def scenario(callback, service):
            data = request_data(user_id, uuid.uuid4().hex)
            await callback.async_pre_call_hook(key, None, data, "acompletion")
            kwargs = {"litellm_call_id": data["litellm_call_id"], "model": hooks_model, "response_cost": 0.001}
            for _ in range(2):
                await callback.async_log_success_event(kwargs, model_response(100, 50), None, None)
            return await balance(service, user_id)

        account = run_with_callback(database_url, scenario)
        assert account.debited_tokens == 57  # ceil(150 × 0.376)
        assert account.reserved_tokens == 0

    def test_a_success_after_a_failure_release_is_still_charged(self, database_url):
        """A result that arrives after the call was released (a retried attempt) is owed: one late settle."""
        user_id = f"late-{uuid.uuid4().hex}"

        async def scenario(callback, service):
            data = request_data(user_id, uuid.uuid4().hex)
            await callback.async_pre_call_hook(key, None, data, "acompletion")
            call_id = data["litellm_call_id"]
            await callback.async_post_call_failure_hook(data, RuntimeError("x"), key)
            await callback.async_log_failure_event({"litellm_call_id": call_id}, None, None, None)
            for _ in range(2):
                await callback.async_log_success_event({"litellm_call_id": call_id}, model_response(10, 10), None, None)
            return await balance(service, user_id)

        account = run_with_callback(database_url, scenario)
        assert (account.debited_tokens, account.reserved_tokens) == (8, 0)  # ceil(20 × 0.376), once

    def test_a_failure_event_of_one_attempt_keeps_the_reservation(self, database_url):
        """The router may retry after a failed attempt: its failure event must not free the tokens."""
        user_id = f"attempt-{uuid.uuid4().hex}"

        async def scenario(callback, service):
            data = request_data(user_id, uuid.uuid4().hex)
            await callback.async_pre_call_hook(key, None, data, "acompletion")
            await callback.async_log_failure_event({"litellm_call_id": data["litellm_call_id"]}, None, None, None)
            return await balance(service, user_id)

        assert run_with_callback(database_url, scenario).reserved_tokens > 0

    def test_the_client_call_id_is_replaced_by_one_of_ours(self, database_url):
        """A client-chosen litellm_call_id never becomes the reservation key, even when reused."""
        user_id = f"ids-{uuid.uuid4().hex}"
        chosen = "my-own-id"

        async def scenario(callback, service):
            keys = []
            for _ in range(3):
                data = request_data(user_id, chosen)
                await callback.async_pre_call_hook(key, None, data, "acompletion")
                keys.append(data["litellm_call_id"])
                await callback.async_log_success_event(
                    {"litellm_call_id": data["litellm_call_id"]}, model_response(10, 10), None, None
                )
            return keys, await balance(service, user_id)

        keys, account = run_with_callback(database_url, scenario)
        assert chosen not in keys and len(set(keys)) == 3
        assert account.debited_tokens == 3 * 8

    def test_a_response_without_usage_is_charged_by_our_own_count(self, database_url):
        """No usage block from the provider: prompt estimate plus the delivered text, never zero."""
        user_id = f"nousage-{uuid.uuid4().hex}"

        async def scenario(callback, service):
            data = request_data(user_id, uuid.uuid4().hex, "olá " * 50)
            await callback.async_pre_call_hook(key, None, data, "acompletion")
            response = model_response(1, 1)
            del response.usage
            response.choices[0].message.content = "resposta " * 40
            await callback.async_log_success_event({"litellm_call_id": data["litellm_call_id"]}, response, None, None)
            return await balance(service, user_id)

        account = run_with_callback(database_url, scenario)
        assert account.reserved_tokens == 0
        assert account.debited_tokens >= math.ceil((50 + 40) * 0.376)

    def test_the_pre_call_hook_writes_the_completion_bound(self, database_url):
        """A call with no max_tokens leaves the hook with max_tokens set to what was reserved for."""
        user_id = f"bound-{uuid.uuid4().hex}"

        async def scenario(callback, service):
            data = request_data(user_id, uuid.uuid4().hex)
            await callback.async_pre_call_hook(key, None, data, "acompletion")
            return data

        data = run_with_callback(database_url, scenario, completion_tokens_default=300)
        assert data["max_tokens"] == 300

    def test_the_key_user_pays_when_the_client_names_no_one(self, database_url):
        """Without header or body user, the key's own user id is the account."""
        call_id = uuid.uuid4().hex
        owner = UserAPIKeyAuth(user_id=f"owner-{uuid.uuid4().hex}")

        async def scenario(callback, service):
            data = {"model": hooks_model, "messages": [{"role": "user", "content": "oi"}], "litellm_call_id": call_id}
            await callback.async_pre_call_hook(owner, None, data, "acompletion")
            return await balance(service, owner.user_id)

        account = run_with_callback(database_url, scenario)
        assert account.reserved_tokens > 0

    def test_an_unreachable_database_gives_a_readable_503_when_fail_closed(self):
        """fail_mode closed: no database, no call, and the user is told why."""

        async def scenario(callback, service):
            with pytest.raises(HTTPException) as refused:
                await callback.async_pre_call_hook(key, None, request_data("u", "c"), "acompletion")
            return refused.value

        error = run_with_callback("postgresql://nobody@127.0.0.1:1/none", scenario, db_timeout_s=0.5)
        assert error.status_code == 503
        assert "indisponível" in error.detail["error"]["message"]

    def test_an_unreachable_database_lets_calls_through_when_fail_open(self):
        """fail_mode open: the call goes on, unmetered."""

        async def scenario(callback, service):
            data = request_data("u", "c")
            return await callback.async_pre_call_hook(key, None, data, "acompletion")

        assert run_with_callback("postgresql://nobody@127.0.0.1:1/none", scenario, db_timeout_s=0.5, fail_mode="open")

    def test_refusals_are_in_english_when_configured(self, database_url):
        """locale: en renders the refusal in English."""
        user_id = f"en-{uuid.uuid4().hex}"

        async def scenario(callback, service):
            with pytest.raises(HTTPException) as refused:
                await callback.async_pre_call_hook(key, None, request_data(user_id, uuid.uuid4().hex), "acompletion")
            return refused.value

        error = run_with_callback(
            database_url, scenario, locale="en", default_tokens_per_user=0, credits_email="more@example.com"
        )
        assert error.status_code == 429
        assert "is used up" in error.detail["error"]["message"]
        assert "more@example.com" in error.detail["error"]["message"]

    @pytest.mark.parametrize(("status", "words"), [("blocked", "bloqueado"), ("disabled", "desativada")])
    def test_blocked_and_disabled_users_get_their_own_message(self, database_url, status, words):
        """An admin-blocked or disabled user gets a 403 saying so, not the quota message."""
        user_id = f"{status}-{uuid.uuid4().hex}"

        async def scenario(callback, service):
            await callback.async_pre_call_hook(key, None, request_data(user_id, uuid.uuid4().hex), "acompletion")
            async with service.connection() as connection:
                await connection.execute(
                    "UPDATE solaris.accounts SET status = %s WHERE user_id = %s", (status, user_id)
                )
            with pytest.raises(HTTPException) as refused:
                await callback.async_pre_call_hook(key, None, request_data(user_id, uuid.uuid4().hex), "acompletion")
            return refused.value

        error = run_with_callback(database_url, scenario, credits_email="admin@example.com")
        assert error.status_code == 403
        assert words in error.detail["error"]["message"]
        assert "admin@example.com" in error.detail["error"]["message"]

    def test_a_call_too_big_for_what_is_left_is_told_so_not_that_the_quota_ended(self, database_url):
        """With half the allowance left, a huge prompt is refused with a 'send a shorter message' text."""
        user_id = f"big-{uuid.uuid4().hex}"

        async def scenario(callback, service):
            with pytest.raises(HTTPException) as refused:
                await callback.async_pre_call_hook(
                    key, None, request_data(user_id, uuid.uuid4().hex, "palavra " * 3000), "acompletion"
                )
            return refused.value

        error = run_with_callback(database_url, scenario)
        message = error.detail["error"]["message"]
        assert error.status_code == 429
        assert "mensagem mais curta" in message and "restam 1000" in message
        assert "acabou" not in message

    @pytest.mark.parametrize(("locale", "words"), [("pt-BR", "Espere a outra resposta terminar"), ("en", "Wait for")])
    def test_a_call_refused_for_what_answers_in_progress_hold_says_to_wait(self, database_url, locale, words):
        """An answer in progress holds the allowance: the next message is told to wait for it, with what
        it holds, not to be shorter and not that the quota ended."""
        user_id = f"held-{uuid.uuid4().hex}"

        async def scenario(callback, service):
            await callback.async_pre_call_hook(key, None, request_data(user_id, uuid.uuid4().hex), "acompletion")
            held = await balance(service, user_id)
            with pytest.raises(HTTPException) as refused:
                await callback.async_pre_call_hook(key, None, request_data(user_id, uuid.uuid4().hex), "acompletion")
            return held, refused.value

        held, error = run_with_callback(database_url, scenario, locale=locale)
        message = error.detail["error"]["message"]
        assert held.reserved_tokens > 0 and held.debited_tokens == 0
        assert error.status_code == 429
        assert words in message and str(held.reserved_tokens) in message
        assert not any(text in message for text in ("mais curta", "shorter", "acabou", "used up"))

    @pytest.mark.parametrize(("title_calls", "charged"), [("charge", True), ("free", False)])
    def test_title_calls_are_charged_unless_configured_free(self, database_url, title_calls, charged):
        """LibreChat's title call reserves like any call by default, and nothing with title_calls: free."""
        user_id = f"title-{uuid.uuid4().hex}"
        title = "Please generate a concise, 5-word-or-less title for the conversation, using its same language"

        async def scenario(callback, service):
            await callback.async_pre_call_hook(key, None, request_data(user_id, uuid.uuid4().hex, title), "acompletion")
            return await balance(service, user_id)

        account = run_with_callback(database_url, scenario, title_calls=title_calls)
        assert (account.reserved_tokens > 0) is charged


class TestTrustedKeys:
    def run_as(self, database_url, key, data, **settings):
        async def scenario(callback, service):
            await callback.async_pre_call_hook(key, None, data, "acompletion")
            async with service.connection() as connection:
                cursor = await connection.execute(
                    "SELECT user_id FROM solaris.reservations WHERE call_id = %s", (data["litellm_call_id"],)
                )
                return (await cursor.fetchone())[0]

        return run_with_callback(database_url, scenario, **settings)

    def test_a_trusted_key_names_the_user(self, database_url):
        """LibreChat's key, listed by alias, charges the user in the header."""
        victim = f"ana-{uuid.uuid4().hex}@example.com"
        librechat = UserAPIKeyAuth(api_key="sk-librechat-" + uuid.uuid4().hex, key_alias="librechat")
        charged = self.run_as(
            database_url, librechat, request_data(victim, uuid.uuid4().hex), trusted_keys=["librechat"]
        )
        assert charged == victim

    def test_a_raw_key_and_the_master_key_can_be_trusted(self, database_url):
        """trusted_keys may list a raw key (matched by its hash) or `master_key`."""
        raw = "sk-raw-" + uuid.uuid4().hex
        victim = f"ana-{uuid.uuid4().hex}@example.com"
        assert (
            self.run_as(
                database_url, UserAPIKeyAuth(api_key=raw), request_data(victim, uuid.uuid4().hex), trusted_keys=[raw]
            )
            == victim
        )
        master = UserAPIKeyAuth(api_key="litellm_proxy_master_key", user_id=f"admin-{uuid.uuid4().hex}")
        victim = f"ana-{uuid.uuid4().hex}@example.com"
        assert (
            self.run_as(database_url, master, request_data(victim, uuid.uuid4().hex), trusted_keys=["master_key"])
            == victim
        )
        # The master key may always name users, whatever trusted_keys lists.
        victim = f"ana-{uuid.uuid4().hex}@example.com"
        assert (
            self.run_as(database_url, master, request_data(victim, uuid.uuid4().hex), trusted_keys=["librechat"])
            == victim
        )


class TestPromptMargin:
    def test_a_configured_margin_bounds_the_very_first_call(self, database_url):
        """prompt_margins: a model known to count more prompt tokens gets a smaller completion at the edge."""

        def bound(**settings) -> int:
            async def scenario(callback, service):
                data = request_data(f"margin-{uuid.uuid4().hex}", uuid.uuid4().hex, "palavra " * 100)
                await callback.async_pre_call_hook(key, None, data, "acompletion")
                return data["max_tokens"]

            return run_with_callback(database_url, scenario, default_tokens_per_user=100, **settings)

        plain, doubled = bound(), bound(prompt_margins={hooks_model: 2.0})
        # 100 platform tokens at 0.376 are 265 raw: ~105 of prompt leave ~160, twice the prompt ~55.
        assert doubled < plain - 90
