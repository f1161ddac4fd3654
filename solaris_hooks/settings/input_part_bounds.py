"""The `input_part_bounds` setting: upper bounds of prompt parts that are not text.

solaris_hooks.quota.input_parts counts a prompt with them; we never fetch a URL or
decode a picture, so a part without a bound refuses the call.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class InputPartBounds(BaseModel):
    """Upper bounds, in raw tokens, of prompt parts that are not text, for one model group
    (or `"*"`, for every model without its own value). Unset: calls carrying such a part
    are refused, since no bound fits every provider (gpt-4o bills an image at most 1,445
    tokens, gpt-4o-mini up to 48,169)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # One image (image_url, input_image, Anthropic image), whatever its size or detail.
    image_tokens_max: int | None = Field(None, ge=1, le=1_000_000)
    # One second of input_audio; its length is read from a WAV header, else bounded by size.
    audio_tokens_per_second_max: float | None = Field(None, gt=0, le=100_000)
    # The lowest bit rate assumed for audio that is not WAV, to bound its length by its
    # size (1,000 B/s is 8 kbit/s, below any usable voice codec); unset: such audio is refused.
    audio_bytes_per_second_min: int | None = Field(None, ge=1, le=10_000_000)
    # One attached file or document (PDF…): its text and page images together.
    file_tokens_max: int | None = Field(None, ge=1, le=100_000_000)
    # Tokens the provider adds to the prompt when a call carries tools (Anthropic models
    # served through /chat/completions: 530). Calls to /v1/messages always add 530.
    tool_prompt_tokens: int = Field(0, ge=0, le=100_000)
