"""The arithmetic of metered streams (solaris_hooks.quota.stream_meter)."""

from __future__ import annotations

from solaris_hooks.quota.plan import platform_tokens
from solaris_hooks.quota.stream_meter import Growth, StreamMeter

factor = 0.376


def meter(reserved_tokens: int | None = None, chunk: int = 256, chunk_max: int = 1024) -> StreamMeter:
    held = platform_tokens(100 + chunk, factor) if reserved_tokens is None else reserved_tokens
    return StreamMeter(
        prompt_bound_tokens=100, factor=factor, reserved_tokens=held, chunk_tokens=chunk, chunk_tokens_max=chunk_max
    )


def test_a_chunk_within_what_is_held_needs_no_growth():
    stream = meter()
    assert stream.growth_before(256) is None
    stream.delivered(256)
    assert stream.completion_tokens == 256


def test_a_chunk_past_what_is_held_grows_by_at_least_itself_and_at_most_the_next_chunk_too():
    stream = meter()
    stream.delivered(250)
    growth = stream.growth_before(10)
    assert growth == Growth(
        wanted_tokens=platform_tokens(100 + 260 + 512, factor) - stream.reserved_tokens,
        minimum_tokens=platform_tokens(100 + 260, factor) - stream.reserved_tokens,
    )
    assert growth.minimum_tokens >= 1


def test_chunks_double_up_to_the_maximum():
    stream = meter(chunk=256, chunk_max=600)
    sizes = []
    for _ in range(4):
        growth = stream.growth_before(stream.chunk_tokens * 4)  # always past what is held
        assert growth is not None
        stream.grown(growth.wanted_tokens)
        stream.delivered(stream.chunk_tokens * 4)
        sizes.append(stream.chunk_tokens)
    assert sizes == [512, 600, 600, 600]


def test_delivered_never_passes_what_is_held_when_growths_are_granted():
    stream = meter()
    for _ in range(200):
        growth = stream.growth_before(7)
        if growth is not None:
            stream.grown(growth.minimum_tokens)  # the least the database may grant
        stream.delivered(7)
        assert stream.tokens_for(stream.completion_tokens) <= stream.reserved_tokens


def test_only_streamed_chat_calls_of_one_choice_are_metered():
    from solaris_hooks.quota.plan import Plan
    from solaris_hooks.quota.reserve import _stream_chunk_tokens
    from solaris_hooks.settings import Settings

    settings = Settings()
    plan = Plan(prompt_tokens=20, completion_tokens_max=4096, factor=factor)
    assert _stream_chunk_tokens({"stream": True}, "acompletion", plan, settings) == settings.stream_chunk_tokens
    assert _stream_chunk_tokens({}, "acompletion", plan, settings) == 0
    assert _stream_chunk_tokens({"stream": True}, "aresponses", plan, settings) == 0
    assert _stream_chunk_tokens({"stream": True}, "acompletion", Plan(20, 4096, factor, choices=2), settings) == 0
    assert _stream_chunk_tokens({"stream": True}, "acompletion", Plan(20, 100, factor), settings) == 0
    assert _stream_chunk_tokens({"stream": True}, "acompletion", plan, Settings(stream_chunk_tokens=0)) == 0


def quarter_tokenizer(calls: list[str]):
    """A byte-level tokenizer stand-in: one token per four bytes, at least one; records its calls."""

    def count(text: str) -> int:
        calls.append(text)
        return max(1, -(-len(text.encode()) // 4)) if text else 0

    return count


def test_a_chunk_whose_bytes_fit_in_what_is_held_is_not_counted_by_the_tokenizer():
    calls: list[str] = []
    stream = meter()  # holds the prompt and 256 tokens of completion
    for text in ("Olá, ", "tudo ", "bem?"):
        assert stream.admit(text, quarter_tokenizer(calls)) is None
    assert calls == [] and stream.completion_tokens == len("Olá, tudo bem?".encode())


def test_near_what_is_held_the_text_kept_aside_is_counted_in_one_call_then_the_chunk():
    calls: list[str] = []
    stream = meter()
    kept = ["x" * 100, "y" * 100]
    for text in kept:
        assert stream.admit(text, quarter_tokenizer(calls)) is None
    assert stream.admit("z" * 100, quarter_tokenizer(calls)) == 25  # 300 bytes > 256 held
    assert calls == ["x" * 100 + "y" * 100, "z" * 100]
    assert stream.completion_tokens == 50 and stream.uncounted == []
    assert stream.growth_before(25) is None  # 75 tokens fit: no round trip either
    stream.delivered(25)
    assert stream.completion_tokens == 75


def test_a_long_stream_on_byte_bounds_stays_covered_and_counts_a_fraction_of_its_chunks():
    """Chunk after chunk as quota.streams does it, each growth granted in full: what was
    delivered never passes what is held, and the tokenizer is called for few of the chunks."""
    calls: list[str] = []
    count = quarter_tokenizer(calls)
    stream = meter(chunk=128, chunk_max=2048)
    chunks = [f"palavra{number % 10} " for number in range(2000)]
    growths = 0
    for text in chunks:
        chunk_tokens = stream.admit(text, count)
        if chunk_tokens is not None:
            growth = stream.growth_before(chunk_tokens)
            if growth is not None:
                stream.grown(growth.wanted_tokens)
                growths += 1
            stream.delivered(chunk_tokens)
        assert stream.tokens_for(stream.completion_tokens) <= stream.reserved_tokens
    assert len(calls) < len(chunks) / 10 and growths <= 8
    stream.count_uncounted(count)
    assert stream.completion_tokens <= sum(max(1, -(-len(text.encode()) // 4)) for text in chunks)
