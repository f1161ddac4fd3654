"""OpenAI's `/v1/audio/speech` (no usage: billed per character) and `/v1/audio/transcriptions`."""

from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from tests.support.fake_provider._http import dropped, failure, preamble, receive, words
from tests.support.fake_provider._media import audio_duration_s, audio_tokens_per_s, silent_mp3, silent_wav
from tests.support.fake_provider._tokens import count_text, scaled

speech_characters_max = 4096  # OpenAI refuses longer input
# Speech lasts about as long as it takes to read the text: some 15 characters a second.
speech_characters_per_s = 15
speech_duration_max_s = 30  # keeps answers small
_speech_media_types = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}


async def speech(request: Request) -> Response:
    """Audio bytes and no usage: OpenAI bills text-to-speech per input character."""
    call = await receive(request)
    if refused := await preamble(call):
        return refused
    if call.die_after is not None:
        return dropped(request)
    text = call.body.get("input")
    if not isinstance(text, str) or not text:
        return failure(400, "input is required")
    if len(text) > speech_characters_max:
        return failure(400, f"input is longer than {speech_characters_max} characters")
    audio_format = str(call.body.get("response_format") or "mp3")
    if audio_format not in _speech_media_types:
        return failure(400, f"unsupported response_format {audio_format!r}")
    duration_s = min(speech_duration_max_s, max(0.1, len(text) / speech_characters_per_s))
    if audio_format == "wav":
        body = silent_wav(duration_s)
    elif audio_format == "pcm":
        body = silent_wav(duration_s)[44:]  # raw samples, without the header
    else:
        body = silent_mp3(duration_s)  # other containers answer MP3 frames: clients only pass bytes along
    return Response(body, media_type=_speech_media_types[audio_format])


async def transcriptions(request: Request) -> Response:
    """whisper-style models report the audio's seconds; `*-transcribe` models report tokens
    (audio at 1 token per 100 ms plus the prompt's text, and the transcript)."""
    call = await receive(request)
    if refused := await preamble(call):
        return refused
    if call.die_after is not None:
        return dropped(request)
    uploads = call.files.get("file") or []
    if not uploads:
        return failure(400, "file is required")
    duration_s = audio_duration_s(uploads[0][1])
    output_tokens = call.completion_tokens(None)
    text = words(output_tokens)
    if "transcribe" in call.model:
        audio_tokens = math.ceil(duration_s * audio_tokens_per_s)
        text_tokens = count_text(str(call.body.get("prompt") or ""), call.fast)
        input_tokens = scaled(audio_tokens + text_tokens, call.prompt_scale)
        usage = {
            "type": "tokens",
            "input_tokens": input_tokens,
            "input_token_details": {"text_tokens": input_tokens - audio_tokens, "audio_tokens": audio_tokens},
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        }
    else:
        usage = {"type": "duration", "seconds": math.ceil(duration_s)}
    response_format = str(call.body.get("response_format") or "json")
    if response_format == "text":
        return PlainTextResponse(text)
    if response_format in ("srt", "vtt"):
        header = "WEBVTT\n\n" if response_format == "vtt" else "1\n"
        separator = "." if response_format == "vtt" else ","
        stamp = f"00:00:00{separator}000 --> 00:00:{min(59, math.ceil(duration_s)):02d}{separator}000"
        return PlainTextResponse(f"{header}{stamp}\n{text}\n")
    answer: dict = {"text": text}
    if response_format == "verbose_json":
        answer.update(
            task="transcribe",
            language=str(call.body.get("language") or "english"),
            duration=duration_s,
            segments=[
                {
                    "id": 0,
                    "seek": 0,
                    "start": 0.0,
                    "end": duration_s,
                    "text": text,
                    "tokens": [],
                    "temperature": 0.0,
                    "avg_logprob": -0.1,
                    "compression_ratio": 1.0,
                    "no_speech_prob": 0.0,
                }
            ],
        )
    if not call.no_usage:
        answer["usage"] = usage
    return JSONResponse(answer)
