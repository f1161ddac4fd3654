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
