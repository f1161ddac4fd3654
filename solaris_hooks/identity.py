"""Who pays for a call: the end user named by the client, else the key's own user.

Order: the identity header (LibreChat sends `x-litellm-end-user-id`), then the body's
`user`, then the user id of the LiteLLM key. A LibreChat that was not told how to fill
its placeholder sends `{{LIBRECHAT_USER_EMAIL}}` literally; charging that string would
make one account shared by everyone, so it is refused.

An identity is plain, visible text: control characters (C0 and C1: CR, LF, NUL, ESC…),
invisible format characters (zero-width spaces, bidi overrides), line and paragraph
separators and lone surrogates are refused, so two accounts never look the same in a
list, a log line is never split by an id, and nothing odd reaches a header or the ledger.
"""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Mapping

from solaris_hooks.exceptions import IdentityRefused

identity_length_max = 255
# Cc control, Cf format (invisible), Cs surrogate, Zl/Zp line and paragraph separators.
refused_categories = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def header_value(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def header_text(value: str) -> str:
    """A header value as the client meant it.

    Starlette decodes header bytes as latin-1. Node (LibreChat) sends latin-1 bytes, but
    curl and Python send UTF-8, which would otherwise be charged under mojibake
    ('joÃ£o' for 'joão'): bytes that are valid UTF-8 are read as UTF-8, others as latin-1.
    """
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        return value  # already text (not from the wire)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return value


def validate_identity(identity: str) -> str:
    identity = identity.strip()
    if not identity:
        raise IdentityRefused("identity_missing")
    if "{{" in identity or "}}" in identity:
        raise IdentityRefused("identity_placeholder", identity=identity[:80])
    if len(identity) > identity_length_max:
        raise IdentityRefused("identity_too_long", length_max=identity_length_max)
    # U+FFFD is what undecodable bytes (not UTF-8) became on the way in.
    if any(character == "\ufffd" or unicodedata.category(character) in refused_categories for character in identity):
        raise IdentityRefused("identity_invalid")
    return identity


# What LiteLLM puts in UserAPIKeyAuth.token for the master key (other keys: sha256 of the key).
master_key_token = "litellm_proxy_master_key"


def key_may_name_users(token: str | None, key_alias: str | None, trusted_keys: list[str] | None) -> bool:
    """Whether a LiteLLM key may say which end user a call is for.

    trusted_keys None: every key may (LibreChat alone holds keys). Otherwise only keys
    listed by alias, as the raw key (compared by its sha256, as LiteLLM stores it), or
    `master_key`.
    """
    if trusted_keys is None:
        return True
    for entry in trusted_keys:
        if entry == "master_key" and token == master_key_token:
            return True
        if key_alias and entry == key_alias:
            return True
        if token and hashlib.sha256(entry.encode()).hexdigest() == token:
            return True
    return False


def key_identity(key_user_id: str | None, token: str | None) -> str | None:
    """Who pays for a key that may not name users: its own user, else the key itself."""
    if key_user_id:
        return key_user_id
    return f"key:{token[:16]}" if token else None


def resolve_identity(data: dict, header_name: str, key_user_id: str | None, may_name_users: bool = True) -> str:
    if not may_name_users:
        return validate_identity(key_user_id or "")
    headers = (data.get("proxy_server_request") or {}).get("headers")
    header = header_value(headers, header_name)
    for candidate in (None if header is None else header_text(header), data.get("user"), key_user_id):
        if candidate is None:
            continue
        if not isinstance(candidate, str):
            raise IdentityRefused("identity_invalid")
        return validate_identity(candidate)
    raise IdentityRefused("identity_missing")
