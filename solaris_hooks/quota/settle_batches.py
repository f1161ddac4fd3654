"""Group commit: the charges of calls, written to the ledger a batch at a time (settings.leases).

A call a lease covered is charged in memory when it ends, and so is a call on a reservation
of its own; the usage of either is written at once to this process's journal, a spool
segment (quota/spool.py) that only this process holds while it lives. Every
settle_batch_interval_ms the calls waiting are written in one transaction per kind
(solaris.settle_leased and solaris.settle_batch: still one 'settle' row per call), and only
then leave the journal. A process killed between the two leaves its journal behind, and the spool
replay of the next process to start (or of another replica) charges it, exactly once
per call id. The journal is written without fsync, so nothing is lost when the process
dies; only a crash of the machine itself can lose the last batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from solaris_hooks.db.batched_settles import BatchedSettle
from solaris_hooks.db.leases import LeasedCall
from solaris_hooks.quota.leases import Lease
from solaris_hooks.quota.spool import SpoolEntry, open_segment

# Calls per transaction: a backlog after an outage is written in slices this big.
batch_calls_max = 2000


@dataclass(frozen=True)
class WaitingCall:
    call: LeasedCall | BatchedSettle  # from a lease, or on a reservation of its own
    lease: Lease | None
    charged_tokens: int  # what the batch charges it: ceil(raw tokens × factor)
    journal_end: int  # bytes ever appended to the journal once this call's line was


class SettleJournal:
    """This process's journal segment: append-only while calls wait, cut once they are written.

    Positions are counted in bytes ever appended, so a cut moves the file's start and no
    waiting call's position. The latest line of each stream still running from a lease
    (quota/leased_streams.py) is written again at the front at each cut: it is what the
    stream owes if the process dies before it ends, whatever batches were written since."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._segment: int | None = None
        self.appended = 0  # bytes ever appended
        self._cut = 0  # bytes ever cut from the front: the file starts at this position
        self._running: dict[str, bytes] = {}  # call id -> its latest "running" line
        self._front = 0  # bytes of running lines written again at the front at the last cut

    def append(self, entry: SpoolEntry) -> int:
        """Write one line (not fsync'd: it outlives the process, not the machine); returns the
        position after it. Raises OSError when the disk refuses it."""
        if self._segment is None:
            self._segment, _ = open_segment(self.directory, os.O_RDWR)
        line = entry.to_line()
        os.pwrite(self._segment, line, self._front + self.appended - self._cut)
        self.appended += len(line)
        if entry.stream == "running":
            self._running[entry.call_id] = line
        else:  # its settle or its release: what the stream owes is that line now
            self._running.pop(entry.call_id, None)
        return self.appended

    def written_up_to(self, end: int) -> None:
        """The lines before position `end` are in the ledger: keep only those after it, behind
        the running streams' lines. A crash halfway leaves a line or two of written calls, which
        a replay charges nothing more for (and older running lines, of which it takes the largest)."""
        if self._segment is None:
            return
        tail_at = self._front + end - self._cut
        tail = os.pread(self._segment, self.appended - end, tail_at) if self.appended > end else b""
        front = b"".join(self._running.values())
        os.pwrite(self._segment, front + tail, 0)
        os.ftruncate(self._segment, len(front) + len(tail))
        self._cut = end
        self._front = len(front)

    def close(self) -> None:
        """Stop appending; a journal with lines left is replayed like any spool segment."""
        if self._segment is not None:
            os.close(self._segment)
            self._segment = None


class SettleBatches:
    """Calls charged in memory and waiting for the next batch, oldest first."""

    def __init__(self, journal: SettleJournal) -> None:
        self.journal = journal
        self._waiting: list[WaitingCall] = []

    def __len__(self) -> int:
        return len(self._waiting)

    def add(
        self, call: LeasedCall | BatchedSettle, lease: Lease | None, charged_tokens: int, entry: SpoolEntry
    ) -> None:
        """Keep a call for the next batch; its journal line first. Raises OSError."""
        end = self.journal.append(entry)
        self._waiting.append(WaitingCall(call, lease, charged_tokens, end))

    def add_unjournaled(self, call: LeasedCall | BatchedSettle, lease: Lease | None, charged_tokens: int) -> None:
        """Keep a call whose journal line could not be written (it covers no journal bytes)."""
        self._waiting.append(WaitingCall(call, lease, charged_tokens, self.journal.appended))

    def next_batch(self) -> list[WaitingCall]:
        return self._waiting[:batch_calls_max]

    def written(self, batch: list[WaitingCall]) -> None:
        """`batch` (the oldest waiting calls) is in the ledger: drop it here and in the journal."""
        del self._waiting[: len(batch)]
        self.journal.written_up_to(batch[-1].journal_end)
