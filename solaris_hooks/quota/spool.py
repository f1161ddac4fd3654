"""The spool: usage that could not be written to the ledger waits here, on local disk.

While Postgres is unreachable, a call that already ran (a settle that failed, or a call
that fail_mode: open let through unmetered) must still be charged once the database is
back. Each such charge becomes one JSON line in a segment file of the spool directory,
fsync'd before we move on; a replay charges the entries and deletes the segment.

Why segments rather than one file: several processes may share a directory (LiteLLM's
--num_workers, a restarted proxy, replicas on one volume). A process appends only to its
own segment and holds an exclusive flock on it while it does; a replay seals the
current segment (later appends start a new one) and takes, with a non-blocking flock,
every segment nobody holds: its own sealed ones, and those a dead process left behind.
Two replays cannot take one segment at once, and a crash between charging and deleting
leaves the segment to be replayed again, which is safe because charging is idempotent
per call id (solaris.settle_spooled).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from solaris_hooks.exceptions import DatabaseUnavailable
from solaris_hooks.logs import log_event

segment_suffix = ".spool"
# A replay that cannot charge an entry for any reason but the database being down moves
# it here for a person to look at, so one bad line never blocks the others.
rejected_name = "rejected.jsonl"
# ~250 bytes per entry: about 250,000 calls per process and outage. Past it, usage is
# logged as lost rather than filling the disk the proxy runs on.
segment_size_max_bytes = 64 * 2**20


@dataclass(frozen=True)
class SpoolEntry:
    """One call's usage. user_id and factor are known when the call went through unmetered;
    for a failed settle the reservation (found by call_id) knows them."""

    call_id: str
    raw_tokens: int
    model: str | None = None
    cost_usd: float | None = None
    user_id: str | None = None
    factor: float | None = None
    spooled_at: str = ""
    # A call a lease covered (solaris_hooks.quota.leases): charged from that lease if it is
    # still held, else late, from the account.
    lease_id: str | None = None
    # A stream reserved from a lease (quota/leased_streams.py): held_tokens is what it held,
    # the most it is charged. `stream` is "running" on the lines it journals before each
    # chunk it pays for (owed if its process dies mid-stream), "released" when it ended
    # having delivered nothing; its settle line has neither.
    held_tokens: int | None = None
    stream: str | None = None
    group_name: str | None = None  # the group the call was priced for (settings.groups)

    def to_line(self) -> bytes:
        fields = asdict(self)
        for name in ("held_tokens", "stream", "group_name"):  # only when set: other lines stay as they were
            if fields[name] is None:
                del fields[name]
        fields["spooled_at"] = self.spooled_at or datetime.now(UTC).isoformat(timespec="milliseconds")
        return (json.dumps(fields, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")

    @classmethod
    def from_line(cls, line: str) -> SpoolEntry:
        fields = json.loads(line)
        return cls(**{name: fields.get(name) for name in cls.__dataclass_fields__ if name in fields})


def read_entries(path: Path) -> Iterator[SpoolEntry]:
    """The entries of a segment. A line that does not parse (the last one, when the writer
    died mid-write) is skipped with a log line: its call was never durably spooled."""
    with path.open("r", encoding="utf-8", errors="replace") as segment:
        for number, line in enumerate(segment, start=1):
            if not line.strip():
                continue
            try:
                entry = SpoolEntry.from_line(line)
                if not entry.call_id or not isinstance(entry.raw_tokens, int):
                    raise ValueError("call_id and raw_tokens are required")
            except (ValueError, TypeError, AttributeError) as error:
                log_event(
                    "spool_line_unreadable",
                    logging.WARNING,
                    segment=path.name,
                    line=number,
                    complete=line.endswith("\n"),
                    error=str(error),
                )
                continue
            yield entry


def owed_entries(entries: Iterable[SpoolEntry]) -> list[SpoolEntry]:
    """The entries a replay charges. A stream from a lease journals a "running" line before
    each chunk it pays for, then a settle line (or a "released" one) when it ends: a stream
    that ended owes its settle (nothing if released); one whose process died mid-stream owes
    what it held at most, its largest running line. Other calls are charged line by line."""
    entries = list(entries)
    running: dict[str, SpoolEntry] = {}
    for entry in entries:
        kept = running.get(entry.call_id)
        if entry.stream == "running" and (kept is None or (entry.held_tokens or 0) > (kept.held_tokens or 0)):
            running[entry.call_id] = entry
    # In any order: a cut of the journal interrupted by a crash may leave old lines after new ones.
    ends = {entry.call_id: entry for entry in entries if entry.stream != "running" and entry.call_id in running}
    owed: list[SpoolEntry] = []
    for entry in entries:
        if entry.stream == "released":
            continue
        if entry.call_id not in running or entry is ends.get(entry.call_id, running[entry.call_id]):
            owed.append(entry)
    return owed


class Spool:
    """The spool directory of one process. append() is synchronous on purpose: it runs only
    while the database is down, and an entry must be on disk before the hook returns."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._segment: int | None = None  # fd of the segment this process appends to, flock held
        self._segment_path: Path | None = None

    def append(self, entry: SpoolEntry) -> bool:
        """Write one entry durably; False (and a log line) when it could not be kept."""
        line = entry.to_line()
        with self._lock:
            try:
                segment = self._open_segment()
                if os.fstat(segment).st_size + len(line) > segment_size_max_bytes:
                    log_event(
                        "usage_lost",
                        logging.ERROR,
                        call_id=entry.call_id,
                        user_id=entry.user_id,
                        raw_tokens=entry.raw_tokens,
                        reason=f"spool segment full ({segment_size_max_bytes} bytes)",
                    )
                    return False
                os.write(segment, line)
                os.fsync(segment)
            except OSError as error:
                log_event(
                    "usage_lost",
                    logging.ERROR,
                    call_id=entry.call_id,
                    user_id=entry.user_id,
                    raw_tokens=entry.raw_tokens,
                    reason=f"cannot write the spool: {error}",
                )
                return False
        return True

    def _open_segment(self) -> int:
        if self._segment is None:
            self._segment, self._segment_path = open_segment(self.directory, os.O_WRONLY | os.O_APPEND)
        return self._segment

    def seal(self) -> None:
        """Stop appending to the current segment (releasing its lock) so it can be replayed."""
        with self._lock:
            if self._segment is not None:
                os.close(self._segment)
                self._segment = self._segment_path = None

    def pending(self) -> bool:
        """Whether any segment waits in the directory (this process's or another's)."""
        try:
            with os.scandir(self.directory) as entries:
                return any(entry.name.endswith(segment_suffix) for entry in entries)
        except FileNotFoundError:
            return False

    async def replay(self, charge: Callable[[SpoolEntry], Awaitable[object]]) -> int:
        """Charge every entry of every segment no live process holds, deleting each segment
        once all its entries are charged. Returns the entries charged. DatabaseUnavailable
        from `charge` stops the replay and leaves the rest for the next one."""
        self.seal()
        replayed = 0
        for path in sorted(self.directory.glob("*" + segment_suffix)):
            replayed += await self._replay_segment(path, charge)
        return replayed

    async def _replay_segment(self, path: Path, charge: Callable[[SpoolEntry], Awaitable[object]]) -> int:
        try:
            segment = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:  # another process replayed it meanwhile
            return 0
        replayed = 0
        try:
            try:
                fcntl.flock(segment, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # being written, or replayed by someone else
                return 0
            try:
                if os.fstat(segment).st_ino != os.stat(path).st_ino:
                    return 0  # replayed and deleted between our open and our lock
            except FileNotFoundError:
                return 0
            for entry in owed_entries(read_entries(path)):
                try:
                    await charge(entry)
                except DatabaseUnavailable:
                    raise
                except Exception as error:  # one bad entry must not hold back the others
                    self._reject(entry, error)
                else:
                    replayed += 1
            # Everything charged: only now may the segment go. A crash before this line
            # replays it again, which charges nothing twice.
            path.unlink()  # noqa: ASYNC240 - a local unlink, on purpose inside the replay lock
            _fsync_directory(self.directory)
        finally:
            os.close(segment)
        return replayed

    def _reject(self, entry: SpoolEntry, error: Exception) -> None:
        log_event(
            "spool_entry_rejected",
            logging.ERROR,
            call_id=entry.call_id,
            user_id=entry.user_id,
            raw_tokens=entry.raw_tokens,
            error=repr(error),
            kept_in=rejected_name,
        )
        with (self.directory / rejected_name).open("ab") as rejected:
            rejected.write(entry.to_line())
            rejected.flush()
            os.fsync(rejected.fileno())


def open_segment(directory: Path, flags: int) -> tuple[int, Path]:
    """A new segment of this process, opened with `flags` and exclusively flocked: no replay
    takes it while its writer lives, and every replay may once the writer is gone."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}{segment_suffix}"
    # Locked under a temporary name first: a replay in another process must never take
    # a segment between its creation and its writer's lock.
    temporary = directory / (name + ".new")
    segment = os.open(temporary, flags | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(segment, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.rename(temporary, directory / name)
    _fsync_directory(directory)
    return segment, directory / name


def _fsync_directory(directory: Path) -> None:
    """Make a file's creation, rename or deletion itself durable."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
