"""Prompt margins: how much more than our estimate a model's provider may count a prompt.

Our prompt estimate uses tiktoken (quota.tokenizer); a provider with another tokenizer (or its
own framing) reports more, and a call clamped to fit the estimate alone would then cost
more than it reserved. So each model carries two running maxima, learned from the prompt
tokens providers report and kept in `solaris.model_margins` (shared by replicas):

- `ratio`: reported ÷ estimated, from prompts of at least `ratio_sample_tokens_min`
  tokens: a tokenizer that counts more scales with the text;
- `excess_tokens`: reported − estimated, from shorter prompts, where a provider's fixed
  framing (a few tokens of its own around the messages) would make a huge ratio out of a
  few tokens and then inflate every long prompt's reservation.

A prompt estimated at `e` tokens is bounded by max(e × ratio, e + excess_tokens). An admin
can set a starting ratio per model (`prompt_margins`) so that even a model's first call is
bounded; without one, the first call teaches the margin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Below this many estimated tokens a sample teaches the excess, at or above it the ratio:
# a few tokens of a provider's own framing on a prompt of 8 would otherwise read as a ratio
# of 10 and make every long prompt's reservation ten times too large.
ratio_sample_tokens_min = 32


@dataclass(frozen=True)
class PromptMargin:
    ratio: float = 1.0
    excess_tokens: int = 0

    def bound(self, estimated_tokens: int) -> int:
        """The most tokens the provider may count for a prompt we estimate at estimated_tokens."""
        return max(math.ceil(round(estimated_tokens * self.ratio, 9)), estimated_tokens + self.excess_tokens)

    def multiplier(self, estimated_tokens: int) -> float:
        """The bound as one factor on the estimate, as the call plan takes it."""
        if estimated_tokens <= 0:
            return self.ratio
        return max(self.ratio, (estimated_tokens + self.excess_tokens) / estimated_tokens)

    def covers(self, estimated_tokens: int, reported_tokens: int) -> bool:
        return reported_tokens <= self.bound(estimated_tokens)

    def widened(self, other: PromptMargin) -> PromptMargin:
        return PromptMargin(max(self.ratio, other.ratio), max(self.excess_tokens, other.excess_tokens))
