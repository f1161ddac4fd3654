"""Who pays for a call: the end user named by the client, else the key's own user.

Order: the identity header (LibreChat sends `x-litellm-end-user-id`), then the body's
`user`, then the user id of the LiteLLM key. A LibreChat that was not told how to fill
its placeholder sends `{{LIBRECHAT_USER_EMAIL}}` literally; charging that string would
make one account shared by everyone, so it is refused.
"""

from __future__ import annotations

import hashlib
from typing import Mapping

from solaris_hooks.exceptions import IdentityRefused

identity_length_max = 255


def header_value(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def validate_identity(identity: str) -> str:
    identity = identity.strip()
    if not identity:
        raise IdentityRefused("identity_missing")
    if "{{" in identity or "}}" in identity:
        raise IdentityRefused("identity_placeholder", identity=identity[:80])
    if len(identity) > identity_length_max:
        raise IdentityRefused("identity_too_long", length_max=identity_length_max)
    # U+FFFD is what undecodable bytes (not UTF-8) became on the way in.
    if any(ord(character) < 32 or ord(character) == 127 or character == "\ufffd" for character in identity):
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
    for candidate in (header_value(headers, header_name), data.get("user"), key_user_id):
        if candidate is None:
            continue
        if not isinstance(candidate, str):
            raise IdentityRefused("identity_invalid")
        return validate_identity(candidate)
    raise IdentityRefused("identity_missing")
