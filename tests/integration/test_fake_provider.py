"""The fake provider bills every route as its provider documents.

The tests call the fake directly with the official `openai` client (httpx for Anthropic's
/v1/messages). Through LiteLLM's proxy: tests/e2e/test_fake_provider.py."""

from __future__ import annotations

import base64
import json
import math
import uuid

import httpx
import openai
import pytest

from tests.support.fake_provider import count_prompt_tokens
from tests.support.fake_provider._http import RequestLog
from tests.support.fake_provider._media import audio_duration_s, image_size, silent_mp3, silent_wav, tiny_png
from tests.support.payloads import cl100k, data_url, image_part, jpeg_header, last_request, png, user, weather_tool


class TestChatCompletions:
    def test_plain_messages_count_as_litellm_counts_them(self, fake):
        """Text messages are counted as LiteLLM's token_counter counts them for OpenAI's chat models."""
        import litellm

        messages = [
            {"role": "system", "content": "Answer in Portuguese."},
            {"role": "user", "content": "Olá, tudo bem? [[tokens=2]]", "name": "ana"},
        ]
        answer = fake.chat.completions.create(model="m", messages=messages)
        assert answer.usage.prompt_tokens == litellm.token_counter(model="gpt-3.5-turbo", messages=messages)
        assert answer.usage.prompt_tokens == count_prompt_tokens(messages)

    def test_without_a_directive_the_answer_fills_max_tokens_or_twenty(self, fake):
        """The worst case: max_tokens when set (finish_reason length), else 20 tokens."""
        capped = fake.chat.completions.create(model="m", messages=user("hi"), max_tokens=7)
        assert capped.usage.completion_tokens == 7 and capped.choices[0].finish_reason == "length"
        assert fake.chat.completions.create(model="m", messages=user("hi")).usage.completion_tokens == 20
        capped = fake.chat.completions.create(model="m", messages=user("hi [[tokens=50]]"), max_completion_tokens=4)
        assert capped.usage.completion_tokens == 4

    def test_every_choice_is_billed(self, fake):
        """n choices of N tokens each bill n × N completion tokens; the prompt is billed once."""
        single = fake.chat.completions.create(model="m", messages=user("hi [[tokens=5]]"))
        triple = fake.chat.completions.create(model="m", messages=user("hi [[tokens=5]]"), n=3)
        assert [choice.index for choice in triple.choices] == [0, 1, 2]
        assert all(choice.message.content == "ok ok ok ok ok" for choice in triple.choices)
        assert triple.usage.completion_tokens == 15
        assert triple.usage.prompt_tokens == single.usage.prompt_tokens

    def test_tool_and_function_definitions_are_billed_as_input(self, fake):
        """Each definition costs the tokens of its JSON plus 12; a named tool choice its JSON."""
        bare = fake.chat.completions.create(model="m", messages=user("hi [[tokens=1]]")).usage.prompt_tokens
        with_tool = fake.chat.completions.create(model="m", messages=user("hi [[tokens=1]]"), tools=[weather_tool])
        assert with_tool.usage.prompt_tokens == bare + cl100k(json.dumps(weather_tool)) + 12
        choice = {"type": "function", "function": {"name": "get_weather"}}
        chosen = fake.chat.completions.create(
            model="m", messages=user("hi [[tokens=1]]"), tools=[weather_tool], tool_choice=choice
        )
        assert chosen.usage.prompt_tokens == with_tool.usage.prompt_tokens + cl100k(json.dumps(choice))
        function = weather_tool["function"]
        legacy = fake.chat.completions.create(model="m", messages=user("hi [[tokens=1]]"), functions=[function])
        assert legacy.usage.prompt_tokens == bare + cl100k(json.dumps(function)) + 12

    def test_a_json_schema_response_format_is_billed_as_input(self, fake):
        """The schema of response_format json_schema costs its JSON plus 12."""
        schema = {"name": "city", "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}
        bare = fake.chat.completions.create(model="m", messages=user("hi [[tokens=1]]")).usage.prompt_tokens
        shaped = fake.chat.completions.create(
            model="m", messages=user("hi [[tokens=1]]"), response_format={"type": "json_schema", "json_schema": schema}
        )
        assert shaped.usage.prompt_tokens == bare + cl100k(json.dumps(schema)) + 12

    @pytest.mark.parametrize(
        ("width", "height", "detail", "tokens"),
        [
            (1024, 1024, "high", 765),  # OpenAI's documented examples
            (2048, 4096, "high", 1105),
            (4096, 8192, "low", 85),
            (512, 512, None, 255),  # no detail: billed as high
        ],
    )
    def test_images_are_billed_by_openais_tile_formula(self, fake, width, height, detail, tokens):
        """A data: PNG costs 85 + 170 per 512-px tile after the documented resize; low detail 85."""
        bare = fake.chat.completions.create(model="m", messages=user([{"type": "text", "text": "hi [[tokens=1]]"}]))
        seen = fake.chat.completions.create(
            model="m",
            messages=user(
                [{"type": "text", "text": "hi [[tokens=1]]"}, image_part(data_url(png(width, height)), detail)]
            ),
        )
        assert seen.usage.prompt_tokens - bare.usage.prompt_tokens == tokens

    def test_a_jpeg_is_measured_from_its_frame_header(self, fake):
        """A 1024×1024 JPEG costs what a PNG of that size costs."""
        bare = fake.chat.completions.create(model="m", messages=user([{"type": "text", "text": "hi [[tokens=1]]"}]))
        seen = fake.chat.completions.create(
            model="m",
            messages=user(
                [
                    {"type": "text", "text": "hi [[tokens=1]]"},
                    image_part(data_url(jpeg_header(1024, 1024), "image/jpeg")),
                ]
            ),
        )
        assert seen.usage.prompt_tokens - bare.usage.prompt_tokens == 765

    def test_a_remote_image_is_billed_at_the_formulas_maximum_without_fetching(self, fake, fake_provider):
        """A URL is never fetched: it costs 1,445 tokens (8 tiles), the most the formula gives."""
        bare = fake.chat.completions.create(model="m", messages=user([{"type": "text", "text": "hi [[tokens=1]]"}]))
        marker = uuid.uuid4().hex
        remote = f"{fake_provider.root_url}/_fake/image.png?marker={marker}"
        seen = fake.chat.completions.create(
            model="m", messages=user([{"type": "text", "text": "hi [[tokens=1]]"}, image_part(remote)])
        )
        assert seen.usage.prompt_tokens - bare.usage.prompt_tokens == 1445
        assert not [entry for entry in fake_provider.requests if entry["query"].get("marker") == marker]

    def test_audio_input_is_billed_by_its_duration(self, fake):
        """A WAV costs 10 tokens a second (from its header); another format is measured as 8 kbit/s."""
        bare = fake.chat.completions.create(model="m", messages=user([{"type": "text", "text": "hi [[tokens=1]]"}]))

        def extra(data: bytes, audio_format: str) -> int:
            part = {
                "type": "input_audio",
                "input_audio": {"data": base64.b64encode(data).decode(), "format": audio_format},
            }
            heard = fake.chat.completions.create(
                model="m", messages=user([{"type": "text", "text": "hi [[tokens=1]]"}, part])
            )
            return heard.usage.prompt_tokens - bare.usage.prompt_tokens

        assert extra(silent_wav(2.0), "wav") == 20
        assert extra(b"\xff\xfb" + b"\x00" * 3998, "mp3") == 40

    def test_a_stream_with_n_choices_reports_their_sum_last(self, fake):
        """Streamed with include_usage: every choice's chunks, then one usage chunk with no choices."""
        texts: dict[int, str] = {}
        chunks = list(
            fake.chat.completions.create(
                model="m", messages=user("hi [[tokens=3]]"), n=2, stream=True, stream_options={"include_usage": True}
            )
        )
        for chunk in chunks[:-1]:
            assert chunk.usage is None
            for choice in chunk.choices:
                texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
        assert texts == {0: "ok ok ok", 1: "ok ok ok"}
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6

    def test_a_stream_without_include_usage_has_no_usage(self, fake):
        """Without stream_options.include_usage no chunk carries usage, as at OpenAI."""
        chunks = list(fake.chat.completions.create(model="m", messages=user("hi [[tokens=2]]"), stream=True))
        assert chunks and all(chunk.usage is None for chunk in chunks)

    def test_prompt_scale_reports_more_prompt_tokens(self, fake):
        """[[prompt_scale=X]] reports the prompt count × X, rounded up: a tokenizer that counts more."""
        messages = user("hi [[tokens=1]] [[prompt_scale=1.37]]")
        answer = fake.chat.completions.create(model="m", messages=messages)
        assert answer.usage.prompt_tokens == math.ceil(count_prompt_tokens(messages) * 1.37)

    def test_no_usage_omits_the_usage_block(self, fake):
        """[[no_usage]]: no usage, not streamed and streamed with include_usage."""
        assert fake.chat.completions.create(model="m", messages=user("hi [[no_usage]]")).usage is None
        chunks = list(
            fake.chat.completions.create(
                model="m", messages=user("hi [[no_usage]]"), stream=True, stream_options={"include_usage": True}
            )
        )
        assert chunks and all(chunk.usage is None for chunk in chunks)

    def test_die_after_breaks_a_stream_after_k_content_chunks(self, fake_provider):
        """[[die_after=K]] streamed: the role chunk, K content chunks, then a broken connection, no [DONE]."""
        lines: list[str] = []
        with (
            pytest.raises(httpx.RemoteProtocolError),
            httpx.stream(
                "POST",
                f"{fake_provider.base_url}/chat/completions",
                timeout=10,
                json={"model": "m", "stream": True, "messages": user("hi [[tokens=9]] [[die_after=3]]")},
            ) as response,
        ):
            lines.extend(line for line in response.iter_lines() if line.startswith("data: "))
        assert len(lines) == 4 and "[DONE]" not in "".join(lines)
        assert [json.loads(line[6:])["choices"][0]["delta"].get("content") for line in lines] == [
            "",
            "ok",
            " ok",
            " ok",
        ]

    def test_die_after_closes_an_unstreamed_call_without_an_answer(self, fake_provider):
        """[[die_after=K]] not streamed: the connection closes with no status line at all."""
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            httpx.post(
                f"{fake_provider.base_url}/chat/completions",
                timeout=10,
                json={"model": "m", "messages": user("hi [[die_after=0]]")},
            )

    def test_fail_answers_that_status_in_openais_shape(self, fake):
        """[[fail=CODE]] answers CODE with an OpenAI error body."""
        with pytest.raises(openai.RateLimitError) as raised:
            fake.chat.completions.create(model="m", messages=user("hi [[fail=429]]"))
        assert raised.value.body["type"] == "invalid_request_error"

    def test_n_beyond_openais_limit_is_refused(self, fake):
        """n above 128 is a 400, as at OpenAI."""
        with pytest.raises(openai.BadRequestError):
            fake.chat.completions.create(model="m", messages=user("hi"), n=129)


class TestLegacyCompletions:
    def test_every_prompt_and_every_best_of_completion_is_billed(self, fake):
        """Two prompts, n=2, best_of=3, 4 tokens: 4 choices returned, 2 × 3 × 4 completion tokens billed."""
        answer = fake.completions.create(model="m", prompt=["Olá", "mundo"], n=2, best_of=3, max_tokens=4)
        assert [choice.index for choice in answer.choices] == [0, 1, 2, 3]
        assert answer.usage.completion_tokens == 24
        assert answer.usage.prompt_tokens == cl100k("Olá") + cl100k("mundo")

    def test_token_arrays_count_by_their_length(self, fake):
        """A token array costs its length; a list of them their lengths' sum."""
        assert fake.completions.create(model="m", prompt=[1, 2, 3], max_tokens=1).usage.prompt_tokens == 3
        assert fake.completions.create(model="m", prompt=[[1, 2], [3, 4, 5]], max_tokens=1).usage.prompt_tokens == 5

    def test_max_tokens_defaults_to_sixteen(self, fake):
        """The legacy API's documented default of max_tokens is 16."""
        assert fake.completions.create(model="m", prompt="hi").usage.completion_tokens == 16

    def test_best_of_below_n_is_refused(self, fake):
        """best_of must be at least n: a 400 otherwise."""
        with pytest.raises(openai.BadRequestError):
            fake.completions.create(model="m", prompt="hi", n=3, best_of=2)

    def test_a_stream_reports_usage_last_when_asked(self, fake):
        """Streamed with include_usage: text chunks, then usage; 2 prompts × 3 tokens."""
        chunks = list(
            fake.completions.create(
                model="m", prompt=["a [[tokens=3]]", "b"], stream=True, stream_options={"include_usage": True}
            )
        )
        text = "".join(choice.text for chunk in chunks for choice in chunk.choices if choice.index == 1)
        assert text == "ok ok ok"
        assert chunks[-1].usage.completion_tokens == 6


class TestResponses:
    def test_instructions_and_every_input_item_are_billed(self, fake):
        """instructions, a message with text and an image, and a function call output all add input tokens."""
        plain = fake.responses.create(model="m", input="Olá [[tokens=1]]")
        instructed = fake.responses.create(model="m", input="Olá [[tokens=1]]", instructions="Seja breve.")
        assert instructed.usage.input_tokens == plain.usage.input_tokens + 3 + cl100k("developer") + cl100k(
            "Seja breve."
        )
        items = [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Olá [[tokens=1]]"},
                    {"type": "input_image", "image_url": data_url(png(1024, 1024)), "detail": "high"},
                ],
            },
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city": "Recife"}'},
            {"type": "function_call_output", "call_id": "c1", "output": "31 °C, ensolarado"},
        ]
        rich = fake.responses.create(model="m", input=items)
        assert rich.usage.input_tokens == (
            plain.usage.input_tokens
            + 765
            + 3
            + cl100k("get_weather")
            + cl100k('{"city": "Recife"}')
            + 3
            + cl100k("31 °C, ensolarado")
        )

    def test_tools_are_billed_as_input(self, fake):
        """A function tool costs its JSON plus 12."""
        tool = {"type": "function", "name": "get_weather", "parameters": weather_tool["function"]["parameters"]}
        plain = fake.responses.create(model="m", input="Olá [[tokens=1]]")
        tooled = fake.responses.create(model="m", input="Olá [[tokens=1]]", tools=[tool])
        assert tooled.usage.input_tokens == plain.usage.input_tokens + cl100k(json.dumps(tool)) + 12

    def test_max_output_tokens_caps_the_output_and_marks_it_incomplete(self, fake):
        """Output fills max_output_tokens, then the response is incomplete for that reason, as at OpenAI."""
        capped = fake.responses.create(model="m", input="Olá", max_output_tokens=17)
        assert capped.usage.output_tokens == 17 and capped.status == "incomplete"
        assert capped.incomplete_details.reason == "max_output_tokens"
        whole = fake.responses.create(model="m", input="Olá [[tokens=3]]", max_output_tokens=17)
        assert whole.status == "completed" and whole.output_text == "ok ok ok"
        assert whole.usage.total_tokens == whole.usage.input_tokens + 3

    def test_a_stream_sends_the_real_event_sequence_with_usage_at_the_end(self, fake):
        """created, in_progress, item and part events, the deltas, then completed with usage."""
        events = list(fake.responses.create(model="m", input="Olá [[tokens=2]]", stream=True))
        assert [event.type for event in events] == [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
        assert [event.sequence_number for event in events] == list(range(len(events)))
        assert events[-1].response.usage.output_tokens == 2
        assert (
            events[-1].response.usage.input_tokens
            == fake.responses.create(model="m", input="Olá [[tokens=2]]").usage.input_tokens
        )

    def test_a_capped_stream_ends_incomplete_with_usage(self, fake):
        """Streamed and cut by max_output_tokens: the last event is response.incomplete, with usage."""
        events = list(fake.responses.create(model="m", input="Olá", max_output_tokens=16, stream=True))
        assert events[-1].type == "response.incomplete" and events[-1].response.usage.output_tokens == 16

    def test_no_usage_and_prompt_scale_apply(self, fake):
        """[[no_usage]] leaves usage null; [[prompt_scale=2]] doubles input tokens."""
        assert fake.responses.create(model="m", input="Olá [[no_usage]]").usage is None
        plain = fake.responses.create(model="m", input="Olá [[tokens=1]] [[prompt_scale=1]]")
        doubled = fake.responses.create(model="m", input="Olá [[tokens=1]] [[prompt_scale=2]]")
        assert doubled.usage.input_tokens == 2 * plain.usage.input_tokens


class TestAnthropicMessages:
    @pytest.fixture
    def post(self, fake_provider):
        def post(body: dict) -> httpx.Response:
            return httpx.post(
                f"{fake_provider.root_url}/v1/messages",
                json=body,
                timeout=10,
                headers={"x-api-key": "fake-key", "anthropic-version": "2023-06-01"},
            )

        return post

    def test_system_messages_and_tools_are_billed_as_input(self, post):
        """The top-level system (string or blocks), and tools with Anthropic's 346-token tool prompt."""
        base = {"model": "claude", "max_tokens": 5, "messages": user("Olá [[tokens=1]]")}
        plain = post(base).json()["usage"]["input_tokens"]
        system = post({**base, "system": "Seja breve."}).json()["usage"]["input_tokens"]
        blocks = post({**base, "system": [{"type": "text", "text": "Seja breve."}]}).json()["usage"]["input_tokens"]
        assert system == blocks == plain + cl100k("Seja breve.")
        tool = {"name": "get_weather", "description": "The weather.", "input_schema": {"type": "object"}}
        tooled = post({**base, "tools": [tool]}).json()["usage"]["input_tokens"]
        assert tooled == plain + cl100k(json.dumps(tool)) + 12 + 346
        forced = post({**base, "tools": [tool], "tool_choice": {"type": "any"}}).json()["usage"]["input_tokens"]
        assert forced == tooled - 346 + 313

    def test_an_image_block_costs_its_pixels_over_750(self, post):
        """A 1000×750 PNG costs 1000 tokens; a remote image the documented ~1,600."""
        text = {"type": "text", "text": "Olá [[tokens=1]]"}
        base = {"model": "claude", "max_tokens": 5}
        plain = post({**base, "messages": user([text])}).json()["usage"]["input_tokens"]
        inline = {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": base64.b64encode(png(1000, 750)).decode()},
        }
        remote = {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
        assert post({**base, "messages": user([text, inline])}).json()["usage"]["input_tokens"] == plain + 1000
        assert post({**base, "messages": user([text, remote])}).json()["usage"]["input_tokens"] == plain + 1600

    def test_the_answer_fills_max_tokens_which_is_required(self, post):
        """Without a directive the output is max_tokens (stop_reason max_tokens); no max_tokens is a 400."""
        answer = post({"model": "claude", "max_tokens": 6, "messages": user("Olá")}).json()
        assert answer["usage"]["output_tokens"] == 6 and answer["stop_reason"] == "max_tokens"
        assert answer["content"] == [{"type": "text", "text": "ok ok ok ok ok ok"}]
        refused = post({"model": "claude", "messages": user("Olá")})
        assert refused.status_code == 400 and refused.json()["type"] == "error"

    def test_a_stream_sends_anthropics_events_with_usage(self, fake_provider, post):
        """message_start with input tokens, the text deltas, message_delta with output tokens, message_stop."""
        body = {"model": "claude", "max_tokens": 9, "messages": user("Olá [[tokens=2]]")}
        expected_input = post(body).json()["usage"]["input_tokens"]
        events = []
        with httpx.stream(
            "POST", f"{fake_provider.root_url}/v1/messages", json={**body, "stream": True}, timeout=10
        ) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
        assert [event["type"] for event in events] == [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
        assert events[0]["message"]["usage"]["input_tokens"] == expected_input
        assert events[-2]["usage"] == {"output_tokens": 2} and events[-2]["delta"]["stop_reason"] == "end_turn"

    def test_count_tokens_gives_what_a_call_bills(self, fake_provider, post):
        """/v1/messages/count_tokens answers the input tokens the same body is billed."""
        body = {"model": "claude", "max_tokens": 3, "system": "Seja breve.", "messages": user("Olá [[tokens=1]]")}
        counted = httpx.post(f"{fake_provider.root_url}/v1/messages/count_tokens", json=body, timeout=10).json()
        assert counted == {"input_tokens": post(body).json()["usage"]["input_tokens"]}

    def test_no_usage_omits_usage_and_fail_answers_in_anthropics_shape(self, post):
        """[[no_usage]] drops the usage block; [[fail=529]] answers an Anthropic error body."""
        assert "usage" not in post({"model": "claude", "max_tokens": 3, "messages": user("Olá [[no_usage]]")}).json()
        failed = post({"model": "claude", "max_tokens": 3, "messages": user("Olá [[fail=529]]")})
        assert failed.status_code == 529 and failed.json()["error"]["type"] == "api_error"


class TestEmbeddings:
    def test_every_input_is_billed_by_its_tokens(self, fake):
        """A string, a list of strings, and token arrays: prompt_tokens = total_tokens = their sum."""
        one = fake.embeddings.create(model="e", input="Olá mundo")
        assert one.usage.prompt_tokens == one.usage.total_tokens == cl100k("Olá mundo")
        many = fake.embeddings.create(model="e", input=["Olá", "mundo", "bom dia"])
        assert len(many.data) == 3
        assert many.usage.prompt_tokens == cl100k("Olá") + cl100k("mundo") + cl100k("bom dia")
        assert fake.embeddings.create(model="e", input=[[1, 2, 3], [4]]).usage.prompt_tokens == 4

    def test_vectors_decode_in_both_encodings(self, fake):
        """The client's default base64 and explicit floats carry the same vector of the asked size."""
        packed = fake.embeddings.create(model="e", input="Olá", dimensions=8)
        floats = fake.embeddings.create(model="e", input="Olá", dimensions=8, encoding_format="float")
        assert len(packed.data[0].embedding) == 8
        assert packed.data[0].embedding == pytest.approx(floats.data[0].embedding)


class TestImages:
    @pytest.mark.parametrize(
        ("quality", "size", "per_image"),
        [
            ("low", "1024x1024", 272),
            ("medium", "1536x1024", 1568),
            ("high", "1024x1536", 6240),
            (None, None, 6240),  # auto: the most it could choose
        ],
    )
    def test_gpt_image_bills_output_tokens_per_image_by_quality_and_size(self, fake, quality, size, per_image):
        """gpt-image usage: the prompt's tokens in, OpenAI's per-image table × n out."""
        options = {key: value for key, value in (("quality", quality), ("size", size)) if value}
        answer = fake.images.generate(model="gpt-image-1", prompt="Um gato laranja", n=2, **options)
        assert len(answer.data) == 2 and image_size(base64.b64decode(answer.data[0].b64_json)) == (1, 1)
        assert answer.usage.output_tokens == 2 * per_image
        assert answer.usage.input_tokens == answer.usage.input_tokens_details.text_tokens == cl100k("Um gato laranja")

    def test_dall_e_reports_no_usage(self, fake, fake_provider):
        """A dall-e style model answers images (a URL the fake serves, or base64) and no usage."""
        answer = fake.images.generate(model="dall-e-3", prompt="Um gato")
        assert answer.usage is None
        assert httpx.get(answer.data[0].url, timeout=10).content == tiny_png()
        assert fake.images.generate(model="dall-e-3", prompt="Um gato", response_format="b64_json").data[0].b64_json

    def test_an_edit_bills_its_input_images(self, fake):
        """images/edits: each uploaded image costs its tiles, on top of the prompt."""
        answer = fake.images.edit(
            model="gpt-image-1", prompt="Mais azul", image=("in.png", png(1024, 1024)), quality="low", size="1024x1024"
        )
        assert answer.usage.input_tokens_details.image_tokens == 765
        assert answer.usage.input_tokens == 765 + cl100k("Mais azul")
        assert answer.usage.output_tokens == 272


class TestAudio:
    def test_speech_answers_audio_bytes(self, fake):
        """wav answers a RIFF/WAVE body, mp3 MPEG frames; speech carries no usage."""
        wav = fake.audio.speech.create(model="tts-1", voice="alloy", input="Olá, mundo", response_format="wav")
        assert wav.content[:4] == b"RIFF" and wav.content[8:12] == b"WAVE"
        mp3 = fake.audio.speech.create(model="tts-1", voice="alloy", input="Olá, mundo")
        assert mp3.content[:2] == b"\xff\xfb"

    def test_whisper_reports_the_audios_seconds(self, fake):
        """A whisper-style model reports usage {type: duration, seconds} from the WAV, rounded up."""
        answer = fake.audio.transcriptions.create(model="whisper-1", file=("a.wav", silent_wav(2.5)))
        assert answer.usage.type == "duration" and answer.usage.seconds == 3

    def test_a_transcribe_model_reports_tokens(self, fake):
        """A *-transcribe model: audio at 10 tokens a second plus the prompt in, the transcript out."""
        answer = fake.audio.transcriptions.create(
            model="gpt-4o-transcribe", file=("a.wav", silent_wav(2.5)), prompt="Recife [[tokens=4]]"
        )
        assert answer.text == "ok ok ok ok"
        assert answer.usage.type == "tokens" and answer.usage.output_tokens == 4
        assert answer.usage.input_token_details.audio_tokens == 25
        assert answer.usage.input_tokens == 25 + cl100k("Recife [[tokens=4]]")

    def test_durations_read_from_wav_headers_or_bounded_by_size(self):
        """A WAV's duration comes from its header; any other bytes count as 8 kbit/s."""
        assert audio_duration_s(silent_wav(1.5)) == pytest.approx(1.5)
        assert audio_duration_s(silent_mp3(1.0)) == len(silent_mp3(1.0)) / 1000


class TestModerations:
    def test_results_come_back_without_usage(self, fake):
        """One unflagged result per input, and no usage: moderations are free."""
        answer = fake.moderations.create(model="omni-moderation-latest", input=["Olá", "mundo"])
        assert [result.flagged for result in answer.results] == [False, False]
        assert "usage" not in answer.model_dump()


class TestRequestLog:
    def test_requests_are_recorded_with_their_bodies_and_files_without_bytes(self, fake, fake_provider):
        """JSON bodies in full; form fields, and files by name and size; keys redacted; served over HTTP too."""
        marker = uuid.uuid4().hex
        fake.chat.completions.create(model="m", messages=user(f"{marker} [[tokens=1]]"), max_tokens=3)
        entry = last_request(fake_provider, marker)
        assert entry["method"] == "POST" and entry["path"] == "/v1/chat/completions"
        assert entry["json"]["max_tokens"] == 3 and entry["headers"]["authorization"] == "<redacted>"
        fake.audio.transcriptions.create(model="whisper-1", file=("a.wav", silent_wav(0.5)), prompt=marker)
        form = last_request(fake_provider, marker)
        assert form["form"]["prompt"] == marker and form["files"] == [
            {"field": "file", "filename": "a.wav", "size_bytes": len(silent_wav(0.5))}
        ]
        over_http = httpx.get(f"{fake_provider.root_url}/_fake/requests", timeout=10).json()["requests"]
        assert any(marker in json.dumps(item.get("json")) for item in over_http)

    def test_failed_and_unknown_calls_are_recorded_too(self, fake_provider):
        """A call answered with [[fail]] and a call to a route the fake lacks are both in the log."""
        marker = uuid.uuid4().hex
        httpx.post(
            f"{fake_provider.base_url}/chat/completions",
            timeout=10,
            json={"model": "m", "messages": user(f"{marker} [[fail=503]]")},
        )
        missing = httpx.post(f"{fake_provider.base_url}/batches", json={"marker": marker}, timeout=10)
        assert missing.status_code == 404
        assert [entry["path"] for entry in fake_provider.requests if marker in json.dumps(entry.get("json"))] == [
            "/v1/chat/completions",
            "/v1/batches",
        ]

    def test_the_log_keeps_only_the_last_entries(self):
        """Bounded: beyond its size, the oldest entries go."""
        log = RequestLog(size_max=3)
        for index in range(5):
            log.add({"index": index})
        assert [entry["index"] for entry in log.snapshot()] == [2, 3, 4]
