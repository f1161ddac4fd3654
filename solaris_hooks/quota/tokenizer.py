"""Counting text tokens: tiktoken's encodings that LiteLLM ships, never a download.

`litellm.token_counter` picks a tokenizer by model name, and for names with `llama-2`,
`llama-3`, `replicate` or Cohere's `command-r` it loads one from the Hugging Face hub. The
name is the client's `model`, counted in the pre-call hook before LiteLLM has checked that
such a model exists, and on a machine without internet that load fails after five retries,
about 23 s, every call, blocking the proxy's event loop (measured with LiteLLM 1.108.7). So
any client could stall the proxy by naming a model. We count with tiktoken alone, as LiteLLM
does for every other name (o200k for gpt-4o and newer OpenAI models, the model's own
encoding when tiktoken knows it, cl100k otherwise), from the encoding files LiteLLM bundles.
A provider whose tokenizer counts more raises the learned prompt margin (quota.learned_margins).

It is also cheaper: a short chunk costs about 2 µs here against 27 µs through
`litellm.token_counter`. Each of these encodings makes at most one token of a byte, so the
UTF-8 length is an upper bound of every count (quota.stream_meter relies on it).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tiktoken import Encoding

_default_encoding_name = "cl100k_base"
# tiktoken's merge loop grows faster than linearly with the length of one pre-token piece:
# a run of one character (dots, spaces) of 1.6 M takes 1.3 s here, of 10 MB 12 s, on the
# event loop (LiteLLM reports minutes for some patterns and versions).
# Text is encoded in pieces of this many characters, as LiteLLM does (the same default), so
# the cost stays linear; each cut can only add a token (merges across it are lost), so the
# sum stays an upper bound, at most one token per piece above the exact count.
piece_chars = 1024
# The encodings LiteLLM bundles (tests/unit/test_tokenizer.py loads each with no network).
# Any other (p50k for legacy completions models) would be fetched by tiktoken, with no
# timeout: cl100k counts those models instead.
_bundled_encoding_names = frozenset({"cl100k_base", "o200k_base"})


def encoding_name(model: str) -> str:
    """The tiktoken encoding LiteLLM would count this model's text with, without its downloads."""
    name = model.rsplit("/", 1)[-1].lower()
    if "gpt-4o" in name:
        return "o200k_base"
    import tiktoken

    try:
        known = tiktoken.encoding_name_for_model(name)
    except KeyError:
        return _default_encoding_name
    return known if known in _bundled_encoding_names else _default_encoding_name


@lru_cache(maxsize=len(_bundled_encoding_names))
def _encoding(name: str) -> Encoding:
    # This LiteLLM module points tiktoken at the encodings LiteLLM bundles (it sets
    # TIKTOKEN_CACHE_DIR, unless CUSTOM_TIKTOKEN_CACHE_DIR names another); without it
    # tiktoken would fetch them from the internet. `import litellm` alone does not load it.
    import litellm.litellm_core_utils.default_encoding  # noqa: F401
    import tiktoken

    return tiktoken.get_encoding(name)


@lru_cache(maxsize=1024)
def _encoding_for(model: str) -> Encoding:
    return _encoding(encoding_name(model))


def count_tokens(text: str, model: str | None) -> int:
    """Tokens of text for model; its UTF-8 length (an upper bound) when no encoding loads, so
    that never fails a call nor makes it free."""
    if not text:
        return 0
    try:
        encoding = _encoding_for(model or "")
    except Exception as error:
        from solaris_hooks.quota.degraded import note_degraded  # metrics: loaded only when needed

        note_degraded("token_counter", error)
        return len(text.encode("utf-8"))
    if len(text) <= piece_chars:
        return len(encoding.encode_ordinary(text))
    return sum(
        len(encoding.encode_ordinary(text[start : start + piece_chars])) for start in range(0, len(text), piece_chars)
    )
