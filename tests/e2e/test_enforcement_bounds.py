"""Airtight enforcement, class 2: the reservation bounds every request shape LiteLLM accepts.

Attacked as a hostile client with little left would, through a real proxy (official `openai`
client and raw HTTP) and the fake provider, which bills as OpenAI and Anthropic document:
every choice, tool definitions, images, audio, Responses items and instructions, Anthropic's
system and tool prompt. For every served call the charge is ceil(reported raw × factor) and
`used` never passes `credited`; every refused call is a readable 4xx.
"""

from __future__ import annotations

import base64
import json

import httpx
import openai
import pytest

from tests.support.fake_provider._media import silent_wav, tiny_png
from tests.support.harness import AdminClient
from tests.support.proxy_calls import raw_post
from tests.support.suite import charged, master_key, proxy_of_its_own, record_figure

allowance = 1000
factor = 0.376
# At least what the fake provider bills for each part (OpenAI's image formula tops at
# 1,445 tokens, Anthropic's at 1,600; audio 10 tokens a second, other formats at 8 kbit/s).
input_part_bounds = {
    "*": {
        "image_tokens_max": 1600,
        "audio_tokens_per_second_max": 10,
        "audio_bytes_per_second_min": 1000,
        "file_tokens_max": 5000,
    },
}


@pytest.fixture(scope="module")
def bounded(database_url, fake_provider, tmp_path_factory):
    """A proxy of its own with input part bounds, on its own database (margins learned stay here)."""
    settings = {
        "default_tokens_per_user": allowance,
        "conversion_factor": factor,
        "sweep_interval_s": 0.5,
        "input_part_bounds": input_part_bounds,
    }
    with proxy_of_its_own(
        database_url, fake_provider.base_url, tmp_path_factory.mktemp("bounded"), settings, "bounded-proxy.log"
    ) as process:
        yield process


@pytest.fixture
def bounded_admin(bounded) -> AdminClient:
    return AdminClient(bounded.base_url, master_key)


@pytest.fixture
def api(bounded) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{bounded.base_url}/v1", api_key=master_key, max_retries=0)


def ask(client: openai.OpenAI, user_id: str, content: object, **extra):
    return client.chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": content}],
        extra_headers={"x-litellm-end-user-id": user_id},
        **extra,
    )


def leave_little(client: openai.OpenAI, admin: AdminClient, user_id: str) -> dict:
    """Spend most of a fresh user's allowance in one charged call; the account after it."""
    ask(client, user_id, "[[tokens=2500]] gaste", max_tokens=2500)
    account = admin.settled_account(user_id)
    assert 0 < account["remaining_tokens"] < 100, account
    return account


def assert_charged(admin: AdminClient, user_id: str, before: dict, raw_tokens: int) -> dict:
    """The call was charged ceil(raw × factor), and the account is within its allowance."""
    account = admin.settled_account(user_id)
    assert account["used_tokens"] - before["used_tokens"] == charged(raw_tokens, factor), (account, raw_tokens)
    assert account["used_tokens"] <= account["credited_tokens"], account
    return account


