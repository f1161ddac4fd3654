"""Worst-case estimates, the completion bound, and the rule of every route (no proxy needed)."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import math
import random
import struct

import pytest

from solaris_hooks.exceptions import CallUnbounded, RouteClosed
from solaris_hooks.quota.audio_length import audio_seconds, wav_seconds
from solaris_hooks.quota.estimate import plan_call, requested_completion_tokens, set_completion_bound
from solaris_hooks.quota.plan import Plan, completion_limit, platform_tokens
from solaris_hooks.quota.prices import image_price
from solaris_hooks.quota.route_guard import RouteGuard, install
from solaris_hooks.quota.route_rules import route_of_call_type, route_of_path, rule_for
from solaris_hooks.settings import SettingsError, settings_from_mapping
from tests.support.fake_provider import _anthropic, _chat, _embeddings, _responses
from tests.support.fake_provider._media import silent_mp3, silent_wav, tiny_png

# Bounds at least what the fake provider bills (OpenAI's tile formula tops at 1,445,
# Anthropic's at 1,600; audio at 10 tokens a second, non-WAV measured at 1,000 B/s).
bounds = {
    "*": {
        "image_tokens_max": 1600,
        "audio_tokens_per_second_max": 10,
        "audio_bytes_per_second_min": 1000,
        "file_tokens_max": 5000,
    }
}
settings = settings_from_mapping(
    {
        "input_part_bounds": bounds,
        "model_prices": {
            "fake-image": {"per_image": {"1024x1024": 300, "1024x1536": 450, "1024x1024/high": 600}},
            "fake-tts": {"per_1k_characters": 20},
            "fake-whisper": {"per_audio_second": 2, "audio_bytes_per_second_min": 1000},
            "fake-whisper-wav-only": {"per_audio_second": 2},
        },
    }
)
factors = (0.376, 0.1, 1.0, 1.5)


class TestPlatformTokens:
    def test_rounds_up(self):
        """Any fraction of a platform token costs a whole one."""
        assert platform_tokens(63, 0.376) == 24  # 23.688
        assert platform_tokens(1, 0.376) == 1

    def test_float_noise_does_not_add_a_token(self):
        """0.1 × 30 is 3 platform tokens, not 4."""
        assert platform_tokens(30, 0.1) == 3

    def test_zero_costs_nothing(self):
        """No tokens, no charge."""
        assert platform_tokens(0, 0.376) == 0


class TestCompletionLimit:
    @pytest.mark.parametrize("budget", [1, 2, 10, 99, 100, 376, 1000, 12345])
    @pytest.mark.parametrize("factor", [0.376, 0.1, 1.0, 1.5, 3.0])
    @pytest.mark.parametrize("choices", [1, 3, 8])
    def test_the_limit_is_the_largest_that_fits(self, budget, factor, choices):
        """The worst case of the limit, over every choice, fits the budget and one more token would not."""
        prompt = 13
        limit = completion_limit(budget, prompt, factor, choices)
        if limit > 0:
            assert platform_tokens(prompt + choices * limit, factor) <= budget
        assert platform_tokens(prompt + choices * (limit + 1), factor) > budget


class TestPlan:
    def test_a_full_reservation_keeps_the_requested_bound(self):
        """When everything wanted was reserved, max_tokens stays as asked."""
        plan = Plan(prompt_tokens=10, completion_tokens_max=100, factor=0.376)
        assert plan.completion_bound(plan.wanted_tokens) == 100

    def test_a_partial_reservation_lowers_the_bound(self):
        """With less reserved than wanted, the bound shrinks so the worst case fits."""
        plan = Plan(prompt_tokens=10, completion_tokens_max=1000, factor=0.376)
        bound = plan.completion_bound(50)
        assert bound < 1000
        assert platform_tokens(10 + bound, 0.376) <= 50

    def test_embeddings_want_only_their_input(self):
        """A call with no completion reserves its input and is never clamped."""
        plan = Plan(prompt_tokens=100, completion_tokens_max=0, factor=0.376)
        assert plan.wanted_tokens == plan.minimum_tokens == 38

    def test_every_choice_is_reserved(self):
        """n choices want n completions, and the per-choice bound shrinks n times faster."""
        plan = Plan(prompt_tokens=10, completion_tokens_max=100, factor=1.0, choices=8)
        assert plan.wanted_tokens == 810
        assert plan.minimum_tokens == 18
        assert plan.completion_bound(100) == 11  # 10 + 8 × 11 = 98

    def test_the_margin_multiplies_the_prompt(self):
        """A model whose provider counts 30 % more reserves 30 % more prompt."""
        plan = Plan(prompt_tokens=100, completion_tokens_max=0, factor=1.0, prompt_margin=1.3)
        assert plan.prompt_bound_tokens == 130
        assert plan.wanted_tokens == 130
        assert plan.prompt_tokens == 100  # the lead's margin learning compares reports to this

    def test_a_priced_call_charges_what_fits(self):
        """Four images wanted, two reserved: n becomes 2 and the charge is two images."""
        plan = Plan(
            0,
            0,
            1.0,
            route="images",
            limit_fields=(),
            unit_tokens=300,
            units_max=4,
            units_field="n",
            charged_by_plan=True,
        )
        assert (plan.wanted_tokens, plan.minimum_tokens) == (1200, 300)
        data = {"n": 4}
        plan.write_bound(data, 650)
        assert data["n"] == 2
        assert plan.settle_raw_tokens(650) == 600

    def test_token_calls_are_charged_by_usage(self):
        """A plan leaves the charge of a token call to the provider's usage."""
        assert Plan(10, 10, 0.376).settle_raw_tokens(100) is None


