"""The `model_prices` setting: what calls whose output is not tokens cost.

Images, speech and transcriptions are priced per model group, in platform tokens (what
the ledger charges, no conversion factor applied); solaris_hooks.quota.prices applies them.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

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