def assert_refused(response: httpx.Response, status: int, code: str) -> dict:
    """A readable refusal: the status, our code, a message in words, and no database or Python text."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    # LiteLLM puts the status where our hook put the code; quota.refusal_edge puts ours back.
    assert error["code"] == code, error
    message = error["message"]
    assert len(message.split()) >= 8, message
    for leak in ("Traceback", "psycopg", "SQL", "solaris.", "Exception"):
        assert leak not in message, message
    return error


class TestChoices:
    def test_eight_choices_fit_what_is_left(self, api, bounded_admin, user_id):
        """n=8 with ~50 tokens left: every choice is billed and the total still fits."""
        before = leave_little(api, bounded_admin, user_id)
        response = ask(api, user_id, "[[tokens=5000]] conte uma história", n=8)
        assert len(response.choices) == 8
        assert_charged(bounded_admin, user_id, before, response.usage.total_tokens)

    def test_eight_choices_of_a_fresh_user_fit_the_allowance(self, api, bounded_admin, user_id):
        """n=8 and max_tokens 4,000 (32,000 tokens of answers) from 1,000: clamped per choice."""
        before = {"used_tokens": 0}
        response = ask(api, user_id, "[[tokens=4000]] longo", n=8, max_tokens=4000)
        account = assert_charged(bounded_admin, user_id, before, response.usage.total_tokens)
        record_figure(f"chat n=8 max_tokens=4000: {account['used_tokens']} of {allowance} used (bounded)")

    def test_best_of_is_billed_for_every_prompt(self, bounded, bounded_admin, user_id):
        """Legacy completions: two prompts with best_of 6 bill twelve completions; they fit."""
        body = {"model": "fake-model", "prompt": ["[[tokens=3000]] a", "b"], "n": 2, "best_of": 6, "max_tokens": 3000}
        response = raw_post(bounded.base_url, "/v1/completions", user_id, body)
        assert response.status_code == 200, response.text
        assert_charged(bounded_admin, user_id, {"used_tokens": 0}, response.json()["usage"]["total_tokens"])


class TestInputParts:
    def test_tool_definitions_are_reserved(self, api, bounded_admin, user_id):
        """Forty large function definitions (billed as input) with little left: refused or fitted, never over."""
        before = leave_little(api, bounded_admin, user_id)
        tools = [
            {
                "type": "function",
                "function": {
                    "name": f"tool_{index}",
                    "description": "palavra " * 60,
                    "parameters": {"type": "object", "properties": {}},
                },
            }
            for index in range(40)
        ]
        with pytest.raises(openai.RateLimitError) as refused:
            ask(api, user_id, "[[tokens=100]] use as ferramentas", tools=tools)
        assert refused.value.status_code == 429 and "restam" in refused.value.body["message"]
        response = ask(api, user_id, "[[tokens=5000]] use", tools=tools[:1])
        assert_charged(bounded_admin, user_id, before, response.usage.total_tokens)

    def test_tools_of_a_fresh_user_are_charged_as_input(self, api, bounded_admin, user_id):
        """Tools, a response format and a named tool choice: charged what the provider reports, within 1,000."""
        tools = [
            {
                "type": "function",
                "function": {
                    "name": "lookup",
                    "description": "procura " * 200,
                    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
                },
            }
        ]
        response = ask(
            api,
            user_id,
            "[[tokens=9000]] procure",
            tools=tools,
            tool_choice={"type": "function", "function": {"name": "lookup"}},
            response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}},
        )
        assert response.usage.prompt_tokens > 300  # the definitions were billed
        assert_charged(bounded_admin, user_id, {"used_tokens": 0}, response.usage.total_tokens)

    @pytest.mark.parametrize(
        "url", [f"data:image/png;base64,{base64.b64encode(tiny_png()).decode()}", "https://example.com/cat.png"]
    )
    def test_images_in_messages_are_reserved_at_their_bound(self, api, bounded_admin, user_id, url):
        """One image fits 1,000 (reserved at the model's bound, 1,600 raw), three do not."""
        image = {"type": "image_url", "image_url": {"url": url, "detail": "high"}}
        with pytest.raises(openai.RateLimitError):
            ask(api, user_id, [{"type": "text", "text": "[[tokens=9000]] descreva"}] + [image] * 3)
        response = ask(api, user_id, [{"type": "text", "text": "[[tokens=9000]] descreva"}, image])
        assert_charged(bounded_admin, user_id, {"used_tokens": 0}, response.usage.total_tokens)

    def test_audio_in_messages_is_reserved_by_its_length(self, api, bounded_admin, user_id):
        """Twenty seconds of WAV (200 tokens) with little left: refused, not served on hope."""
        before = leave_little(api, bounded_admin, user_id)
        audio = {
            "type": "input_audio",
            "input_audio": {"data": base64.b64encode(silent_wav(20.0)).decode(), "format": "wav"},
        }
        with pytest.raises(openai.RateLimitError):
            ask(api, user_id, [{"type": "text", "text": "transcreva"}, audio])
        short = {
            "type": "input_audio",
            "input_audio": {"data": base64.b64encode(silent_wav(0.5)).decode(), "format": "wav"},
        }
        response = ask(api, user_id, [{"type": "text", "text": "[[tokens=500]] ouça"}, short])
        assert_charged(bounded_admin, user_id, before, response.usage.total_tokens)

    def test_an_image_without_a_bound_is_refused(self, client, user_id):
        """On the session proxy no model has an image bound: a readable 400 naming the setting."""
        with pytest.raises(openai.BadRequestError) as refused:
            ask(client, user_id, [{"type": "image_url", "image_url": {"url": "https://example.com/x.png"}}])
        assert "input_part_bounds" in refused.value.body["message"]

    @pytest.mark.parametrize(
        ("extra", "said"),
        [
            ({"extra_body": {"extra_body": {"max_tokens": 100000}}}, 'campo "extra_body"'),
            ({"extra_body": {"web_search_options": {}}}, 'campo "web_search_options"'),
            ({"tools": [{"type": "web_search_preview"}]}, 'ferramenta "web_search_preview"'),
            ({"extra_body": {"n": 500}}, 'campo "n"'),
            ({"extra_body": {"fallbacks": ["fake-premium"]}}, 'campo "fallbacks"'),
        ],
    )
    def test_what_cannot_be_bounded_is_refused(self, api, user_id, extra, said):
        """extra_body over our limits, hosted search, 500 choices: 400 with a message, never served."""
        with pytest.raises(openai.BadRequestError) as refused:
            ask(api, user_id, "[[tokens=10]] oi", **extra)
        assert refused.value.status_code == 400 and said in refused.value.body["message"]

    def test_several_models_in_one_call_are_refused(self, bounded, user_id):
        """model "a,b" makes LiteLLM call every model listed (each bills): a readable 400."""
        body = {"model": "fake-model,fake-premium", "messages": [{"role": "user", "content": "oi"}]}
        assert_refused(raw_post(bounded.base_url, "/v1/chat/completions", user_id, body), 400, "value_invalid")

    def test_an_unknown_part_type_is_refused(self, bounded, user_id):
        """A content part of a type we do not know (here video) is a readable 400."""
        body = {
            "model": "fake-model",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "veja"},
                        {"type": "video_url", "video_url": {"url": "https://x/v.mp4"}},
                    ],
                }
            ],
        }
        assert_refused(raw_post(bounded.base_url, "/v1/chat/completions", user_id, body), 400, "part_type_unknown")


