"""Refused calls counted per user, for the admin pages: in memory on the request path, written
to the account (refused_calls, last_refused_at) with the next batch (quota.leasing.flush_once).

A refusal costs no write of its own: a user hammering a used-up allowance must not turn each
refused call into a row lock. Counts waiting while the database is down are kept, up to
users_waiting_max users; past it the newest are not counted (the refusals still are, in
the metrics and the logs).
"""

from __future__ import annotations

from collections import Counter

users_waiting_max = 100_000


class RefusalCounts:
    def __init__(self) -> None:
        self._waiting: Counter[str] = Counter()

    def add(self, user_id: str) -> None:
        if user_id in self._waiting or len(self._waiting) < users_waiting_max:
            self._waiting[user_id] += 1

    def take(self) -> dict[str, int]:
        """The counts waiting, which are now the caller's to write (or to give back)."""
        taken, self._waiting = dict(self._waiting), Counter()
        return taken

    def give_back(self, counts: dict[str, int]) -> None:
        """Counts a write could not make: they wait for the next one."""
        for user_id, count in counts.items():
            if user_id in self._waiting or len(self._waiting) < users_waiting_max:
                self._waiting[user_id] += count
