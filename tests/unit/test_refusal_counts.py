"""Refusals counted in memory until the next batch writes them."""

from __future__ import annotations

from solaris_hooks.quota import refusal_counts
from solaris_hooks.quota.refusal_counts import RefusalCounts


def test_counts_are_taken_once_and_a_failed_write_gives_them_back():
    counts = RefusalCounts()
    for user in ("ana", "ana", "bia"):
        counts.add(user)
    taken = counts.take()
    assert taken == {"ana": 2, "bia": 1} and counts.take() == {}
    counts.add("ana")
    counts.give_back(taken)
    assert counts.take() == {"ana": 3, "bia": 1}


def test_past_the_users_it_keeps_new_users_are_not_counted_and_known_ones_are(monkeypatch):
    monkeypatch.setattr(refusal_counts, "users_waiting_max", 2)
    counts = RefusalCounts()
    for user in ("ana", "bia", "caio", "ana"):
        counts.add(user)
    assert counts.take() == {"ana": 2, "bia": 1}