class TestRequestFields:
    def test_the_smaller_of_both_fields_counts(self):
        """max_tokens and max_completion_tokens: the tighter one bounds the call."""
        assert requested_completion_tokens({"max_tokens": 50, "max_completion_tokens": 20}) == 20
        assert requested_completion_tokens({}) is None

    def test_the_bound_goes_where_the_client_put_it(self):
        """A client using max_completion_tokens gets that field lowered, not a new one."""
        data = {"max_completion_tokens": 500}
        set_completion_bound(data, 40)
        assert data == {"max_completion_tokens": 40}
        data = {}
        set_completion_bound(data, 40)
        assert data == {"max_tokens": 40}

    @pytest.mark.parametrize(
        ("call_type", "body", "field"),
        [
            ("aresponses", {"input": "hi", "max_output_tokens": 100_000}, "max_output_tokens"),
            ("aresponses", {"input": "hi"}, "max_output_tokens"),
            ("anthropic_messages", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8000}, "max_tokens"),
            ("atext_completion", {"prompt": "hi", "max_tokens": "9000"}, "max_tokens"),
            (
                "acompletion",
                {"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 9000},
                "max_completion_tokens",
            ),
        ],
    )
    def test_every_route_limit_is_clamped(self, call_type, body, field):
        """Responses' max_output_tokens, Anthropic's max_tokens, and the rest: lowered and written."""
        plan = plan_call(body, call_type, 1.0, settings)
        plan.write_bound(body, 60)
        assert isinstance(body[field], int) and plan.prompt_tokens + body[field] <= 60

    def test_an_absurd_limit_is_treated_as_a_cap(self):
        """A max_tokens of 10**400 cannot overflow the arithmetic; it is lowered like any other."""
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**400}
        plan = plan_call(body, "acompletion", 0.376, settings)
        plan.write_bound(body, 100)
        assert platform_tokens(plan.prompt_tokens + body["max_tokens"], 0.376) <= 100


class TestChoices:
    def test_choices_in_a_string_count(self):
        """n="8" is eight choices (providers accept it), and is written back as 8."""
        body = {"messages": [{"role": "user", "content": "hi"}], "n": "8", "max_tokens": 10}
        plan = plan_call(body, "acompletion", 1.0, settings)
        assert plan.choices == 8 and body["n"] == 8

    @pytest.mark.parametrize("n", [0, 129, -1, "abc", True, 2.5, [2], "9" * 30])
    def test_impossible_choices_are_refused(self, n):
        """A choice count we cannot read or that no provider accepts is a 400, never a guess."""
        with pytest.raises(CallUnbounded) as refused:
            plan_call({"messages": [], "n": n}, "acompletion", 1.0, settings)
        assert refused.value.status_code == 400 and refused.value.params == {"field": "n"}

    def test_legacy_completions_bill_best_of_for_every_prompt(self):
        """Two prompts with best_of 5: ten completions are reserved."""
        body = {"prompt": ["a", "b"], "n": 2, "best_of": 5, "max_tokens": 10}
        plan = plan_call(body, "atext_completion", 1.0, settings)
        assert plan.choices == 10


