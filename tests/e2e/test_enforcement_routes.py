"""Airtight enforcement, class 3: every route the proxy serves has a rule.

Priced routes (images, speech, transcriptions) cost their per-model price; moderations are
charged or free by setting and never leave a reservation to expire; every other LLM route
(files, batches, pass-through, assistants, realtime …) answers a readable 403 naming the
route and the setting that opens it, whether or not LiteLLM calls the pre-call hook for it.
"""

from __future__ import annotations

import io

import httpx
import openai
import pytest

from tests.support.fake_provider._media import silent_mp3, silent_wav
from tests.support.harness import AdminClient
from tests.support.suite import master_key, proxy_of_its_own, record_figure

allowance = 1000
model_prices = {
    "fake-image": {"per_image": {"1024x1024": 300, "1024x1536": 450, "*": 500}},
    "fake-dalle": {"per_image": {"*": 250}},
    "fake-tts": {"per_1k_characters": 20},
    "fake-whisper": {"per_audio_second": 2, "audio_bytes_per_second_min": 1000},
}


@pytest.fixture(scope="module")
def priced(database_url, fake_provider, tmp_path_factory):
    """A proxy of its own with prices, and moderations opened as free."""
    settings = {
        "default_tokens_per_user": allowance,
        "conversion_factor": 0.376,
        "sweep_interval_s": 0.5,
        "model_prices": model_prices,
        "routes": {"moderations": "free"},
        "locale": "en",
    }
    with proxy_of_its_own(
        database_url, fake_provider.base_url, tmp_path_factory.mktemp("priced"), settings, "priced-proxy.log"
    ) as process:
        yield process


@pytest.fixture
def priced_admin(priced) -> AdminClient:
    return AdminClient(priced.base_url, master_key)


@pytest.fixture
def priced_api(priced) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{priced.base_url}/v1", api_key=master_key, max_retries=0)


def who(user_id: str) -> dict:
    return {"extra_headers": {"x-litellm-end-user-id": user_id}}


