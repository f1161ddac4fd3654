"""Worst-case estimates and the completion bound."""

from __future__ import annotations

import pytest

from solaris_hooks.estimate import (
    Plan,
    completion_limit,
    platform_tokens,
    requested_completion_tokens,
    set_completion_bound,
)


class TestPlatformTokens:
    def test_rounds_up(self):
        """Any fraction of a platform token costs a whole one."""
        assert platform_tokens(63, 0.376) == 24  # 23.688
        assert platform_tokens(1, 0.376) == 1

    def test_float_noise_does_not_add_a_token(self):
        """0.1 × 30 is 3 platform tokens, not 4."""
        assert platform_tokens(30, 0.1) == 3

    def test_zero_costs_nothing(self):
        """No tokens, no charge."""
        assert platform_tokens(0, 0.376) == 0


class TestCompletionLimit:
    @pytest.mark.parametrize("budget", [1, 2, 10, 99, 100, 376, 1000, 12345])
    @pytest.mark.parametrize("factor", [0.376, 0.1, 1.0, 1.5, 3.0])
    def test_the_limit_is_the_largest_that_fits(self, budget, factor):
        """The worst case of the limit fits the budget and one more token would not."""
        prompt = 13
        limit = completion_limit(budget, prompt, factor)
        if limit > 0:
            assert platform_tokens(prompt + limit, factor) <= budget
        assert platform_tokens(prompt + limit + 1, factor) > budget


class TestPlan:
    def test_a_full_reservation_keeps_the_requested_bound(self):
        """When everything wanted was reserved, max_tokens stays as asked."""
        plan = Plan(prompt_tokens=10, completion_tokens_max=100, factor=0.376)
        assert plan.completion_bound(plan.wanted_tokens) == 100

    def test_a_partial_reservation_lowers_the_bound(self):
        """With less reserved than wanted, the bound shrinks so the worst case fits."""
        plan = Plan(prompt_tokens=10, completion_tokens_max=1000, factor=0.376)
        bound = plan.completion_bound(50)
        assert bound < 1000
        assert platform_tokens(10 + bound, 0.376) <= 50

    def test_embeddings_want_only_their_input(self):
        """A call with no completion reserves its input and is never clamped."""
        plan = Plan(prompt_tokens=100, completion_tokens_max=0, factor=0.376)
        assert plan.wanted_tokens == plan.minimum_tokens == 38


class TestRequestFields:
    def test_the_smaller_of_both_fields_counts(self):
        """max_tokens and max_completion_tokens: the tighter one bounds the call."""
        assert requested_completion_tokens({"max_tokens": 50, "max_completion_tokens": 20}) == 20
        assert requested_completion_tokens({}) is None

    def test_the_bound_goes_where_the_client_put_it(self):
        """A client using max_completion_tokens gets that field lowered, not a new one."""
        data = {"max_completion_tokens": 500}
        set_completion_bound(data, 40)
        assert data == {"max_completion_tokens": 40}
        data = {}
        set_completion_bound(data, 40)
        assert data == {"max_tokens": 40}