def _text(rng: random.Random, words_max: int = 60) -> str:
    vocabulary = ["olá", "mundo", "token", "🙂", "déjà-vu", '{"json": 1}', "x" * 17, "数据", "\n", "  ", "a1b2"]
    return " ".join(rng.choice(vocabulary) for _ in range(rng.randint(0, words_max)))


def _data_url(blob: bytes, kind: str) -> str:
    return f"data:{kind};base64,{base64.b64encode(blob).decode()}"


def _chat_body(rng: random.Random) -> dict:
    messages: list[dict] = [{"role": "system", "content": _text(rng)}]
    for _ in range(rng.randint(1, 5)):
        parts: list[dict] = [{"type": "text", "text": _text(rng)}]
        if rng.random() < 0.4:
            url = _data_url(tiny_png(), "image/png") if rng.random() < 0.5 else "https://example.com/cat.png"
            parts.append(
                {"type": "image_url", "image_url": {"url": url, "detail": rng.choice(["low", "high", "auto"])}}
            )
        if rng.random() < 0.3:
            blob = silent_wav(rng.uniform(0.1, 3)) if rng.random() < 0.5 else silent_mp3(rng.uniform(0.1, 3))
            parts.append(
                {"type": "input_audio", "input_audio": {"data": base64.b64encode(blob).decode(), "format": "wav"}}
            )
        messages.append({"role": "user", "content": parts if rng.random() < 0.6 else _text(rng), "name": "ana"})
        if rng.random() < 0.4:
            messages.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "lookup", "arguments": json.dumps({"q": _text(rng)})},
                        }
                    ],
                }
            )
            messages.append({"role": "tool", "tool_call_id": "c1", "content": _text(rng)})
    body: dict = {"model": "fake-model", "messages": messages, "n": rng.choice([1, 1, 2, 8])}
    if rng.random() < 0.5:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": f"tool{i}",
                    "description": _text(rng, 20),
                    "parameters": {
                        "type": "object",
                        "properties": {"q": {"type": "string", "description": _text(rng, 10)}},
                    },
                },
            }
            for i in range(rng.randint(1, 4))
        ]
        body["tool_choice"] = rng.choice(["auto", "required", {"type": "function", "function": {"name": "tool0"}}])
    if rng.random() < 0.3:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "r", "schema": {"type": "object", "properties": {"answer": {"type": "string"}}}},
        }
    if rng.random() < 0.7:
        body[rng.choice(["max_tokens", "max_completion_tokens"])] = rng.randint(1, 5000)
    return body


def _responses_body(rng: random.Random) -> dict:
    items: list = []
    for _ in range(rng.randint(1, 4)):
        items.append(
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": _text(rng)}]
                + ([{"type": "input_image", "image_url": "https://example.com/a.png"}] if rng.random() < 0.3 else []),
            }
        )
        if rng.random() < 0.4:
            items.append(
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": json.dumps({"q": _text(rng)})}
            )
            items.append({"type": "function_call_output", "call_id": "c", "output": _text(rng)})
    body: dict = {
        "model": "fake-model",
        "input": items if rng.random() < 0.8 else _text(rng),
        "instructions": _text(rng),
    }
    if rng.random() < 0.5:
        body["tools"] = [{"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}]
    if rng.random() < 0.3:
        body["text"] = {"format": {"type": "json_schema", "name": "r", "schema": {"type": "object"}}}
    if rng.random() < 0.7:
        body["max_output_tokens"] = rng.randint(1, 9000)
    return body


def _messages_body(rng: random.Random) -> dict:
    messages = []
    for _ in range(rng.randint(1, 4)):
        content: list[dict] = [{"type": "text", "text": _text(rng)}]
        if rng.random() < 0.3:
            content.append(
                {
                    "type": "image",
                    "source": {
                        "type": "base64",
                        "media_type": "image/png",
                        "data": base64.b64encode(tiny_png()).decode(),
                    },
                }
            )
        messages.append({"role": "user", "content": content})
        if rng.random() < 0.3:
            messages.append(
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"q": _text(rng)}}],
                }
            )
            messages.append(
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": _text(rng)}]}
                    ],
                }
            )
    body: dict = {
        "model": "fake-anthropic",
        "messages": messages,
        "max_tokens": rng.randint(1, 8000),
        "system": rng.choice([_text(rng), [{"type": "text", "text": _text(rng)}]]),
    }
    if rng.random() < 0.5:
        body["tools"] = [{"name": "f", "description": _text(rng, 10), "input_schema": {"type": "object"}}]
        body["tool_choice"] = rng.choice([{"type": "auto"}, {"type": "any"}])
    return body


