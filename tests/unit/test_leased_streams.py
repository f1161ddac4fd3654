"""Metered streams from leases: what a lease gives a stream, and what its journal says it owes."""

from __future__ import annotations

from solaris_hooks.db.leases import LeasedCall
from solaris_hooks.quota.leases import Lease, Leases
from solaris_hooks.quota.settle_batches import SettleBatches, SettleJournal
from solaris_hooks.quota.spool import SpoolEntry, owed_entries, read_entries


def held_lease(leases: Leases, free_tokens: int = 100) -> Lease:
    lease = Lease("lease-1", "ana@example.com", size_tokens=free_tokens, free_tokens=free_tokens, call_tokens=10)
    leases.held(lease)
    return lease


def running(call_id: str, held_tokens: int) -> SpoolEntry:
    return SpoolEntry(
        call_id, held_tokens * 2, lease_id="lease-1", factor=0.5, held_tokens=held_tokens, stream="running"
    )


def settled(call_id: str, raw_tokens: int) -> SpoolEntry:
    return SpoolEntry(call_id, raw_tokens, lease_id="lease-1", factor=0.5, held_tokens=1000)


def released(call_id: str) -> SpoolEntry:
    return SpoolEntry(call_id, 0, lease_id="lease-1", factor=0.5, held_tokens=0, stream="released")


class TestLeaseForStreams:
    def test_a_stream_reserves_its_first_chunk_only_while_the_lease_has_its_worst_case_free(self):
        leases = Leases()
        lease = held_lease(leases, free_tokens=100)
        assert leases.reserve("ana@example.com", 10, worst_case_tokens=120) is None
        assert leases.reserve("ana@example.com", 10, worst_case_tokens=100) is lease
        assert (lease.free_tokens, lease.call_tokens) == (90, 100)  # top-ups are sized on the worst case

    def test_a_stream_grows_by_what_it_wants_or_what_is_free_and_never_below_its_minimum(self):
        leases = Leases()
        lease = held_lease(leases, free_tokens=100)
        assert leases.grow(lease, wanted_tokens=60, minimum_tokens=10) == 60
        assert leases.grow(lease, wanted_tokens=60, minimum_tokens=10) == 40  # all that is left
        assert leases.grow(lease, wanted_tokens=5, minimum_tokens=1) == 0
        assert lease.free_tokens == 0

    def test_a_given_up_lease_grows_no_stream(self):
        leases = Leases()
        lease = held_lease(leases)
        leases.give_up(lease)
        assert leases.grow(lease, wanted_tokens=10, minimum_tokens=1) == 0


class TestOwedEntries:
    def test_a_stream_that_ended_owes_its_settle_whatever_the_order_of_its_lines(self):
        entries = [running("s", 40), settled("s", 30), running("s", 20)]
        assert owed_entries(entries) == [entries[1]]

    def test_a_stream_whose_process_died_owes_the_most_it_held(self):
        entries = [running("s", 40), running("s", 90), running("s", 60)]
        assert owed_entries(entries) == [entries[1]]

    def test_a_stream_released_before_any_content_owes_nothing(self):
        assert owed_entries([running("s", 40), released("s")]) == []

    def test_other_calls_are_charged_line_by_line_as_before(self):
        entries = [SpoolEntry("a", 10), running("s", 40), SpoolEntry("b", 20), SpoolEntry("b", 25)]
        assert owed_entries(entries) == entries


class TestJournalOfRunningStreams:
    def test_a_running_streams_latest_line_survives_every_cut_until_it_ends(self, tmp_path):
        batches = SettleBatches(SettleJournal(tmp_path))
        lease = Lease("lease-1", "ana@example.com", 100, 100, 10)

        def settle(call_id: str) -> None:
            entry = settled(call_id, 10)
            batches.add(LeasedCall(call_id, "lease-1", 10, 0.5), lease, 5, entry)

        batches.journal.append(running("stream", 40))
        settle("call-1")
        batches.journal.append(running("stream", 90))
        settle("call-2")
        batches.written(batches.next_batch())  # call-1 and call-2 are in the ledger
        [segment] = tmp_path.glob("*.spool")
        owed = owed_entries(read_entries(segment))
        assert [(entry.call_id, entry.held_tokens) for entry in owed] == [("stream", 90)]
        settle("call-3")
        batches.written(batches.next_batch())
        assert [(entry.call_id, entry.held_tokens) for entry in owed_entries(read_entries(segment))] == [("stream", 90)]
        # It ends: its settle line is what it owes, and the next cut forgets it.
        batches.journal.append(settled("stream", 150))
        assert [(e.call_id, e.raw_tokens) for e in owed_entries(read_entries(segment))] == [("stream", 150)]
        settle("call-4")
        batches.written(batches.next_batch())
        assert segment.stat().st_size == 0
        batches.journal.close()
