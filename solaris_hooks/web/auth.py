"""Who may call the `/solaris` API: the master key, admin keys and read-only viewer keys.

`SOLARIS_ADMIN_KEYS` and `SOLARIS_VIEWER_KEYS` are comma-separated; an entry may be
`alias=key`, and the alias is then the actor in the audit trail. Without an alias the
actor is a short hash of the key: the key itself is never stored or logged. Keys are
compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from solaris_hooks.litellm_proxy import master_key
from solaris_hooks.settings import Environment

Role = Literal["admin", "viewer"]
read_methods = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Actor:
    name: str
    role: Role

    @property
    def can_write(self) -> bool:
        return self.role == "admin"


def key_fingerprint(key: str) -> str:
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:12]


def _entries(value: str, role: Role) -> list[tuple[str, Actor]]:
    entries = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        alias, separator, key = item.partition("=")
        if not separator or not key.strip() or key.strip().startswith("="):
            alias, key = "", item
        key = key.strip()
        entries.append((key, Actor(alias.strip() or key_fingerprint(key), role)))
    return entries


def known_keys(environ: Mapping[str, str] = os.environ) -> list[tuple[str, Actor]]:
    keys = []
    master = master_key(environ)
    if master:
        keys.append((master, Actor("master_key", "admin")))
    environment = Environment.read(environ)
    keys += _entries(environment.solaris_admin_keys.get_secret_value(), "admin")
    keys += _entries(environment.solaris_viewer_keys.get_secret_value(), "viewer")
    return keys


def identify(presented: str, environ: Mapping[str, str] = os.environ) -> Actor | None:
    """The actor a key belongs to, or None. Every known key is compared, match or not,
    so the time taken does not tell which key came close."""
    found = None
    for key, actor in known_keys(environ):
        if hmac.compare_digest(presented.encode(), key.encode()) and found is None:
            found = actor
    return found