def _completions_body(rng: random.Random) -> dict:
    prompt = rng.choice([_text(rng), [_text(rng) for _ in range(rng.randint(1, 3))], [1, 2, 3, 4], [[5, 6], [7]]])
    n = rng.randint(1, 3)
    return {
        "model": "fake-model",
        "prompt": prompt,
        "n": n,
        "best_of": rng.randint(n, 5),
        "max_tokens": rng.randint(1, 3000),
        "suffix": rng.choice([None, _text(rng, 10)]),
    }


def _embeddings_body(rng: random.Random) -> dict:
    return {
        "model": "fake-embedding",
        "input": rng.choice([_text(rng), [_text(rng), _text(rng)], [1, 2, 3], [[1, 2], [3]]]),
    }


def _fake_bill(route: str, body: dict) -> tuple[int, int]:
    """(prompt, completion) raw tokens the fake provider bills, at most, for this request."""
    if route == "chat":
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        return _chat.chat_prompt_tokens(body), body.get("n", 1) * limit
    if route == "responses":
        return _responses.input_tokens(body), body["max_output_tokens"]
    if route == "messages":
        return _anthropic.input_tokens(body), body["max_tokens"]
    if route == "completions":
        prompts = _chat._prompts(body["prompt"])
        prompt = sum(_chat._count_prompt(item, False) for item in prompts) + _chat.count_text(body.get("suffix") or "")
        return prompt, len(prompts) * body["best_of"] * body["max_tokens"]
    inputs = _embeddings._inputs(body["input"])
    return sum(len(item) if isinstance(item, list) else _chat.count_text(item) for item in inputs), 0


shapes = {
    "chat": ("acompletion", _chat_body),
    "responses": ("aresponses", _responses_body),
    "messages": ("anthropic_messages", _messages_body),
    "completions": ("atext_completion", _completions_body),
    "embeddings": ("aembedding", _embeddings_body),
}


class TestTheBoundHoldsForEveryShape:
    @pytest.mark.parametrize("route", list(shapes))
    @pytest.mark.parametrize("seed", range(30))
    def test_what_the_provider_bills_fits_what_was_reserved(self, route, seed):
        """For random requests of every shape and any reservation between the minimum and the
        worst case, the bounded request costs at most what was reserved, even with a provider
        whose tokenizer counts 30 % more when the margin says so."""
        rng = random.Random(f"{route}-{seed}")
        call_type, make = shapes[route]
        body = make(rng)
        factor = rng.choice(factors)
        scale = rng.choice([None, 1.3])
        plan = plan_call(copy.deepcopy(body), call_type, factor, settings, prompt_margin=scale or 1.0)
        for reserved in sorted(
            {plan.minimum_tokens, plan.wanted_tokens, rng.randint(plan.minimum_tokens, plan.wanted_tokens)}
        ):
            bounded = copy.deepcopy(body)
            plan.write_bound(bounded, reserved)
            prompt, completion = _fake_bill(route, bounded)
            if scale:
                prompt = math.ceil(prompt * scale)
            assert platform_tokens(prompt + completion, factor) <= reserved, (reserved, prompt, completion, plan)


