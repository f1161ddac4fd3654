"""What tests send to the fake provider or the hooks (messages, images, tools, hook requests),
and how they read what arrived."""

from __future__ import annotations

import base64
import json
import struct
import zlib

from tests.support.fake_provider import FakeProvider


def cl100k(text: str) -> int:
    """An independent count: LiteLLM's tokenizer for OpenAI's chat models."""
    import litellm

    return int(litellm.token_counter(model="gpt-3.5-turbo", text=text))


def png(width: int, height: int) -> bytes:
    """A valid black PNG of that size (zlib makes even 4096×8192 small)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = zlib.compress((b"\x00" + b"\x00" * 3 * width) * height, 1)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def jpeg_header(width: int, height: int) -> bytes:
    """The start of a baseline JPEG: SOI, a JFIF APP0 segment, then the frame header with its size."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + app0 + sof0


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def image_part(url: str, detail: str | None = None) -> dict:
    image = {"url": url} if detail is None else {"url": url, "detail": detail}
    return {"type": "image_url", "image_url": image}


def user(content: str | list) -> list[dict]:
    return [{"role": "user", "content": content}]


weather_tool = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city, now.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def last_request(provider: FakeProvider, marker: str) -> dict:
    """The last request the fake received whose body mentions marker."""
    found = [entry for entry in provider.requests if marker in json.dumps(entry.get("json") or entry.get("form"))]
    assert found, f"no request with {marker!r} reached the fake"
    return found[-1]


# A model of these tests' own: the usage they make up teaches its prompt margin, which
# must not reach the session proxy's fake-model through the shared database.
hooks_model = "hooks-model"


def request_data(user_id: str, call_id: str, text: str = "olá", **extra) -> dict:
    """A chat request as LiteLLM hands it to the pre-call hook, naming the user in a header."""
    return {
        "model": hooks_model,
        "messages": [{"role": "user", "content": text}],
        "litellm_call_id": call_id,
        "proxy_server_request": {"headers": {"X-LiteLLM-End-User-Id": user_id}},
        **extra,
    }
