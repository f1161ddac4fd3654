"""The arithmetic of a metered stream: what it has delivered, and how much to grow its reservation.

A metered stream (a streamed chat call) reserves its prompt bound and a first chunk of
completion. Before a chunk of text would take what was delivered past what is held, the
reservation grows by at least what that chunk needs and, when the user has it free, by the
next chunk of completion too; each chunk is twice the last, up to a maximum, so a long
answer costs few round trips.
"""

from __future__ import annotations

from dataclasses import dataclass

from solaris_hooks.quota.plan import platform_tokens


@dataclass(frozen=True)
class Growth:
    wanted_tokens: int  # platform tokens: this chunk and the next chunk of completion
    minimum_tokens: int  # platform tokens: this chunk alone


@dataclass
class StreamMeter:
    prompt_bound_tokens: int  # raw: the prompt's worst case, as reserved
    factor: float
    reserved_tokens: int  # platform tokens held now
    chunk_tokens: int  # raw completion tokens of the last growth (the first chunk at the start)
    chunk_tokens_max: int
    completion_tokens: int = 0  # raw: our count of what was delivered, an upper bound of the provider's

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
        self.completion_tokens += chunk_tokens