class TestInputParts:
    def test_an_image_is_counted_at_its_bound(self):
        """An image adds the model's bound, whatever its URL says; no URL is fetched."""
        text_only = plan_call(
            {"model": "m", "messages": [{"role": "user", "content": "hi"}]}, "acompletion", 1, settings
        )
        with_image = plan_call(
            {
                "model": "m",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "hi"},
                            {"type": "image_url", "image_url": {"url": "http://10.0.0.1/x.png"}},
                        ],
                    }
                ],
            },
            "acompletion",
            1,
            settings,
        )
        assert with_image.prompt_tokens - text_only.prompt_tokens >= 1600

    def test_an_image_without_a_bound_is_refused_naming_the_setting(self):
        """No bound for the model: a readable 400 that names input_part_bounds and the model."""
        with pytest.raises(CallUnbounded) as refused:
            plan_call(
                {
                    "model": "gpt-x",
                    "messages": [
                        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}
                    ],
                },
                "acompletion",
                1,
                settings_from_mapping({}),
            )
        assert refused.value.status_code == 400
        assert refused.value.params["setting"] == "input_part_bounds: {gpt-x: {image_tokens_max: N}}"

    @pytest.mark.parametrize(
        ("call_type", "body", "key"),
        [
            (
                "acompletion",
                {"messages": [{"role": "user", "content": [{"type": "video_url", "video_url": "x"}]}]},
                "part_type_unknown",
            ),
            ("aresponses", {"input": [{"type": "item_reference", "id": "msg_1"}]}, "part_type_unknown"),
            ("acompletion", {"messages": [{"role": "assistant", "audio": {"id": "audio_1"}}]}, "part_reference"),
            ("aresponses", {"input": "hi", "tools": [{"type": "web_search"}]}, "tool_unbounded"),
            (
                "anthropic_messages",
                {"messages": [], "tools": [{"type": "web_search_20250305", "name": "w"}]},
                "tool_unbounded",
            ),
            ("aresponses", {"input": "hi", "previous_response_id": "resp_1"}, "field_unbounded"),
            ("aresponses", {"input": "hi", "conversation": "conv_1"}, "field_unbounded"),
            ("aresponses", {"input": "hi", "background": True}, "field_unbounded"),
            ("acompletion", {"messages": [], "extra_body": {"max_tokens": 100000}}, "field_unbounded"),
            ("acompletion", {"messages": [], "web_search_options": {}}, "field_unbounded"),
            ("anthropic_messages", {"messages": [], "mcp_servers": [{"url": "x"}]}, "field_unbounded"),
            ("acompletion", {"messages": [], "fallbacks": ["fake-premium"]}, "field_unbounded"),
            ("acompletion", {"model": "fake-model,fake-premium", "messages": []}, "value_invalid"),
            ("image_generation", {"model": "fake-image", "user_config": {"model_list": []}}, "field_unbounded"),
        ],
    )
    def test_what_cannot_be_bounded_is_refused(self, call_type, body, key):
        """References to provider-side state, hosted tools, unknown part types, extra_body: a 400, never served on
        hope."""
        with pytest.raises(CallUnbounded) as refused:
            plan_call(body, call_type, 1, settings)
        assert refused.value.message_key == key and refused.value.status_code == 400

    def test_audio_is_counted_by_its_length(self):
        """Three seconds of WAV at 10 tokens a second adds 30 tokens."""

        def plan(blob: bytes) -> Plan:
            return plan_call(
                {
                    "model": "m",
                    "messages": [
                        {
                            "role": "user",
                            "content": [
                                {
                                    "type": "input_audio",
                                    "input_audio": {"data": base64.b64encode(blob).decode(), "format": "wav"},
                                }
                            ],
                        }
                    ],
                },
                "acompletion",
                1,
                settings,
            )

        assert plan(silent_wav(3.0)).prompt_tokens - plan(silent_wav(0.0)).prompt_tokens == 30

    def test_audio_of_unknown_length_is_refused_without_a_size_bound(self):
        """MP3 with no minimum bit rate configured: refused, naming audio_bytes_per_second_min."""
        lean = settings_from_mapping({"input_part_bounds": {"*": {"audio_tokens_per_second_max": 10}}})
        with pytest.raises(CallUnbounded) as refused:
            plan_call(
                {
                    "model": "m",
                    "messages": [
                        {
                            "role": "user",
                            "content": [
                                {
                                    "type": "input_audio",
                                    "input_audio": {"data": base64.b64encode(silent_mp3(1)).decode(), "format": "mp3"},
                                }
                            ],
                        }
                    ],
                },
                "acompletion",
                1,
                lean,
            )
        assert "audio_bytes_per_second_min" in refused.value.params["setting"]

    def test_a_nesting_bomb_is_refused(self):
        """Content nested deeper than any real request is a 400, not a recursion error."""
        content: list = [{"type": "text", "text": "x"}]
        for _ in range(200):
            content = [{"type": "tool_result", "content": content}]
        with pytest.raises(CallUnbounded):
            plan_call({"messages": [{"role": "user", "content": content}]}, "anthropic_messages", 1, settings)

    def test_a_failing_token_counter_falls_back_to_bytes(self, monkeypatch):
        """If no encoding can be counted with, the UTF-8 length (an upper bound) is used and the call goes on."""
        from solaris_hooks.quota import tokenizer

        def broken(model: str):
            raise OSError("no encoding file")

        monkeypatch.setattr(tokenizer, "_encoding_for", broken)
        plan = plan_call({"messages": [{"role": "user", "content": "olá mundo"}]}, "acompletion", 1, settings)
        assert plan.prompt_tokens >= len("olá mundo".encode()) + len("user")


