"""How a refusal reaches the client, through a real proxy: with `refusal_style: error` an
OpenAI error that keeps our code; with `message` a 200 whose one assistant message is the
notice, in the shape the client asked for, charged nothing."""

from __future__ import annotations

import uuid

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from solaris_hooks import messages
from tests.support.harness import AdminClient
from tests.support.proxy_calls import exhaust, fresh_window, raw_post
from tests.support.suite import credits_email, master_key, proxy_of_its_own

allowance = 1000


@pytest.fixture(scope="module")
def as_message(database_url, fake_provider, tmp_path_factory):
    settings = {
        "default_tokens_per_user": allowance,
        "credits_email": credits_email,
        "requests_per_minute": 5,
        "refusal_style": "message",
    }
    with proxy_of_its_own(
        database_url, fake_provider.base_url, tmp_path_factory.mktemp("as-message"), settings, "refusal-message.log"
    ) as process:
        yield process


@pytest.fixture
def used_up(as_message) -> str:
    """A user who has spent the whole allowance."""
    return used_up_on(as_message)


def used_up_on(proxy) -> str:
    user_id = f"refused-{uuid.uuid4().hex[:10]}@example.com"
    client = openai.OpenAI(base_url=f"{proxy.base_url}/v1", api_key=master_key)
    account = exhaust(client, AdminClient(proxy.base_url, master_key), user_id)
    assert account["used_tokens"] == allowance, account
    return user_id


def exhausted_notice(used_tokens: int = allowance) -> str:
    return messages.render(
        "quota_exhausted", "pt-BR", credited_tokens=allowance, used_tokens=used_tokens, reserved_tokens=0,
        credits_email=credits_email,
    )  # fmt: skip


def exhausted_refusals(admin: AdminClient) -> float:
    text = admin.http.get("/solaris/metrics").text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    samples = families["solaris_refusals"].samples if "solaris_refusals" in families else []
    return sum(s.value for s in samples if s.name == "solaris_refusals_total" and s.labels["reason"] == "exhausted")


def post(proxy, path: str, user_id: str, body: dict) -> httpx.Response:
    return raw_post(proxy.base_url, path, user_id, body)


def chat_body(**extra) -> dict:
    return {"model": "fake-model", "messages": [{"role": "user", "content": "mais uma"}], **extra}


class TestRefusalAsError:
    def test_a_refusal_keeps_our_code_and_says_it_in_a_header(self, proxy):
        """LiteLLM would put "429" in `code`; the client gets `quota_exhausted`, and the header."""
        used_up = used_up_on(proxy)  # the session proxy: refusal_style unset, so `error`
        refused = post(proxy, "/v1/chat/completions", used_up, chat_body())
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "quota_exhausted"
        assert refused.json()["error"]["message"] == exhausted_notice()
        assert refused.headers["x-solaris-refusal"] == "quota_exhausted"
        assert refused.headers["x-should-retry"] == "false"
        names = [name.lower() for name, _ in refused.headers.raw]
        assert len(names) == len(set(names)), names  # LiteLLM's call id once, not joined with itself


class TestRefusalAsMessage:
    def test_a_chat_call_gets_the_notice_as_the_assistants_message(self, as_message, used_up):
        """200, one choice whose content is the notice, finish_reason stop, usage 0, the header."""
        answered = post(as_message, "/v1/chat/completions", used_up, chat_body())
        assert answered.status_code == 200, answered.text
        assert answered.headers["x-solaris-refusal"] == "quota_exhausted"
        assert {"x-should-retry", "retry-after"}.isdisjoint(answered.headers)
        completion = openai.types.chat.ChatCompletion.model_validate(answered.json())
        (choice,) = completion.choices
        assert (choice.message.role, choice.message.content) == ("assistant", exhausted_notice())
        assert choice.finish_reason == "stop" and completion.usage.total_tokens == 0

    def test_a_streamed_chat_call_gets_the_notice_as_a_clean_stream(self, as_message, used_up):
        """The openai client reads role, the notice, stop, the usage it asked for, then [DONE]."""
        client = openai.OpenAI(base_url=f"{as_message.base_url}/v1", api_key=master_key)
        chunks = list(
            client.chat.completions.create(
                **chat_body(),
                stream=True,
                stream_options={"include_usage": True},
                extra_headers={"x-litellm-end-user-id": used_up},
            )
        )
        text = "".join(choice.delta.content or "" for chunk in chunks for choice in chunk.choices)
        assert text == exhausted_notice()
        assert [choice.finish_reason for chunk in chunks for choice in chunk.choices][-1] == "stop"
        assert chunks[-1].usage.total_tokens == 0

    def test_a_responses_call_gets_the_notice_as_its_output_text(self, as_message, used_up):
        """/v1/responses, plain and streamed: the notice is the output text, usage 0."""
        client = openai.OpenAI(base_url=f"{as_message.base_url}/v1", api_key=master_key)
        headers = {"x-litellm-end-user-id": used_up}
        response = client.responses.create(model="fake-model", input="mais uma", extra_headers=headers)
        assert response.output_text == exhausted_notice() and response.usage.total_tokens == 0
        events = list(client.responses.create(model="fake-model", input="mais uma", stream=True, extra_headers=headers))
        deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
        assert deltas == exhausted_notice()
        assert events[-1].type == "response.completed" and events[-1].response.output_text == exhausted_notice()

    def test_the_message_charges_nothing_and_is_counted_as_a_refusal(self, as_message, used_up):
        """The refused call leaves the account as it was, writes no reservation, and is
        counted in the refusal metrics as an error-style refusal is."""
        admin = AdminClient(as_message.base_url, master_key)
        before, refusals_before = admin.settled_account(used_up), exhausted_refusals(admin)
        for _ in range(3):
            assert post(as_message, "/v1/chat/completions", used_up, chat_body()).status_code == 200
        after = admin.settled_account(used_up)
        assert (after["used_tokens"], after["reserved_tokens"]) == (before["used_tokens"], 0)
        assert exhausted_refusals(admin) == refusals_before + 3

    def test_other_routes_still_get_the_error_with_our_code(self, as_message, used_up):
        """Embeddings and images have no assistant message to speak with: they keep the 429,
        with our code and header (LiteLLM's image route would drop both)."""
        for path, body in (
            ("/v1/embeddings", {"model": "fake-embedding", "input": "olá"}),
            ("/v1/images/generations", {"model": "fake-image", "prompt": "um gato"}),
        ):
            refused = post(as_message, path, used_up, body)
            assert refused.status_code in (403, 429), refused.text
            assert refused.headers["x-solaris-refusal"] == refused.json()["error"]["code"], refused.text
            assert refused.json()["error"]["code"] in ("quota_exhausted", "price_missing"), refused.text

    def test_a_rate_limited_call_is_a_message_without_retry_hints(self, as_message):
        """Per-minute refusals are answered the same way, so a client has nothing to retry."""
        user_id = f"hasty-{uuid.uuid4().hex[:10]}"
        fresh_window()  # all seven calls in one minute
        answers = [post(as_message, "/v1/chat/completions", user_id, chat_body()) for _ in range(7)]
        limited = [answer for answer in answers if answer.headers.get("x-solaris-refusal") == "rate_limited_requests"]
        assert limited, [answer.status_code for answer in answers]
        assert all(answer.status_code == 200 and "retry-after" not in answer.headers for answer in limited)
        content = limited[0].json()["choices"][0]["message"]["content"]
        assert content.startswith("Você enviou muitas mensagens"), content
