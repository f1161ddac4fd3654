"""Prices of calls whose output is not tokens: images, speech, transcriptions.

Set per model group in `model_prices`, in platform tokens (what the ledger charges,
no conversion factor applied). A priced call is charged its price, whatever usage the
provider reports; a model without a price on a priced route is refused (RouteClosed)
with a message naming the setting.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from solaris_hooks.exceptions import CallUnbounded, RouteClosed
from solaris_hooks.quota.audio_length import audio_seconds, upload_bytes

PlatformTokens = Annotated[float, Field(ge=0, le=10**9)]
# "1024x1024", "1024x1024/hd", "auto/high" or "*".
ImageKey = Annotated[str, Field(pattern=r"^(\*|[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)?)$", max_length=50)]


class ModelPrice(BaseModel):
    """What one call of a model group costs on the priced routes, in platform tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Per image generated or edited, by "size" or "size/quality"; "*" for any other. A
    # request whose size or quality is `auto` or unset pays the highest entry it could fall under.
    per_image: dict[ImageKey, PlatformTokens] | None = Field(None, max_length=50)
    # Per 1,000 characters of text read aloud (/audio/speech), charged per character.
    per_1k_characters: PlatformTokens | None = None
    # Per second of audio transcribed; the length is read from a WAV header.
    per_audio_second: PlatformTokens | None = None
    # The lowest bit rate assumed for an upload that is not WAV (webm, mp3, m4a…), to bound
    # its length by its size: 1,000 B/s (8 kbit/s) is below any usable voice codec, so it
    # never undercharges, and overcharges files of higher bit rates. Unset: refused.
    audio_bytes_per_second_min: int | None = Field(None, ge=1, le=10_000_000)


def _closed(model: str, what: str) -> RouteClosed:
    return RouteClosed(
        "price_missing", model=model or "-", what=what, setting=f"model_prices: {{{model or '*'}: {{{what}: N}}}}"
    )


def _price(prices: Mapping[str, ModelPrice], model: str) -> ModelPrice | None:
    return prices.get(model) or prices.get("*")


def image_price(per_image: Mapping[str, float], size: object, quality: object) -> float | None:
    """The price of one image: the highest entry the request could fall under, "*" when none."""
    size_known = size if isinstance(size, str) and size not in ("", "auto") else None
    quality_known = quality if isinstance(quality, str) and quality not in ("", "auto") else None
    applicable = []
    for key, price in per_image.items():
        if key == "*":
            continue
        key_size, _, key_quality = key.partition("/")
        if (size_known is None or key_size == size_known) and (
            not key_quality or quality_known is None or key_quality == quality_known
        ):
            applicable.append(price)
    if applicable:
        return max(applicable)
    return per_image.get("*")


def images_price(data: dict, model: str, prices: Mapping[str, ModelPrice]) -> float:
    price = _price(prices, model)
    per_image = price.per_image if price is not None else None
    unit = image_price(per_image, data.get("size"), data.get("quality")) if per_image else None
    if unit is None:
        raise _closed(model, "per_image")
    return unit


def speech_tokens(data: dict, model: str, prices: Mapping[str, ModelPrice]) -> int:
    price = _price(prices, model)
    if price is None or price.per_1k_characters is None:
        raise _closed(model, "per_1k_characters")
    text = data.get("input")
    if not isinstance(text, str):
        raise CallUnbounded("value_invalid", field="input")
    return math.ceil(round(len(text) * price.per_1k_characters / 1000, 9))


def transcription_tokens(data: dict, model: str, prices: Mapping[str, ModelPrice]) -> int:
    price = _price(prices, model)
    if price is None or price.per_audio_second is None:
        raise _closed(model, "per_audio_second")
    blob = upload_bytes(data.get("file"))
    seconds = audio_seconds(blob, price.audio_bytes_per_second_min) if blob is not None else None
    if seconds is None:
        raise CallUnbounded(
            part="audio file (not WAV)",
            model=model,
            setting=f"model_prices: {{{model or '*'}: {{audio_bytes_per_second_min: N}}}}",
        )
    return math.ceil(round(seconds * price.per_audio_second, 9))