class TestRouteRules:
    @pytest.mark.parametrize(
        ("call_type", "route"),
        [
            ("acompletion", "chat"),
            ("atext_completion", "completions"),
            ("aresponses", "responses"),
            ("anthropic_messages", "messages"),
            ("aembedding", "embeddings"),
            ("moderation", "moderations"),
            ("image_generation", "images"),
            ("aimage_edit", "image_edits"),
            ("aspeech", "speech"),
            ("transcription", "transcriptions"),
            ("rerank", "rerank"),
            ("pass_through_endpoint", "passthrough"),
            ("allm_passthrough_route", "passthrough"),
            ("_arealtime", "realtime"),
            ("afile_retrieve", "files"),
            ("acreate_batch", "batches"),
            ("acompact_responses", "responses_compact"),
            ("aget_responses", "stored_responses"),
            ("avector_store_file_create", "vector_stores"),
            ("brand_new_call_type", "brand_new_call_type"),
        ],
    )
    def test_call_types_map_to_routes(self, call_type, route):
        """Every call type the hook can see has a route name (unknown ones their own)."""
        assert route_of_call_type(call_type) == route

    @pytest.mark.parametrize(
        ("method", "path", "route"),
        [
            ("POST", "/v1/chat/completions", "chat"),
            ("POST", "/chat/completions", "chat"),
            ("POST", "/openai/deployments/gpt/chat/completions", "chat"),
            ("POST", "/engines/m/completions", "completions"),
            ("POST", "/v1/responses", "responses"),
            ("GET", "/v1/responses/resp_1", "stored_responses"),
            ("POST", "/v1/messages", "messages"),
            ("POST", "/v1/messages/count_tokens", "messages_other"),
            ("POST", "/v1/files", "files"),
            ("GET", "/v1/files/file-1/content", "files"),
            ("POST", "/openai/v1/files", "files"),
            ("POST", "/v1/batches", "batches"),
            ("POST", "/openai/v1/chat/completions", "passthrough"),
            ("GET", "/anthropic/v1/models", "passthrough"),
            ("POST", "/vertex_ai/v1/x", "passthrough"),
            ("WEBSOCKET", "/v1/realtime", "realtime"),
            ("POST", "/v1/threads/t/runs", "assistants"),
            ("POST", "/v1/rerank", "rerank"),
            ("POST", "/v1beta/models/gemini:generateContent", "gemini"),
            ("POST", "/queue/chat/completions", "passthrough"),
            ("POST", "/v1/moderations", "moderations"),
            ("POST", "/v1/audio/speech", "speech"),
            ("POST", "/v1/images/edits", "image_edits"),
        ],
    )
    def test_llm_paths_map_to_routes(self, method, path, route):
        """Every LLM path family of LiteLLM has a route name."""
        assert route_of_path(method, path) == route

    @pytest.mark.parametrize(
        "path",
        [
            "/solaris/users",
            "/key/generate",
            "/health/liveliness",
            "/v1/models",
            "/ui/",
            "/user/info",
            "/model/info",
            "/solaris/admin",
        ],
    )
    def test_admin_paths_are_not_llm_routes(self, path):
        """The admin API, UI and health checks are not touched by the route rules."""
        assert route_of_path("GET", path) is None and route_of_path("POST", path) is None

    def test_a_route_without_a_rule_is_refused(self):
        """Files are refused by default; `routes: {files: free}` opens them; chat is charged."""
        assert rule_for("files", {}) == "refuse"
        assert rule_for("files", {"files": "free"}) == "free"
        assert rule_for("chat", {}) == "charge"
        with pytest.raises(RouteClosed) as refused:
            plan_call({}, "afile_retrieve", 1, settings)
        assert refused.value.status_code == 403
        assert refused.value.params == {"route": "files", "setting": "routes: {files: free}"}

    def test_a_free_route_plans_no_reservation(self):
        """A route opened with `free` wants nothing and says so."""
        plan = plan_call(
            {"input": "x"}, "moderation", 0.376, settings_from_mapping({"routes": {"moderations": "free"}})
        )
        assert plan.free and plan.wanted_tokens == 0

    def test_charging_an_unboundable_route_is_a_settings_error(self):
        """`routes: {files: charge}` stops the proxy at start-up: files cannot be bounded."""
        with pytest.raises(SettingsError, match="files"):
            settings_from_mapping({"routes": {"files": "charge"}})

    def test_a_charged_moderation_is_settled_by_its_estimate(self):
        """Moderations report no usage: the plan says what to charge, so nothing waits to expire."""
        plan = plan_call({"input": "some text to check"}, "moderation", 0.376, settings)
        assert plan.charged_by_plan and plan.settle_raw_tokens(plan.wanted_tokens) == plan.prompt_tokens > 0