class TestResponses:
    def test_max_output_tokens_is_clamped(self, api, bounded_admin, user_id):
        """Before: max_output_tokens was not clamped (8,474 of 1,000 used). Now: within the allowance."""
        response = api.responses.create(
            model="fake-model",
            instructions="Responda em português. " * 20,
            max_output_tokens=100_000,
            input=[
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "[[tokens=100000]] escreva"}],
                },
                {"type": "function_call", "call_id": "c1", "name": "buscar", "arguments": json.dumps({"q": "x" * 200})},
                {"type": "function_call_output", "call_id": "c1", "output": "resultado " * 100},
            ],
            tools=[{"type": "function", "name": "buscar", "parameters": {"type": "object", "properties": {}}}],
            extra_headers={"x-litellm-end-user-id": user_id},
        )
        account = assert_charged(bounded_admin, user_id, {"used_tokens": 0}, response.usage.total_tokens)
        record_figure(
            f"responses max_output_tokens=100000: {account['used_tokens']} of {allowance} used (before: 8,474 of 1,000)"
        )

    def test_a_stream_is_clamped_too(self, api, bounded_admin, user_id):
        """Streamed Responses with little left: the final usage fits what was left."""
        before = leave_little(api, bounded_admin, user_id)
        stream = api.responses.create(
            model="fake-model",
            input="[[tokens=100000]] escreva muito",
            stream=True,
            max_output_tokens=100_000,
            extra_headers={"x-litellm-end-user-id": user_id},
        )
        completed = [event for event in stream if event.type in ("response.completed", "response.incomplete")]
        assert_charged(bounded_admin, user_id, before, completed[-1].response.usage.total_tokens)

    @pytest.mark.parametrize(
        ("extra", "code"),
        [
            ({"previous_response_id": "resp_123"}, "field_unbounded"),
            ({"tools": [{"type": "web_search"}]}, "tool_unbounded"),
            ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "part_type_unknown"),
        ],
    )
    def test_state_kept_at_the_provider_is_refused(self, bounded, user_id, extra, code):
        """Earlier responses, stored items and hosted tools cannot be bounded: a readable 400."""
        body = {"model": "fake-model", "input": "oi", **extra}
        assert_refused(raw_post(bounded.base_url, "/v1/responses", user_id, body), 400, code)