def assert_refused(response: httpx.Response, status: int, code: str, *said: str) -> dict:
    """A readable refusal: status, our code, words, no internals."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    message = error["message"]
    assert len(message.split()) >= 8, message
    for fragment in said:
        assert fragment in message, message
    for leak in ("Traceback", "psycopg", "SQL", "solaris.", "Exception", "prisma"):
        assert leak not in message, message
    return error


class TestImages:
    def test_an_image_costs_its_price_not_its_usage(self, priced_api, priced_admin, user_id):
        """Before: gpt-image usage made one image cost 1,569 of 1,000. Now: its price, 300."""
        response = priced_api.images.generate(
            model="fake-image", prompt="um gato", size="1024x1024", quality="medium", **who(user_id)
        )
        assert len(response.data) == 1
        account = priced_admin.settled_account(user_id)
        assert account["used_tokens"] == 300
        record_figure(f"images n=1 1024x1024: {account['used_tokens']} of {allowance} used (before: 1,569 of 1,000)")

    def test_an_image_without_usage_is_not_free(self, priced_api, priced_admin, user_id):
        """Before: a provider reporting no usage (dall-e) made images free. Now: 250 each."""
        priced_api.images.generate(model="fake-dalle", prompt="um cão", n=1, **who(user_id))
        assert priced_admin.settled_account(user_id)["used_tokens"] == 250

    def test_more_images_than_fit_are_lowered_to_what_fits(self, priced_api, priced_admin, fake_provider, user_id):
        """n=4 at 300 with 1,000 left: three are made and charged, never four."""
        fake_provider.clear_requests()
        response = priced_api.images.generate(model="fake-image", prompt="gatos", n=4, size="1024x1024", **who(user_id))
        upstream = [entry for entry in fake_provider.requests if entry["path"].endswith("/images/generations")]
        assert upstream[-1]["json"]["n"] == 3
        assert len(response.data) == 3
        account = priced_admin.settled_account(user_id)
        assert account["used_tokens"] == 900 <= account["credited_tokens"]

    def test_an_image_that_does_not_fit_is_refused(self, priced_api, priced_admin, user_id):
        """An auto-sized image (priced at the most, 500) after 900 used: a readable 429."""
        priced_api.images.generate(model="fake-image", prompt="gatos", n=3, size="1024x1024", **who(user_id))
        with pytest.raises(openai.RateLimitError):
            priced_api.images.generate(model="fake-image", prompt="mais", **who(user_id))
        assert priced_admin.settled_account(user_id)["used_tokens"] == 900

    def test_a_model_without_a_price_is_refused(self, proxy, user_id):
        """The session proxy prices no image model: 403 naming model_prices for it."""
        response = httpx.post(
            f"{proxy.base_url}/v1/images/generations",
            timeout=30,
            headers={"Authorization": f"Bearer {master_key}", "x-litellm-end-user-id": user_id},
            json={"model": "fake-image", "prompt": "um gato"},
        )
        assert_refused(response, 403, "price_missing", "model_prices: {fake-image: {per_image: N}}")


class TestAudio:
    def test_speech_costs_per_character(self, priced_api, priced_admin, user_id):
        """Before: text-to-speech was free. Now: 2,500 characters at 20 per 1,000 cost 50."""
        speech = priced_api.audio.speech.create(model="fake-tts", voice="alloy", input="a" * 2500, **who(user_id))
        assert speech.content
        account = priced_admin.settled_account(user_id)
        assert account["used_tokens"] == 50
        record_figure(f"speech 2,500 characters: {account['used_tokens']} of {allowance} used (before: free)")

    def test_a_wav_transcription_costs_per_second(self, priced_api, priced_admin, user_id):
        """Ten seconds of WAV at 2 per second cost 20."""
        upload = io.BytesIO(silent_wav(10.0))
        upload.name = "fala.wav"
        priced_api.audio.transcriptions.create(model="fake-whisper", file=upload, **who(user_id))
        assert priced_admin.settled_account(user_id)["used_tokens"] == 20

    def test_other_audio_is_bounded_by_its_size(self, priced_api, priced_admin, user_id):
        """An MP3 has no trusted length: bounded (and charged) as its size at 1,000 B/s."""
        blob = silent_mp3(2.0)
        upload = io.BytesIO(blob)
        upload.name = "fala.mp3"
        priced_api.audio.transcriptions.create(model="fake-whisper", file=upload, **who(user_id))
        assert priced_admin.settled_account(user_id)["used_tokens"] == -(-len(blob) * 2 // 1000)

    def test_a_transcription_model_without_a_price_is_refused(self, priced, user_id):
        """fake-transcribe has no price on this proxy: 403 naming the setting."""
        response = httpx.post(
            f"{priced.base_url}/v1/audio/transcriptions",
            timeout=30,
            headers={"Authorization": f"Bearer {master_key}", "x-litellm-end-user-id": user_id},
            data={"model": "fake-transcribe"},
            files={"file": ("a.wav", silent_wav(1.0))},
        )
        assert_refused(response, 403, "price_missing", "per_audio_second")


class TestModerations:
    def test_a_free_moderation_holds_no_reservation(self, priced_api, priced_admin, user_id):
        """routes: {moderations: free}: served, nothing reserved, nothing charged."""
        priced_api.moderations.create(model="fake-moderation", input="texto qualquer", **who(user_id))
        account = priced_admin.account(user_id)
        assert account is None or (account["used_tokens"], account["reserved_tokens"]) == (0, 0)

    def test_a_charged_moderation_is_settled_at_once(self, client, admin, user_id):
        """Before: its reservation waited 15 minutes to expire. Now: charged its input, nothing held."""
        client.moderations.create(model="fake-moderation", input="texto qualquer " * 20, **who(user_id))
        account = admin.settled_account(user_id, timeout_s=10)
        assert 0 < account["used_tokens"] <= account["credited_tokens"]


# Every LLM route family without a default rule, as a client would call it: refused at the
# door, whether or not LiteLLM would call the pre-call hook for it.
closed_routes = [
    ("POST", "/v1/files", "files"),
    ("GET", "/v1/files", "files"),
    ("GET", "/v1/files/file-1/content", "files"),
    ("POST", "/v1/batches", "batches"),
    ("GET", "/v1/batches/batch_1", "batches"),
    ("POST", "/openai/v1/chat/completions", "passthrough"),
    ("POST", "/anthropic/v1/messages", "passthrough"),
    ("POST", "/openai_passthrough/v1/chat/completions", "passthrough"),
    ("POST", "/gemini/v1/models", "passthrough"),
    ("POST", "/queue/chat/completions", "passthrough"),
    ("POST", "/v1/assistants", "assistants"),
    ("POST", "/v1/threads/t1/runs", "assistants"),
    ("POST", "/v1/rerank", "rerank"),
    ("GET", "/v1/realtime", "realtime"),
    ("GET", "/v1/responses/resp_1", "stored_responses"),
    ("POST", "/v1/responses/compact", "responses_compact"),
    ("POST", "/v1/fine_tuning/jobs", "fine_tuning"),
    ("POST", "/v1/vector_stores", "vector_stores"),
    ("POST", "/v1/videos", "videos"),
    ("POST", "/v1/messages/count_tokens", "messages_other"),
    ("POST", "/v1beta/models/x:generateContent", "gemini"),
    ("POST", "/v1/search", "search"),
    ("POST", "/v1/ocr", "ocr"),
    ("POST", "/v1/containers", "containers"),
]


class TestClosedRoutes:
    @pytest.mark.parametrize(("method", "path", "route"), closed_routes)
    def test_a_route_without_a_rule_answers_a_readable_403(self, proxy, user_id, method, path, route):
        """Before: pass-through charged a shared account or answered 500 with Postgres text, files and
        batches answered 500. Now: 403 naming the route and the setting that opens it."""
        response = httpx.request(
            method,
            f"{proxy.base_url}{path}",
            timeout=30,
            headers={"Authorization": f"Bearer {master_key}", "x-litellm-end-user-id": user_id},
            json={"model": "fake-model", "input": "x", "messages": []} if method == "POST" else None,
        )
        error = assert_refused(response, 403, "route_closed", f"routes: {{{route}: free}}")
        assert error["type"] == "permission_denied"

    def test_a_closed_websocket_is_refused_before_it_opens(self, proxy):
        """Realtime over a WebSocket: the handshake is refused with the same 403."""
        from websockets.exceptions import InvalidStatus
        from websockets.sync.client import connect

        with pytest.raises(InvalidStatus) as refused:
            connect(
                f"ws://127.0.0.1:{proxy.port}/v1/realtime?model=fake-model",
                additional_headers={"Authorization": f"Bearer {master_key}"},
                open_timeout=30,
            )
        assert refused.value.response.status_code == 403

    def test_admin_routes_are_not_touched(self, admin):
        """The guard leaves the admin API alone."""
        assert admin.http.get("/solaris/users").status_code == 200