class TestPrices:
    @pytest.mark.parametrize(
        ("size", "quality", "price"),
        [
            ("1024x1024", "standard", 300),
            ("1024x1024", "high", 600),
            ("1024x1024", None, 600),
            ("1024x1536", "high", 450),
            ("auto", None, 600),
            (None, None, 600),
            ("256x256", None, None),
        ],
    )
    def test_an_image_costs_the_most_it_could(self, size, quality, price):
        """Exact size and quality when given; the highest entry it could fall under when auto."""
        prices = {"1024x1024": 300, "1024x1536": 450, "1024x1024/high": 600}
        assert image_price(prices, size, quality) == price

    def test_images_reserve_every_image(self):
        """n=3 at 300 each wants 900 and needs 300 for one."""
        plan = plan_call(
            {"model": "fake-image", "n": 3, "size": "1024x1024", "quality": "standard"},
            "image_generation",
            0.376,
            settings,
        )
        assert (plan.wanted_tokens, plan.minimum_tokens, plan.factor) == (900, 300, 1.0)

    def test_a_model_without_a_price_is_refused_naming_the_setting(self):
        """A readable 403 that names model_prices for that model."""
        with pytest.raises(RouteClosed) as refused:
            plan_call({"model": "fake-dalle", "prompt": "x"}, "image_generation", 1, settings)
        assert refused.value.message_key == "price_missing"
        assert refused.value.params["setting"] == "model_prices: {fake-dalle: {per_image: N}}"

    def test_speech_costs_per_character(self):
        """2,500 characters at 20 per 1,000 cost 50."""
        plan = plan_call({"model": "fake-tts", "input": "a" * 2500}, "aspeech", 0.376, settings)
        assert plan.wanted_tokens == plan.minimum_tokens == plan.settle_raw_tokens(50) == 50

    def test_transcription_costs_per_second_of_wav(self):
        """Ten seconds of WAV at 2 per second cost 20."""
        plan = plan_call({"model": "fake-whisper", "file": silent_wav(10.0)}, "transcription", 1, settings)
        assert plan.wanted_tokens == 20

    def test_other_audio_is_bounded_by_its_size(self):
        """An MP3 of 5,000 bytes at 1,000 B/s is bounded as 5 seconds."""
        import io

        blob = silent_mp3(0.3)
        plan = plan_call({"model": "fake-whisper", "file": io.BytesIO(blob)}, "transcription", 1, settings)
        assert plan.wanted_tokens == math.ceil(len(blob) / 1000 * 2)

    def test_other_audio_without_a_size_bound_is_refused(self):
        """No minimum bit rate for the model: a 400 that names the setting."""
        with pytest.raises(CallUnbounded) as refused:
            plan_call({"model": "fake-whisper-wav-only", "file": silent_mp3(1)}, "transcription", 1, settings)
        assert "audio_bytes_per_second_min" in refused.value.params["setting"]


