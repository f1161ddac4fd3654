"""Prices of calls whose output is not tokens: images, speech, transcriptions.

Set per model group in `model_prices`, in platform tokens (what the ledger charges,
no conversion factor applied). A priced call is charged its price, whatever usage the
provider reports; a model without a price on a priced route is refused (RouteClosed)
with a message naming the setting.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from solaris_hooks.exceptions import CallUnbounded, RouteClosed
from solaris_hooks.quota.audio_length import audio_seconds, upload_bytes
from solaris_hooks.settings import ModelPrice


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
