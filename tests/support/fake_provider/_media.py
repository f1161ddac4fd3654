"""Images and audio: their size read from the bytes, what providers bill for them, tiny valid bodies.

Nothing here fetches a URL: a remote image is billed at the most its formula can give.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
import zlib

# OpenAI, "Images and vision > Calculating costs" (GPT-4o, GPT-4.1, o-series): low detail
# costs 85 tokens; high detail fits the image in 2048×2048, scales its shortest side down
# to 768, and costs 85 + 170 per 512-pixel tile.
openai_image_base_tokens = 85
openai_image_tile_tokens = 170
openai_image_tile_px = 512
openai_image_fit_px = 2048
openai_image_short_side_px = 768
# The most that formula gives (a 2048×768 image: 4×2 tiles), for images we cannot measure.
openai_image_tokens_max = openai_image_base_tokens + openai_image_tile_tokens * 8

# Anthropic, "Vision > Calculate image costs": tokens = width × height / 750, after the
# image is scaled to a long edge of at most 1568 px; the docs give about 1,600 as the most.
anthropic_image_long_edge_px = 1568
anthropic_image_pixels_per_token = 750
anthropic_image_tokens_max = 1600

# OpenAI's Realtime cost guide: user audio is 1 token per 100 ms.
audio_tokens_per_s = 10
# An audio format we cannot read is measured by its size at 8 kbit/s, the lowest MP3 bitrate:
# no MP3 that long is shorter, so the duration is an upper bound.
audio_fallback_bytes_per_s = 1000
# OpenAI refuses images over 20 MB; decoding beyond that is not worth the memory.
media_bytes_max = 20 * 1024 * 1024


def decode_data_url(url: str) -> bytes | None:
    """The bytes of a base64 `data:` URL, or None for a remote URL or a malformed one."""
    if not url.startswith("data:") or ";base64," not in url[:100]:
        return None
    return decode_base64(url.split(";base64,", 1)[1])


def decode_base64(data: str) -> bytes | None:
    if len(data) > media_bytes_max * 4 // 3 + 4:
        return None
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG, JPEG, GIF or WebP image, from its header; None if unknown."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    # Walk the segments up to a start-of-frame marker (C0–CF but C4, C8, CC), which holds the size.
    index = 2
    while index + 9 < len(data):
        if data[index] != 0xFF:
            return None
        marker = data[index + 1]
        if marker == 0xFF:
            index += 1
            continue
        length = struct.unpack(">H", data[index + 2 : index + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            return width, height
        index += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def openai_image_tokens(url: str, detail: str | None) -> int:
    """What OpenAI bills for an image input of a gpt-4o-style model."""
    if detail == "low":
        return openai_image_base_tokens
    return openai_image_bytes_tokens(decode_data_url(url))


def openai_image_bytes_tokens(data: bytes | None) -> int:
    """The high-detail tile formula for an image's bytes; the most it gives if they cannot be measured."""
    size = image_size(data) if data else None
    if size is None:
        return openai_image_tokens_max
    width, height = size
    if width <= 0 or height <= 0:
        return openai_image_tokens_max
    fit = min(1.0, openai_image_fit_px / max(width, height))
    width, height = width * fit, height * fit
    shrink = min(1.0, openai_image_short_side_px / min(width, height))
    width, height = width * shrink, height * shrink
    tiles = math.ceil(width / openai_image_tile_px) * math.ceil(height / openai_image_tile_px)
    return openai_image_base_tokens + openai_image_tile_tokens * tiles


def anthropic_image_tokens(source: dict) -> int:
    """What Anthropic bills for an image block: width × height / 750 after its resize."""
    data = decode_base64(str(source.get("data") or "")) if source.get("type") == "base64" else None
    size = image_size(data) if data else None
    if size is None or min(size) <= 0:
        return anthropic_image_tokens_max
    width, height = size
    shrink = min(1.0, anthropic_image_long_edge_px / max(width, height))
    tokens = math.ceil(width * shrink * height * shrink / anthropic_image_pixels_per_token)
    return min(tokens, anthropic_image_tokens_max)


def wav_duration_s(data: bytes) -> float | None:
    """Seconds of a RIFF/WAVE file, from its `fmt ` byte rate and `data` size; None if not WAV."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    index, byte_rate = 12, None
    while index + 8 <= len(data):
        chunk, size = data[index : index + 4], struct.unpack("<I", data[index + 4 : index + 8])[0]
        if chunk == b"fmt " and size >= 12:
            byte_rate = struct.unpack("<I", data[index + 16 : index + 20])[0]
        elif chunk == b"data" and byte_rate:
            # A streamed WAV may say 0xFFFFFFFF: take what is actually there.
            return min(size, len(data) - index - 8) / byte_rate
        index += 8 + size + (size & 1)
    return None


def audio_duration_s(data: bytes) -> float:
    """The WAV duration, or an upper bound from the size for any other format."""
    duration = wav_duration_s(data)
    return duration if duration is not None else len(data) / audio_fallback_bytes_per_s


def audio_tokens(data: bytes) -> int:
    return math.ceil(audio_duration_s(data) * audio_tokens_per_s)


def tiny_png() -> bytes:
    """A valid 1×1 white PNG."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\xff\xff")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def silent_wav(duration_s: float, sample_rate_hz: int = 8000) -> bytes:
    """A valid mono 8-bit PCM WAV of silence."""
    samples = b"\x80" * int(duration_s * sample_rate_hz)
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate_hz, sample_rate_hz, 1, 8)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(samples)) + samples
    return b"RIFF" + struct.pack("<I", len(body)) + body


def silent_mp3(duration_s: float) -> bytes:
    """Valid MPEG-1 Layer III frames of silence (128 kbit/s, 44.1 kHz: 417 bytes per 26 ms frame)."""
    frame = b"\xff\xfb\x90\x64" + b"\x00" * 413
    return frame * max(1, math.ceil(duration_s * 44100 / 1152))
