"""Prompt margins: the bound of a prompt a provider may count more of than we do."""

from __future__ import annotations

import pytest

from solaris_hooks.db.margins import PromptMargin


class TestPromptMargin:
    def test_no_margin_bounds_a_prompt_by_its_estimate(self):
        """Nothing learned: the estimate itself."""
        assert PromptMargin().bound(100) == 100

    def test_a_ratio_scales_long_prompts_and_an_excess_lifts_short_ones(self):
        """max(estimate × ratio, estimate + excess): each term wins where it matters."""
        margin = PromptMargin(ratio=1.3, excess_tokens=40)
        assert margin.bound(50) == 90  # 50 + 40 > 65
        assert margin.bound(1000) == 1300  # 1300 > 1040

    @pytest.mark.parametrize("estimated", [1, 7, 100, 255, 256, 10_000])
    def test_the_multiplier_gives_the_same_bound_as_the_plan_computes_it(self, estimated):
        """The plan takes one factor; rounded up, it is the bound."""
        import math

        margin = PromptMargin(ratio=1.07, excess_tokens=33)
        assert math.ceil(round(estimated * margin.multiplier(estimated), 9)) == margin.bound(estimated)

    def test_widening_keeps_the_larger_of_each_maximum(self):
        """Replicas and settings only ever widen a margin."""
        assert PromptMargin(1.2, 10).widened(PromptMargin(1.1, 30)) == PromptMargin(1.2, 30)

    def test_covers_says_whether_a_reported_count_fit(self):
        """A report within the bound teaches nothing."""
        margin = PromptMargin(ratio=1.5)
        assert margin.covers(100, 150) and not margin.covers(100, 151)
