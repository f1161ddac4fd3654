"""How long a piece of audio may last, read from its bytes: never guessed low.

Only WAV carries its length in a header we can trust without decoding (its PCM sample
format gives the bytes per second). For any other format the caller may bound the length
by the file's size at a minimum bit rate, or refuse the call.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import struct

# WAV format tags whose bytes per second follow from the header: PCM, IEEE float, and
# WAVE_FORMAT_EXTENSIBLE (whose sub-format is checked too).
_pcm_tags = frozenset({1, 3})
_extensible_tag = 0xFFFE
# Read at most this much of an upload to find the WAV header chunks.
header_bytes_max = 1 << 16


def wav_seconds(blob: bytes) -> float | None:
    """Seconds of a PCM WAV file, counting every byte after the data chunk starts (so a
    header that understates its data size cannot shorten it); None when not such a file."""
    if len(blob) < 12 or blob[:4] not in (b"RIFF", b"RF64") or blob[8:12] != b"WAVE":
        return None
    position, bytes_per_second = 12, 0
    while position + 8 <= min(len(blob), header_bytes_max):
        chunk_id = blob[position : position + 4]
        size = int.from_bytes(blob[position + 4 : position + 8], "little")
        body = position + 8
        if chunk_id == b"fmt ":
            if size < 16 or body + 16 > len(blob):
                return None
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", blob[body : body + 16])
            if tag == _extensible_tag and size >= 26 and body + 26 <= len(blob):
                tag = int.from_bytes(blob[body + 24 : body + 26], "little")
            if tag not in _pcm_tags or not channels or not rate or not bits:
                return None
            bytes_per_second = channels * rate * math.ceil(bits / 8)
        elif chunk_id == b"data":
            return (len(blob) - body) / bytes_per_second if bytes_per_second else None
        position = body + size + (size & 1)
    return None


def audio_seconds(blob: bytes, bytes_per_second_min: float | None) -> float | None:
    """The length of the audio: read from a WAV header, else bounded by its size at the
    lowest bit rate allowed (None when that is not set: the length cannot be bounded)."""
    seconds = wav_seconds(blob)
    if seconds is not None:
        return seconds
    if bytes_per_second_min:
        return len(blob) / bytes_per_second_min
    return None


def upload_bytes(upload: object) -> bytes | None:
    """The bytes of an uploaded file as LiteLLM hands it to the pre-call hook (a BytesIO,
    raw bytes, or a (name, content) tuple); None when it is none of those."""
    if isinstance(upload, tuple) and len(upload) >= 2:
        upload = upload[1]
    if isinstance(upload, (bytes, bytearray)):
        return bytes(upload)
    if isinstance(upload, io.BytesIO):
        return upload.getvalue()
    read, seek, tell = (getattr(upload, name, None) for name in ("read", "seek", "tell"))
    if callable(read) and callable(seek) and callable(tell):
        position = tell()
        try:
            seek(0)
            content = read()
        finally:
            seek(position)
        return bytes(content) if isinstance(content, (bytes, bytearray)) else None
    return None


def base64_bytes(data: object) -> bytes | None:
    """Decoded base64 (a data: URL too); None when it is not valid base64."""
    if not isinstance(data, str):
        return None
    if data.startswith("data:") and "," in data:
        data = data.split(",", 1)[1]
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
