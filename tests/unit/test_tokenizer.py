"""Counting text tokens without LiteLLM's model-name tokenizer downloads (solaris_hooks.quota.tokenizer)."""

from __future__ import annotations

import socket

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from solaris_hooks.quota.tokenizer import count_tokens, encoding_name, piece_chars

# Names LiteLLM 1.108 sends to the Hugging Face hub for a tokenizer (a 23 s stall offline).
hub_names = ["llama-3-70b", "meta-llama/Llama-2-7b-chat-hf", "replicate/anything", "command-r", "my-llama-3.1"]


class NoConnections(socket.socket):
    def connect(self, *args, **kwargs):
        raise AssertionError("the tokenizer tried to open a connection")

    connect_ex = connect


@pytest.fixture
def no_network(monkeypatch):
    """Sockets that cannot connect, once LiteLLM and the default encoding are loaded (as in the proxy)."""
    count_tokens("ok", "gpt-4")
    monkeypatch.setattr(socket, "socket", NoConnections)


@pytest.mark.parametrize("model", hub_names)
def test_a_model_name_litellm_would_fetch_a_tokenizer_for_is_counted_offline(no_network, model):
    assert count_tokens("olá, tudo bem?", model) == count_tokens("olá, tudo bem?", "gpt-4")


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("openai/gpt-4o-mini", "o200k_base"),
        ("gpt-4.1", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("fake-model", "cl100k_base"),
        ("", "cl100k_base"),
        ("claude-sonnet-4-5", "cl100k_base"),
        ("text-davinci-003", "cl100k_base"),  # p50k is not bundled: never fetched
    ],
)
def test_the_encoding_is_the_one_litellm_counts_openai_names_with(model, encoding):
    assert encoding_name(model) == encoding


def test_counts_match_litellms_for_the_names_it_counts_with_tiktoken():
    import litellm

    text = "Olá! Explique <|endoftext|> em três frases, por favor. 你好 😀"
    for model in ("gpt-4o", "gpt-4", "fake-model", "gpt-3.5-turbo"):
        assert count_tokens(text, model) == litellm.token_counter(model=model, text=text)


@settings(max_examples=300, deadline=None)
@given(text=st.text(min_size=1, max_size=40), model=st.sampled_from(["gpt-4o", "gpt-4", "fake-model"]))
def test_no_encoding_makes_more_tokens_than_utf8_bytes(text, model):
    """What lets a stream pass on its byte length (quota.stream_meter)."""
    assert count_tokens(text, model) <= len(text.encode("utf-8"))


def test_every_bundled_encoding_loads_without_a_download(no_network):
    for name in ("cl100k_base", "o200k_base"):
        assert tiktoken.get_encoding(name).encode_ordinary("ok") == tiktoken.get_encoding(name).encode_ordinary("ok")


@pytest.mark.parametrize("text", ["." * 5000, "olá mundo " * 700, "=" * 1025])
def test_a_long_text_is_counted_piece_by_piece_never_below_its_exact_count(text):
    """Pieces of piece_chars keep tiktoken linear on runs of one character; each cut can only add a token."""
    encoding = tiktoken.get_encoding(encoding_name("gpt-4"))
    pieces = [text[start : start + piece_chars] for start in range(0, len(text), piece_chars)]
    assert count_tokens(text, "gpt-4") == sum(len(encoding.encode_ordinary(piece)) for piece in pieces)
    assert (
        len(encoding.encode_ordinary(text))
        <= count_tokens(text, "gpt-4")
        <= len(encoding.encode_ordinary(text)) + len(pieces)
    )
