"""The arithmetic of a metered stream: what it has delivered, and how much to grow its reservation.

A metered stream (a streamed chat call) reserves its prompt bound and a first chunk of
completion. Before a chunk of text would take what was delivered past what is held, the
reservation grows by at least what that chunk needs and, when the user has it free, by the
next chunk of completion too; each chunk is twice the last, up to a maximum, so a long
answer costs few round trips.

Counting precisely only where it matters: the tokenizer costs 25-30 µs a chunk (a thousand
chunks a long answer), its UTF-8 length 0.1 µs, and every tokenizer we count with (byte-level
BPE: tiktoken, Anthropic's) makes at most one token of a byte. So a chunk that fits in what is
held is counted by its bytes, and kept aside; only when the bytes would not fit (near what
is held, so near the edge of the allowance too) is what was kept aside counted, in one
tokenizer call, and the chunk with it. Whatever the mix, `completion_tokens` stays an upper
bound of the tokenizer's count of what was delivered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from solaris_hooks.quota.plan import platform_tokens


@dataclass(frozen=True)
class Growth:
    wanted_tokens: int  # platform tokens: this chunk and the next chunk of completion
    minimum_tokens: int  # platform tokens: this chunk alone


def byte_bound(text: str) -> int:
    """An upper bound of the raw tokens of text, without a tokenizer."""
    return len(text.encode("utf-8"))


@dataclass
class StreamMeter:
    prompt_bound_tokens: int  # raw: the prompt's worst case, as reserved
    factor: float
    reserved_tokens: int  # platform tokens held now
    chunk_tokens: int  # raw completion tokens of the last growth (the first chunk at the start)
    chunk_tokens_max: int
    counted_tokens: int = 0  # raw: the tokenizer's count of the text counted so far
    # Text delivered since, bounded by its UTF-8 length until it is counted.
    uncounted: list[str] = field(default_factory=list)
    uncounted_bytes: int = 0

    @property
    def completion_tokens(self) -> int:
        """Raw: an upper bound of the tokens delivered, as the reservation must cover them."""
        return self.counted_tokens + self.uncounted_bytes

    def tokens_for(self, completion_tokens: int) -> int:
        """Platform tokens that cover the prompt bound and completion_tokens of completion."""
        return platform_tokens(self.prompt_bound_tokens + completion_tokens, self.factor)

    def growth_before(self, chunk_tokens: int) -> Growth | None:
        """What to grow the reservation by before delivering chunk_tokens more; None: covered."""
        needed = self.tokens_for(self.completion_tokens + chunk_tokens)
        if needed <= self.reserved_tokens:
            return None
        self.chunk_tokens = min(self.chunk_tokens * 2, self.chunk_tokens_max)
        wanted = self.tokens_for(self.completion_tokens + chunk_tokens + self.chunk_tokens)
        return Growth(wanted_tokens=wanted - self.reserved_tokens, minimum_tokens=needed - self.reserved_tokens)

    def grown(self, tokens: int) -> None:
        self.reserved_tokens += tokens

    def delivered(self, chunk_tokens: int) -> None:
        """A chunk counted by the tokenizer was delivered."""
        self.counted_tokens += chunk_tokens

    def admit(self, text: str, count: Callable[[str], int]) -> int | None:
        """A chunk about to be delivered. None: what is held covers its bytes, and it is kept
        aside uncounted. Else (near what is held) what was kept aside is counted, and the
        chunk's own tokens are returned: the caller grows the reservation to cover them if
        needed (growth_before), then calls delivered()."""
        chunk_bytes = byte_bound(text)
        if self.tokens_for(self.completion_tokens + chunk_bytes) <= self.reserved_tokens:
            self.uncounted.append(text)
            self.uncounted_bytes += chunk_bytes
            return None
        self.count_uncounted(count)
        return count(text)

    def count_uncounted(self, count: Callable[[str], int]) -> None:
        """Replace the byte bound of what was kept aside by the tokenizer's count of it."""
        if self.uncounted:
            self.counted_tokens += count("".join(self.uncounted))
            self.uncounted.clear()
            self.uncounted_bytes = 0
