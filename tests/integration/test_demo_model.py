"""Tests for the offline demo model, driven through litellm as the proxy drives it."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import asyncio
import socket

import litellm
import pytest
from litellm.integrations.custom_logger import CustomLogger

from solaris_hooks.demo.model import demo_llm

tokenizer = "gpt-3.5-turbo"
messages = [
    {"role": "system", "content": "Você é um assistente."},
    {"role": "user", "content": "Qual é a capital do Brasil? Explique em detalhes, por favor."},
]


@pytest.fixture(autouse=True)
def solaris_provider():
    saved = (litellm.custom_provider_map, list(litellm.provider_list), list(litellm._custom_providers))
    litellm.custom_provider_map = [{"provider": "solaris", "custom_handler": demo_llm}]
    litellm.utils.custom_llm_setup()
    yield
    litellm.custom_provider_map = saved[0]
    litellm.provider_list[:] = saved[1]
    litellm._custom_providers[:] = saved[2]


class UsageRecorder(CustomLogger):
    """Keeps the usage of successful calls made with `probe` as their messages."""

    # LiteLLM carries logging tasks still pending from an earlier event loop over to the next
    # one, so calls from other tests may reach this recorder too.
    probe = [{"role": "user", "content": "Sonda de callback."}]

    def __init__(self) -> None:
        super().__init__()
        self.usages: list = []

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        if kwargs.get("messages") == self.probe:
            self.usages.append(response_obj.usage)


def complete(msgs: list = messages, **params):
    return asyncio.run(litellm.acompletion(model="solaris/demo", messages=msgs, **params))


def stream(msgs: list = messages, **params) -> tuple[str, object]:
    """The streamed text and the usage on the stream's last chunk."""

    async def run():
        response = await litellm.acompletion(
            model="solaris/demo", messages=msgs, stream=True, stream_options={"include_usage": True}, **params
        )
        text, usage = "", None
        async for chunk in response:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            usage = getattr(chunk, "usage", None) or usage
        return text, usage

    return asyncio.run(run())


def count(text: str) -> int:
    return len(litellm.encode(model=tokenizer, text=text))


class TestDemoModel:
    def test_answers_in_portuguese_echoing_the_last_user_message(self):
        """The reply introduces the demo model and quotes the last user message."""
        content = complete().choices[0].message.content
        assert content.startswith("Olá! Sou o modelo de demonstração do IA SOLARIS.")
        assert "«Qual é a capital do Brasil?" in content

    def test_long_messages_are_echoed_shortened(self):
        """Only the start of a long message is echoed, so replies keep a realistic size."""
        response = complete([{"role": "user", "content": "palavra " * 500}])
        assert "…»" in response.choices[0].message.content
        assert 30 <= response.usage.completion_tokens <= 60

    def test_is_deterministic(self):
        """The same request always gets the same reply and the same usage."""
        first, second = complete(), complete()
        assert first.choices[0].message.content == second.choices[0].message.content
        assert first.usage == second.usage

    def test_usage_is_the_real_tokenizer_count(self):
        """prompt_tokens and completion_tokens are cl100k counts of the prompt and the reply."""
        response = complete()
        assert response.usage.prompt_tokens == litellm.token_counter(model=tokenizer, messages=messages)
        assert response.usage.completion_tokens == count(response.choices[0].message.content)
        assert 30 <= response.usage.completion_tokens <= 60
        assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens
        assert response.choices[0].finish_reason == "stop"

    @pytest.mark.parametrize("param", ["max_tokens", "max_completion_tokens"])
    def test_max_tokens_truncates_exactly(self, param):
        """A token limit cuts the reply to exactly that many tokens, with finish_reason length."""
        full = complete().choices[0].message.content
        response = complete(**{param: 7})
        assert response.usage.completion_tokens == 7
        content = response.choices[0].message.content
        assert count(content) == 7
        assert full.startswith(content)
        assert response.choices[0].finish_reason == "length"

    def test_limit_above_the_reply_changes_nothing(self):
        """A limit larger than the reply neither pads nor cuts it."""
        full = complete()
        response = complete(max_tokens=1000)
        assert response.choices[0].message.content == full.choices[0].message.content
        assert response.usage == full.usage
        assert response.choices[0].finish_reason == "stop"

    def test_streaming_matches_non_streaming(self):
        """A streamed reply has the same text and the same usage as the non-streamed one."""
        response = complete()
        text, usage = stream()
        assert text == response.choices[0].message.content
        assert (usage.prompt_tokens, usage.completion_tokens) == (
            response.usage.prompt_tokens,
            response.usage.completion_tokens,
        )

    def test_streaming_survives_multibyte_cuts(self):
        """Token cuts inside a multi-byte character never garble the stream, at any limit."""
        msgs = [{"role": "user", "content": "日本語のテキスト 🙂🙂 ação"}]
        for limit in range(1, complete(msgs).usage.completion_tokens + 1):
            text, usage = stream(msgs, max_tokens=limit)
            assert text == complete(msgs, max_tokens=limit).choices[0].message.content
            assert usage.completion_tokens == limit

    def test_success_callback_sees_the_streamed_usage(self):
        """LiteLLM's success callback gets the same counts for a streamed call as for a plain one."""
        recorder = UsageRecorder()
        saved = litellm.callbacks
        litellm.callbacks = [recorder]

        async def run():
            await litellm.acompletion(model="solaris/demo", messages=recorder.probe, max_tokens=12)
            response = await litellm.acompletion(
                model="solaris/demo", messages=recorder.probe, max_tokens=12, stream=True
            )
            async for _ in response:
                pass
            for _ in range(200):  # success logging runs in background tasks of this loop
                if len(recorder.usages) == 2:
                    break
                await asyncio.sleep(0.01)

        try:
            asyncio.run(run())
        finally:
            litellm.callbacks = saved
        plain, streamed = (
            (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) for usage in recorder.usages
        )
        prompt_tokens = litellm.token_counter(model=tokenizer, messages=recorder.probe)
        assert plain == streamed == (prompt_tokens, 12, prompt_tokens + 12)

    def test_sync_calls_work(self):
        """litellm.completion, streamed or not, gets the same reply as acompletion."""
        expected = complete(max_tokens=9).choices[0].message.content
        response = litellm.completion(model="solaris/demo", messages=messages, max_tokens=9)
        assert response.choices[0].message.content == expected
        assert response.usage.completion_tokens == 9
        chunks = litellm.completion(model="solaris/demo", messages=messages, max_tokens=9, stream=True)
        assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == expected

    def test_needs_no_network(self, monkeypatch):
        """Answering, tokenizer included, opens no network connection."""

        def refuse(*args, **kwargs):
            raise AssertionError(f"network connection attempted: {args}")

        monkeypatch.setattr(socket.socket, "connect", refuse)
        monkeypatch.setattr(socket, "create_connection", refuse)
        assert complete().usage.completion_tokens > 0
        assert stream()[0]