class TestAnthropicMessages:
    def test_system_tools_and_max_tokens_fit(self, bounded, bounded_admin, api, user_id):
        """/v1/messages with a long system, tools (and their system prompt) and max_tokens 100,000,
        from a user with little left: refused while it does not fit, then clamped and charged."""
        before = leave_little(api, bounded_admin, user_id)
        body = {
            "model": "fake-anthropic",
            "max_tokens": 100_000,
            "system": "Seja breve. " * 50,
            "tools": [{"name": "buscar", "description": "busca", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": "[[tokens=100000]] oi"}],
        }
        refused = raw_post(bounded.base_url, "/v1/messages", user_id, body)
        assert refused.status_code == 429, refused.text
        small = {
            "model": "fake-anthropic",
            "max_tokens": 100_000,
            "system": "Seja breve.",
            "messages": [{"role": "user", "content": "[[tokens=100000]] oi"}],
        }
        response = raw_post(bounded.base_url, "/v1/messages", user_id, small)
        assert response.status_code == 200, response.text
        usage = response.json()["usage"]
        assert_charged(bounded_admin, user_id, before, usage["input_tokens"] + usage["output_tokens"])

    def test_a_fresh_user_is_clamped_to_the_allowance(self, bounded, bounded_admin, user_id):
        """System, tools, an image and max_tokens 100,000: charged what is reported, within 1,000."""
        image = {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": base64.b64encode(tiny_png()).decode()},
        }
        body = {
            "model": "fake-anthropic",
            "max_tokens": 100_000,
            "system": [{"type": "text", "text": "Seja breve."}],
            "tools": [{"name": "buscar", "description": "busca", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "[[tokens=100000]] veja"}, image]}],
        }
        response = raw_post(bounded.base_url, "/v1/messages", user_id, body)
        assert response.status_code == 200, response.text
        usage = response.json()["usage"]
        assert_charged(bounded_admin, user_id, {"used_tokens": 0}, usage["input_tokens"] + usage["output_tokens"])


class TestPromptMargin:
    def test_a_provider_counting_30_percent_more_never_overspends(self, api, bounded_admin, user_id):
        """A tokenizer that reports 30 % more prompt tokens: once one small call has taught the
        margin, calls of a user with little left never push used past credited."""
        prompt = "[[prompt_scale=1.3]] [[tokens=100000]] " + "palavras longas " * 150
        ask(api, f"teacher-{user_id}", prompt, max_tokens=10)  # the provider's report teaches the margin
        bounded_admin.settled_account(f"teacher-{user_id}")  # learned when its success event is handled
        served = 0
        for _ in range(8):
            try:
                response = ask(api, user_id, prompt)
            except openai.RateLimitError:
                break
            served += 1
            assert response.usage.prompt_tokens > 0
            account = bounded_admin.settled_account(user_id)
            assert account["used_tokens"] <= account["credited_tokens"], account
        assert served >= 1
        account = bounded_admin.settled_account(user_id)
        record_figure(f"prompt_scale=1.3: {served} calls served, {account['used_tokens']} of {allowance} used")
