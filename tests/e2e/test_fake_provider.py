"""LiteLLM's proxy, without our callback, forwards each route to the fake provider and reports
the fake's usage back, pinning the LiteLLM behaviours our quota bounds depend on.

The fake on its own: tests/integration/test_fake_provider.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from tests.support.fake_provider import FakeProvider
from tests.support.fake_provider._media import silent_wav
from tests.support.harness import free_port, wait_for
from tests.support.payloads import cl100k, data_url, image_part, last_request, png, user, weather_tool
from tests.support.suite import artifacts_dir, write_proxy_config

plain_master_key = "sk-fake-" + uuid.uuid4().hex


@pytest.fixture(scope="class")
def plain_litellm(fake_provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A LiteLLM proxy without our callback, with the test suite's model list; its base URL."""
    work = tmp_path_factory.mktemp("plain-litellm")
    config_path = write_proxy_config(work / "config.yaml", fake_provider.base_url, {})
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    config.pop("solaris_settings")
    config["litellm_settings"].pop("callbacks")
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    env = {name: value for name, value in os.environ.items() if name not in ("DATABASE_URL", "SOLARIS_DATABASE_URL")}
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_MASTER_KEY=plain_master_key)
    artifacts_dir.mkdir(exist_ok=True)
    log = open(artifacts_dir / "plain-litellm.log", "ab")  # noqa: SIM115 - the child writes to it until the fixture ends
    litellm_cli = Path(sys.executable).parent / "litellm"
    process = subprocess.Popen(
        [str(litellm_cli), "--config", str(config_path), "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"litellm exited with {process.returncode}; see {log.name}")
        try:
            return httpx.get(f"{base_url}/health/liveliness", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, 180, interval_s=0.3, what="plain LiteLLM proxy")
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


class TestThroughPlainLiteLLM:
    """Each route goes through LiteLLM (no callback of ours) to the fake, and LiteLLM reports its usage."""

    @pytest.fixture
    def proxied(self, plain_litellm) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{plain_litellm}/v1", api_key=plain_master_key, max_retries=0)

    def test_chat_with_n_tools_and_images_reports_the_fakes_usage(self, proxied, fake, fake_provider):
        """n=2, a tool, a response format and a data: image: LiteLLM reports what the fake billed."""
        marker = uuid.uuid4().hex
        request = {
            "messages": user(
                [{"type": "text", "text": f"{marker} [[tokens=3]]"}, image_part(data_url(png(1024, 1024)))]
            ),
            "n": 2,
            "tools": [weather_tool],
            "max_tokens": 50,
        }
        through = proxied.chat.completions.create(model="fake-model", **request)
        direct = fake.chat.completions.create(model="fake-model", **request)
        assert (
            (through.usage.prompt_tokens, through.usage.completion_tokens)
            == (direct.usage.prompt_tokens, direct.usage.completion_tokens)
            == (direct.usage.prompt_tokens, 6)
        )
        upstream = last_request(fake_provider, marker)["json"]
        assert upstream["n"] == 2 and upstream["max_tokens"] == 50 and upstream["tools"] == [weather_tool]

    def test_a_stream_gets_usage_upstream_even_when_the_client_does_not_ask(self, proxied, fake_provider):
        """LiteLLM adds stream_options.include_usage upstream; the client sees usage only if it asked."""
        marker = uuid.uuid4().hex
        chunks = list(
            proxied.chat.completions.create(
                model="fake-model", messages=user(f"{marker} [[tokens=3]]"), n=2, stream=True
            )
        )
        assert all(chunk.usage is None for chunk in chunks)
        assert last_request(fake_provider, marker)["json"]["stream_options"] == {"include_usage": True}
        asked = list(
            proxied.chat.completions.create(
                model="fake-model",
                messages=user(f"{marker} [[tokens=3]]"),
                n=2,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        assert asked[-1].usage.completion_tokens == 6

    def test_usage_missing_upstream_becomes_zero_unstreamed_and_litellms_count_streamed(self, proxied):
        """[[no_usage]]: unstreamed, LiteLLM reports 0 tokens; streamed, it counts the chunks itself."""
        bare = proxied.chat.completions.create(model="fake-model", messages=user("hi [[tokens=3]] [[no_usage]]"))
        assert (bare.usage.prompt_tokens, bare.usage.completion_tokens) == (0, 0)
        chunks = list(
            proxied.chat.completions.create(
                model="fake-model",
                messages=user("hi [[tokens=3]] [[no_usage]]"),
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        assert chunks[-1].usage.completion_tokens == 3 and chunks[-1].usage.prompt_tokens > 0

    def test_a_connection_that_dies_is_an_error_for_the_client(self, proxied):
        """[[die_after]]: unstreamed, LiteLLM answers 500; streamed, the client's stream raises mid-way."""
        with pytest.raises(openai.InternalServerError):
            proxied.chat.completions.create(model="fake-model", messages=user("hi [[die_after=0]]"))
        received: list[str] = []
        with pytest.raises(openai.APIError):
            for chunk in proxied.chat.completions.create(
                # Paced, so the two chunks reach the client before the drop on a loaded machine too.
                model="fake-model",
                stream=True,
                messages=user("hi [[tokens=9]] [[die_after=2]] [[chunk_sleep=0.05]]"),
            ):
                received += [choice.delta.content for choice in chunk.choices if choice.delta.content]
        assert "".join(received) == "ok ok"

    def test_a_dying_stream_ends_with_an_error_event_on_responses_and_messages(self, proxied, plain_litellm):
        """[[die_after=1]]: /v1/responses ends with a response.failed LiteLLM makes up, without usage
        (the deltas before it are not delivered); /v1/messages with an Anthropic `error`, no usage."""
        events = list(
            proxied.responses.create(model="fake-model", input="Olá [[tokens=4]] [[die_after=1]]", stream=True)
        )
        assert events[-1].type == "response.failed" and not events[-1].response.usage
        with httpx.stream(
            "POST",
            f"{plain_litellm}/v1/messages",
            timeout=60,
            headers={"Authorization": f"Bearer {plain_master_key}"},
            json={
                "model": "fake-anthropic",
                "max_tokens": 9,
                "stream": True,
                "messages": user("Olá [[tokens=4]] [[die_after=1]]"),
            },
        ) as response:
            # Before LiteLLM starts its stream the break is a 500 with one error body; after, an `error` event.
            bodies = [
                json.loads(line.removeprefix("data: "))
                for line in response.iter_lines()
                if line.startswith(("data: ", "{"))
            ]
        kinds = [body["type"] for body in bodies]
        assert kinds[-1] == "error" and "message_delta" not in kinds
        assert response.status_code == 500 or kinds[0] == "message_start"

    def test_usage_missing_upstream_is_reported_as_zero_or_none_on_other_routes(self, proxied):
        """[[no_usage]] elsewhere: embeddings and gpt-image show zeros, responses and transcribe none."""
        embedded = proxied.embeddings.create(model="fake-embedding", input="Olá [[no_usage]]")
        assert embedded.usage.prompt_tokens == 0
        image = proxied.images.generate(
            model="fake-image", prompt="Um gato [[no_usage]]", quality="low", size="1024x1024"
        )
        assert (image.usage.input_tokens, image.usage.output_tokens) == (0, 0)
        assert proxied.responses.create(model="fake-model", input="Olá [[tokens=2]] [[no_usage]]").usage is None
        heard = proxied.audio.transcriptions.create(
            model="fake-transcribe", file=("a.wav", silent_wav(1.0)), prompt="[[no_usage]]"
        )
        assert heard.usage is None

    def test_legacy_completions_report_best_of_billing(self, proxied, fake):
        """/v1/completions with a prompt list, n and best_of: LiteLLM reports every generated token."""
        request = {"prompt": ["Olá", "mundo"], "n": 2, "best_of": 3, "max_tokens": 4}
        through = proxied.completions.create(model="fake-model", **request)
        assert through.usage.completion_tokens == fake.completions.create(model="m", **request).usage.completion_tokens
        assert through.usage.completion_tokens == 24

    def test_responses_report_the_fakes_usage_streamed_or_not(self, proxied, fake, fake_provider):
        """/v1/responses: instructions, items and tools billed; the stream ends with that usage."""
        marker = uuid.uuid4().hex
        tool = {"type": "function", "name": "get_weather", "parameters": weather_tool["function"]["parameters"]}
        request = {
            "instructions": "Seja breve.",
            "tools": [tool],
            "max_output_tokens": 40,
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": f"{marker} [[tokens=5]]"}]},
                {"type": "function_call_output", "call_id": "c1", "output": "31 °C"},
            ],
        }
        direct = fake.responses.create(model="fake-model", **request)
        through = proxied.responses.create(model="fake-model", **request)
        assert (through.usage.input_tokens, through.usage.output_tokens) == (direct.usage.input_tokens, 5)
        assert last_request(fake_provider, marker)["json"]["max_output_tokens"] == 40
        events = list(proxied.responses.create(model="fake-model", stream=True, **request))
        assert events[-1].type == "response.completed"
        assert (events[-1].response.usage.input_tokens, events[-1].response.usage.output_tokens) == (
            direct.usage.input_tokens,
            5,
        )

    def test_responses_raise_max_output_tokens_below_sixteen(self, proxied, fake_provider):
        """LiteLLM sends max_output_tokens of at least 16 upstream, whatever smaller value the client set."""
        marker = uuid.uuid4().hex
        answer = proxied.responses.create(model="fake-model", input=marker, max_output_tokens=5)
        assert last_request(fake_provider, marker)["json"]["max_output_tokens"] == 16
        assert answer.usage.output_tokens == 16

    def test_anthropic_messages_pass_through_with_their_usage(self, plain_litellm, fake_provider):
        """/v1/messages for an anthropic/ model reaches the fake at /v1/messages, usage as billed."""
        marker = uuid.uuid4().hex
        body = {"max_tokens": 9, "system": "Seja breve.", "messages": user(f"{marker} [[tokens=4]]")}
        headers = {"Authorization": f"Bearer {plain_master_key}"}
        through = httpx.post(
            f"{plain_litellm}/v1/messages", json={"model": "fake-anthropic", **body}, headers=headers, timeout=60
        ).json()
        upstream = last_request(fake_provider, marker)
        assert upstream["path"] == "/v1/messages" and upstream["json"]["model"] == "claude-sonnet-4-5"
        assert upstream["json"]["system"] == "Seja breve." and upstream["json"]["max_tokens"] == 9
        direct = httpx.post(f"{fake_provider.root_url}/v1/messages", json={"model": "c", **body}, timeout=10).json()
        assert through["usage"]["input_tokens"] == direct["usage"]["input_tokens"]
        assert through["usage"]["output_tokens"] == 4
        with httpx.stream(
            "POST",
            f"{plain_litellm}/v1/messages",
            headers=headers,
            timeout=60,
            json={"model": "fake-anthropic", "stream": True, **body},
        ) as response:
            events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
        assert events[0]["message"]["usage"]["input_tokens"] == direct["usage"]["input_tokens"]
        assert [event["usage"]["output_tokens"] for event in events if event["type"] == "message_delta"] == [4]

    def test_chat_to_an_anthropic_model_maps_usage_and_sends_the_models_max_tokens(self, proxied, fake_provider):
        """Chat on anthropic/: system moves to the top level, usage maps to prompt/completion tokens,
        and without max_tokens LiteLLM asks for the model's maximum (64,000 for claude-sonnet-4-5)."""
        marker = uuid.uuid4().hex
        messages = [{"role": "system", "content": "Seja breve."}, *user(f"{marker} [[tokens=3]]")]
        answer = proxied.chat.completions.create(model="fake-anthropic", messages=messages)
        upstream = last_request(fake_provider, marker)["json"]
        assert upstream["max_tokens"] == 64000 and upstream["system"] == [{"type": "text", "text": "Seja breve."}]
        direct = httpx.post(f"{fake_provider.root_url}/v1/messages", json=upstream, timeout=10).json()
        assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (direct["usage"]["input_tokens"], 3)

    def test_embeddings_report_the_fakes_usage(self, proxied, fake):
        """/v1/embeddings: prompt tokens as the fake billed them."""
        through = proxied.embeddings.create(model="fake-embedding", input=["Olá", "mundo"])
        direct = fake.embeddings.create(model="text-embedding-3-small", input=["Olá", "mundo"])
        assert through.usage.prompt_tokens == direct.usage.prompt_tokens and len(through.data) == 2

    def test_images_report_gpt_image_usage_and_zero_for_dall_e(self, proxied):
        """gpt-image usage comes through; for dall-e, which bills none, LiteLLM reports zeros."""
        image = proxied.images.generate(model="fake-image", prompt="Um gato", n=2, quality="low", size="1024x1024")
        assert image.usage.output_tokens == 2 * 272 and image.usage.input_tokens == cl100k("Um gato")
        dalle = proxied.images.generate(model="fake-dalle", prompt="Um gato")
        assert dalle.data and (dalle.usage.input_tokens, dalle.usage.output_tokens) == (0, 0)

    def test_speech_returns_the_fakes_audio(self, proxied):
        """/v1/audio/speech: the WAV bytes come through."""
        speech = proxied.audio.speech.create(model="fake-tts", voice="alloy", input="Olá", response_format="wav")
        assert speech.content[:4] == b"RIFF"

    def test_transcriptions_report_seconds_or_tokens(self, proxied, fake_provider):
        """whisper: seconds (LiteLLM asks upstream for verbose_json); *-transcribe: tokens."""
        marker = uuid.uuid4().hex
        whisper = proxied.audio.transcriptions.create(
            model="fake-whisper", file=("a.wav", silent_wav(2.5)), prompt=marker
        )
        assert (whisper.usage.type, whisper.usage.seconds) == ("duration", 3)
        assert last_request(fake_provider, marker)["form"]["response_format"] == "verbose_json"
        tokens = proxied.audio.transcriptions.create(model="fake-transcribe", file=("a.wav", silent_wav(2.5)))
        assert (tokens.usage.type, tokens.usage.input_tokens, tokens.usage.output_tokens) == ("tokens", 25, 20)

    def test_moderations_reach_the_fake(self, proxied, fake_provider):
        """/v1/moderations: the fake's results come back."""
        marker = uuid.uuid4().hex
        answer = proxied.moderations.create(model="fake-moderation", input=marker)
        assert answer.results[0].flagged is False
        assert last_request(fake_provider, marker)["path"] == "/v1/moderations"
