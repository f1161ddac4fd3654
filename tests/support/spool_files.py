"""Spool segments as the tests write and list them."""

from __future__ import annotations

import uuid
from pathlib import Path

from solaris_hooks.quota.spool import SpoolEntry, segment_suffix


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*" + segment_suffix)) if directory.exists() else []


def entry(call_id: str | None = None, raw_tokens: int = 100, **fields) -> SpoolEntry:
    return SpoolEntry(call_id=call_id or uuid.uuid4().hex, raw_tokens=raw_tokens, **fields)
