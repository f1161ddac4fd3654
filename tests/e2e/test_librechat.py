"""The LibreChat contract: requests exactly as LibreChat sends them, and what its users see."""

from __future__ import annotations

import base64
import uuid

import httpx
import openai
import pytest

from tests.support.proxy_calls import exhaust
from tests.support.suite import master_key

# LibreChat's classic title prompt (api/app/clients), sent as one user message.
title_prompt = (
    "Please generate a concise, 5-word-or-less title for the conversation, using its same language, "
    "with no punctuation. Apply title case conventions appropriate for the language. Never directly "
    'mention the language name or the word "title"\n\n||>User:\n"Olá, tudo bem?"\n||>Response:\n'
    '"Tudo ótimo!"\n\n||>Title:'
)


def librechat_client(proxy, sent: list | None = None) -> openai.OpenAI:
    """The openai client as LibreChat builds it for a custom endpoint (default retries kept)."""
    hooks = {"request": [sent.append]} if sent is not None else {}
    return openai.OpenAI(
        base_url=f"{proxy.base_url}/v1", api_key=master_key, http_client=httpx.Client(event_hooks=hooks)
    )


def librechat_chat(client: openai.OpenAI, email: str, librechat_user: str, text: str, **extra):
    """A chat turn: header with the e-mail, body `user` with LibreChat's own id, streamed."""
    return client.chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": text}],
        user=librechat_user,
        stream=True,
        extra_headers={"x-litellm-end-user-id": email},
        **extra,
    )


@pytest.fixture
def librechat_user() -> str:
    return uuid.uuid4().hex[:24]  # LibreChat's MongoDB ObjectId


class TestLibreChatRequests:
    def test_the_email_in_the_header_is_charged_not_the_librechat_id(self, proxy, admin, user_id, librechat_user):
        """A streamed turn is charged to the header's e-mail; the body's 24-hex id gets no account."""
        chunks = list(librechat_chat(librechat_client(proxy), user_id, librechat_user, "[[tokens=15]] Olá!"))
        assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices).strip()
        assert admin.settled_account(user_id)["used_tokens"] > 0
        assert admin.account(librechat_user) is None

    def test_an_address_librechat_sends_as_b64_is_charged_to_the_decoded_address(self, proxy, admin, librechat_user):
        """LibreChat sends `marić@…` as `b64:` + base64 of its UTF-8 (no header may carry U+0107):
        the decoded address is charged, and no account is opened under the literal value."""
        address = f"marić-{uuid.uuid4().hex[:8]}@example.com"
        sent = "b64:" + base64.b64encode(address.encode()).decode()
        list(librechat_chat(librechat_client(proxy), sent, librechat_user, "[[tokens=15]] Olá!"))
        assert admin.settled_account(address)["used_tokens"] > 0
        assert admin.account(sent) is None and admin.account(librechat_user) is None

    def test_an_empty_header_is_a_400_that_says_how_to_fix_librechat_yaml(self, proxy, librechat_user):
        """An unfillable placeholder arrives as an empty header: refused before any account is touched."""
        with pytest.raises(openai.BadRequestError) as refused:
            librechat_chat(librechat_client(proxy), "", librechat_user, "Olá!")
        message = refused.value.body["message"]
        assert "x-litellm-end-user-id" in message and "librechat.yaml" in message, message
        assert "{{LIBRECHAT_USER_EMAIL}}" in message

    def test_a_title_call_is_recorded_with_zero_tokens_when_titles_are_free(
        self, proxy, admin, user_id, librechat_user
    ):
        """title_calls: free — LibreChat's title call leaves the balance alone and shows in the ledger."""
        client = librechat_client(proxy)
        client.chat.completions.create(
            model="fake-model",
            messages=[{"role": "user", "content": title_prompt}],
            user=librechat_user,
            extra_headers={"x-litellm-end-user-id": user_id},
        )
        account = admin.settled_account(user_id)
        assert account["used_tokens"] == 0
        # The free title call reserved nothing: its settle row is written by the next batch.
        rows = admin.settles(user_id, 1)
        assert len(rows) == 1 and rows[0]["tokens"] == 0 and rows[0]["raw_tokens"] > 0

    def test_a_refusal_is_readable_in_librechat_and_not_retried(self, proxy, admin, user_id, librechat_user):
        """A used-up user streaming a turn gets error.message in pt-BR, on the first and only request."""
        exhaust(openai.OpenAI(base_url=f"{proxy.base_url}/v1", api_key=master_key), admin, user_id)
        sent: list = []
        with pytest.raises(openai.RateLimitError) as refused:
            librechat_chat(librechat_client(proxy, sent), user_id, librechat_user, "mais uma")
        assert "Sua cota" in refused.value.body["message"] and "acabou" in refused.value.body["message"]
        assert len(sent) == 1
