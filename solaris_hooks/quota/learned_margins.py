"""Prompt margins learned from the prompt tokens providers report, per model.

Kept in `solaris.model_margins` and refreshed by the sweeper, so replicas learn from each
other (what a margin is: db/margins.py).
"""

from __future__ import annotations

import logging

from psycopg import AsyncConnection

from solaris_hooks.db import ledger
from solaris_hooks.db.database import Database
from solaris_hooks.db.margins import PromptMargin
from solaris_hooks.logs import log_event
from solaris_hooks.quota.calls import CallInFlight

# Call types whose usage counts prompt tokens the way our estimate does: a provider reporting
# more than we estimated for them teaches the model's prompt margin.
_margin_call_types = frozenset(
    {
        "acompletion",
        "completion",
        "atext_completion",
        "text_completion",
        "aresponses",
        "responses",
        "anthropic_messages",
        "aembedding",
        "embedding",
    }
)


def teaches_margin(call_type: str) -> bool:
    return call_type in _margin_call_types


class LearnedMargins:
    def __init__(self) -> None:
        self._by_model: dict[str, PromptMargin] = {}

    def for_model(self, model: str | None) -> PromptMargin:
        return self._by_model.get(model or "", PromptMargin())

    async def load(self, database: Database) -> None:
        """Widen ours by what every replica has learned."""
        async with database.connection() as connection:
            learned = await ledger.margins(connection)
        for model, margin in learned.items():
            self._by_model[model] = self.for_model(model).widened(margin)

    def widens(self, call: CallInFlight, reported_tokens: int) -> bool:
        """Whether the provider's prompt count for this call teaches the model a wider margin:
        it rarely does, and checking needs no database connection."""
        if not call.learns_margin or not call.model or call.prompt_tokens <= 0:
            return False
        if reported_tokens <= call.prompt_bound_tokens:
            return False
        return not self.for_model(call.model).covers(call.prompt_tokens, reported_tokens)

    async def learn(self, connection: AsyncConnection, call: CallInFlight, reported_tokens: int) -> None:
        """A provider that counted more prompt tokens than the reservation allowed for widens the
        model's margin (running maxima, persisted), so the next reservations bound it too."""
        if call.model is None or not self.widens(call, reported_tokens):
            return
        learned = self.for_model(call.model)
        margin = await ledger.learn_margin(connection, call.model, reported_tokens, call.prompt_tokens)
        self._by_model[call.model] = widened = learned.widened(margin)
        log_event(
            "margin_learned",
            logging.WARNING,
            model=call.model,
            ratio=widened.ratio,
            excess_tokens=widened.excess_tokens,
            reported_prompt_tokens=reported_tokens,
            estimated_prompt_tokens=call.prompt_tokens,
        )
