"""A process's leases in memory and its settle journal (solaris_hooks.quota.leases, settle_batches)."""

from __future__ import annotations

import time

from solaris_hooks.db.leases import LeasedCall
from solaris_hooks.quota.leases import Lease, Leases
from solaris_hooks.quota.settle_batches import SettleBatches, SettleJournal
from solaris_hooks.quota.spool import SpoolEntry, read_entries


def held_lease(leases: Leases, free_tokens: int = 100) -> Lease:
    lease = Lease("lease-1", "ana@example.com", size_tokens=free_tokens, free_tokens=free_tokens, call_tokens=10)
    leases.held(lease)
    return lease


class TestLeases:
    def test_a_call_is_reserved_only_while_its_worst_case_fits(self):
        leases = Leases()
        lease = held_lease(leases, free_tokens=100)
        assert leases.reserve("ana@example.com", 60) is lease
        assert leases.reserve("ana@example.com", 60) is None  # 40 left
        assert leases.reserve("bia@example.com", 1) is None  # no lease for her
        assert (lease.free_tokens, lease.calls_in_flight) == (40, 1)

    def test_an_ended_call_frees_what_it_did_not_use_and_waits_to_be_written(self):
        leases = Leases()
        lease = held_lease(leases)
        leases.reserve("ana@example.com", 60)
        leases.ended(lease, reserved_tokens=60, charged_tokens=25)
        assert (lease.free_tokens, lease.calls_in_flight, lease.unwritten_calls) == (75, 0, 1)
        assert not lease.idle(now_s=lease.used_at_s + 3600, idle_s=1)  # its charge is not written yet
        leases.written(lease, 1)
        assert lease.idle(now_s=lease.used_at_s + 3600, idle_s=1)

    def test_a_failed_call_frees_its_whole_worst_case(self):
        leases = Leases()
        lease = held_lease(leases)
        leases.reserve("ana@example.com", 60)
        leases.ended(lease, reserved_tokens=60, charged_tokens=None)
        assert (lease.free_tokens, lease.unwritten_calls) == (100, 0)

    def test_a_lease_given_up_serves_no_call_and_is_returned_once_drained(self):
        leases = Leases()
        lease = held_lease(leases)
        leases.reserve("ana@example.com", 10)
        leases.give_up(lease)
        assert leases.reserve("ana@example.com", 10) is None
        assert leases.drained() == []  # a call is still in flight
        leases.ended(lease, reserved_tokens=10, charged_tokens=None)
        assert leases.drained() == [lease]
        assert leases.drained() == []

    def test_a_lease_is_taken_for_a_user_who_calls_again_soon(self):
        leases = Leases()
        assert not leases.may_take("ana@example.com", idle_s=10)  # her first call
        assert leases.may_take("ana@example.com", idle_s=10)
        assert not leases.may_take("bia@example.com", idle_s=0)  # too long ago, whenever it was
        assert not leases.may_take("bia@example.com", idle_s=0)
        held_lease(leases)
        assert not leases.may_take("ana@example.com", idle_s=10)  # she holds one

    def test_half_used_leases_are_topped_up(self):
        leases = Leases()
        lease = held_lease(leases, free_tokens=100)
        leases.reserve("ana@example.com", 50)
        assert not lease.needs_top_up()
        leases.reserve("ana@example.com", 1)
        assert lease.needs_top_up()

    def test_a_lease_that_found_nothing_more_to_take_is_not_topped_up_again_until_later(self):
        """Near the edge every call would otherwise ask the ledger once more, in vain."""
        leases = Leases()
        lease = held_lease(leases, free_tokens=100)
        leases.reserve("ana@example.com", 90)
        lease.top_up_after_s = time.monotonic() + 60
        assert not lease.needs_top_up()
        lease.top_up_after_s = time.monotonic() - 1
        assert lease.needs_top_up()


class TestSettleJournal:
    def test_lines_written_to_the_ledger_leave_the_journal_and_the_rest_stays(self, tmp_path):
        batches = SettleBatches(SettleJournal(tmp_path))
        lease = Lease("lease-1", "ana@example.com", 100, 100, 10)

        def add(*numbers: int) -> None:
            for number in numbers:
                call_id = f"call-{number}"
                entry = SpoolEntry(call_id, 10, lease_id="lease-1", factor=0.5)
                batches.add(LeasedCall(call_id, "lease-1", 10, 0.5), lease, 5, entry)

        add(0, 1, 2)
        first_two = batches.next_batch()[:2]
        batches.written(first_two)
        [segment] = tmp_path.glob("*.spool")
        assert [entry.call_id for entry in read_entries(segment)] == ["call-2"]
        # Calls that end after a cut are appended behind what stayed, and cut in their turn.
        add(3, 4)
        assert [entry.call_id for entry in read_entries(segment)] == ["call-2", "call-3", "call-4"]
        batches.written(batches.next_batch()[:2])
        assert [entry.call_id for entry in read_entries(segment)] == ["call-4"]
        assert [waiting.call.call_id for waiting in batches.next_batch()] == ["call-4"]
        batches.written(batches.next_batch())
        assert segment.stat().st_size == 0
        batches.journal.close()
