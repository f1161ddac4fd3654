"""Spool segments as the tests write and list them."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

from solaris_hooks.quota.spool import SpoolEntry, segment_suffix


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*" + segment_suffix)) if directory.exists() else []


def spooled_lines(directory: Path) -> int:
    """Lines the segments still hold: 0 once everything is replayed, though a proxy that ran
    with leases keeps its settle journal (a segment, cut to nothing once written) open."""
    lines = 0
    for path in segments(directory):
        with contextlib.suppress(FileNotFoundError):  # replayed and deleted meanwhile
            lines += len(path.read_bytes().splitlines())
    return lines


def entry(call_id: str | None = None, raw_tokens: int = 100, **fields) -> SpoolEntry:
    return SpoolEntry(call_id=call_id or uuid.uuid4().hex, raw_tokens=raw_tokens, **fields)