class TestAudioLength:
    def test_a_wav_lasts_its_samples(self):
        """Eight thousand one-byte samples a second for 2.5 s."""
        assert wav_seconds(silent_wav(2.5)) == pytest.approx(2.5)

    def test_a_header_that_understates_its_data_does_not_shorten_it(self):
        """Every byte after the data chunk starts counts, whatever its size field says."""
        blob = bytearray(silent_wav(2.0))
        data_at = blob.index(b"data")
        blob[data_at + 4 : data_at + 8] = struct.pack("<I", 10)
        assert wav_seconds(bytes(blob)) == pytest.approx(2.0)

    def test_not_wav_is_not_read(self):
        """MP3 has no trusted length: None, or the size bound when one is given."""
        assert wav_seconds(silent_mp3(1)) is None
        assert audio_seconds(b"x" * 3000, 1000) == 3


class TestRouteGuard:
    @staticmethod
    def _call(guard: RouteGuard, scope: dict) -> list[dict]:
        sent: list[dict] = []

        async def receive():
            return {"type": "http.request", "body": b""}

        async def send(message):
            sent.append(message)

        asyncio.run(guard(scope, receive, send))
        return sent

    @staticmethod
    def _guard(rules: dict | None = None) -> tuple[RouteGuard, list]:
        reached: list = []

        async def app(scope, receive, send):
            reached.append(scope["path"])

        current = settings_from_mapping({"routes": rules or {}, "locale": "en"})
        return RouteGuard(app, lambda: current), reached

    def test_a_closed_route_gets_a_readable_403(self):
        """POST /v1/files: 403 whose message names the route and the setting, never reaching LiteLLM."""
        guard, reached = self._guard()
        sent = self._call(guard, {"type": "http", "method": "POST", "path": "/v1/files", "root_path": ""})
        assert sent[0]["status"] == 403 and not reached
        error = json.loads(sent[1]["body"])["error"]
        assert error["code"] == "route_closed" and "routes: {files: free}" in error["message"]

    def test_open_routes_and_admin_paths_pass(self):
        """Chat (charged by the hook), files once opened, and the admin API go through."""
        guard, reached = self._guard({"files": "free"})
        for path in ("/v1/chat/completions", "/v1/files", "/solaris/users"):
            self._call(guard, {"type": "http", "method": "POST", "path": path, "root_path": ""})
        assert reached == ["/v1/chat/completions", "/v1/files", "/solaris/users"]

    def test_the_server_root_path_is_ignored(self):
        """Under a root path, /api/v1/batches is still the batches route."""
        guard, reached = self._guard()
        sent = self._call(guard, {"type": "http", "method": "POST", "path": "/api/v1/batches", "root_path": "/api"})
        assert sent[0]["status"] == 403 and not reached

    def test_a_closed_websocket_is_closed_with_the_reason(self):
        """Realtime over a WebSocket: closed with policy violation (1008) before it is accepted."""
        guard, reached = self._guard()
        sent = self._call(guard, {"type": "websocket", "path": "/v1/realtime", "root_path": ""})
        assert sent == [{"type": "websocket.close", "code": 1008, "reason": sent[0]["reason"]}] and not reached
        assert "realtime" in sent[0]["reason"]

    def test_installing_twice_wraps_once(self):
        """The callback module may be imported twice: one guard."""

        class Router:
            middleware_stack = object()

        class App:
            router = Router()

        install(App, lambda: settings)
        install(App, lambda: settings)
        assert isinstance(App.router.middleware_stack, RouteGuard)
        assert not isinstance(App.router.middleware_stack.app, RouteGuard)
