"""Who pays for a call, and the one spelling of a person's identity.

Who is named: the first of these that the request carries, in LiteLLM's own order
(`get_end_user_id_from_request_body` in litellm/proxy/auth/auth_utils.py), so LiteLLM's
spend logs and our ledger name the same person:

    1. header `x-litellm-customer-id`         4. body `user`
    2. header `x-litellm-end-user-id`         5. body `litellm_metadata.user`
    3. header `identity_header` (if another)  6. body `metadata.user_id`
                                              7. body `safety_identifier`

Only keys that may speak for others name someone: the master key and the keys in
`trusted_keys`. Any other key pays for itself (its LiteLLM user, else `key:<hash prefix>`)
and may name only itself: naming someone else in a header or the body's `user` is refused
(403), so a personal key can never spend another person's allowance; sources 5-7, which
clients fill on their own for tracking (Claude Code sends `metadata.user_id` with every
call), are not read for such a key. A trusted key that names nobody is refused (400)
unless `anonymous_calls: charge_key`: a forgotten header must not silently charge one
account shared by everybody (the master key's user is LiteLLM's `default_user_id`).

One person, one account: an identity is normalised before it reaches the ledger, so
`Ana@Example.COM`, `ana@example.com` and `ａｎａ＠ｅｘａｍｐｌｅ．ｃｏｍ` are one account.
Unicode NFKC (fullwidth, compatibility and combining forms become one), then trimmed;
then lower-cased as PRECIS does for user names (RFC 8265: Unicode toLowerCase, not case
folding, which would make `straße` and `strasse` one name): the domain of an e-mail
address always; the rest of it, or the whole of an identity that is not an address
(LibreChat's 24-hex ids, `key:…`), by `identity_local_part_case` (one rule for both:
everything but a domain follows the setting). An identity is an e-mail address when it
has text on both sides of its last `@`.

An identity is plain, visible text: control characters (C0 and C1: CR, LF, NUL, ESC…),
invisible format characters (zero-width spaces, bidi overrides), line and paragraph
separators and lone surrogates are refused, so two accounts never look the same in a
list, a log line is never split by an id, and nothing odd reaches a header or the ledger.
A LibreChat that cannot fill its placeholder sends the header empty (older versions sent
`{{LIBRECHAT_USER_EMAIL}}` literally); charging either would make one account shared by
everyone, so both are refused with a 400 that says what to write in librechat.yaml.
LibreChat sends a value with characters above U+00FF as `b64:<base64 of its UTF-8>`; such a
header is decoded before all of the above (see header_text).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import unicodedata
from collections.abc import Mapping
from typing import Literal

from solaris_hooks.exceptions import IdentityForbidden, IdentityRefused
from solaris_hooks.logs import log_event

LocalPartCase = Literal["insensitive", "sensitive"]
AnonymousCalls = Literal["refuse", "charge_key"]

identity_length_max = 255
# Input longer than this is refused before it is normalised: NFKC shrinks text at most
# fourfold (a letter and three combining marks, as U+1FAF), so nothing longer could
# become a valid identity.
identity_input_length_max = 4 * identity_length_max
# Cc control, Cf format (invisible), Cs surrogate, Zl/Zp line and paragraph separators.
refused_categories = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# LiteLLM reads these before any configured header (STANDARD_CUSTOMER_ID_HEADERS).
standard_identity_headers = ("x-litellm-customer-id", "x-litellm-end-user-id")
# What LiteLLM puts in UserAPIKeyAuth.token for the master key (other keys: sha256 of the key).
master_key_token = "litellm_proxy_master_key"


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

    LibreChat cannot put a character above U+00FF in a header, so it sends such a value as
    `b64:` and the UTF-8 bytes in base64 (`marić@example.com` arrives as
    `b64:bWFyacSHQGV4YW1wbGUuY29t`): that is decoded. A `b64:` value that does not decode
    to UTF-8 text is refused, never charged under its literal spelling.
    """
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        return value  # already text (not from the wire)
    if raw[:4].lower() == b"b64:":
        return _base64_text(raw[4:])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return value


def _base64_text(encoded: bytes) -> str:
    """UTF-8 text from base64, standard or URL-safe, padded or not."""
    encoded = encoded.strip().translate(bytes.maketrans(b"-_", b"+/"))
    try:
        return base64.b64decode(encoded + b"=" * (-len(encoded) % 4), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        raise IdentityRefused("identity_invalid") from None


def validate_identity(identity: str) -> str:
    """The identity trimmed, if it is plain visible text of a bounded length; not normalised."""
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


def normalise_identity(identity: str, local_part_case: LocalPartCase) -> str:
    """The one spelling of an identity that reaches the ledger (see the module docstring).

    Idempotent: normalising a normalised identity changes nothing.
    """
    if len(identity) > identity_input_length_max:
        raise IdentityRefused("identity_too_long", length_max=identity_length_max)
    text = unicodedata.normalize("NFKC", identity).strip()
    local, at, domain = text.rpartition("@")
    if not (local and domain):
        local, at, domain = text, "", ""
    if local_part_case == "insensitive":
        local = local.lower()
    # Lower-casing can leave a sequence NFKC would compose (İ → i + combining dot): normalise again.
    return validate_identity(unicodedata.normalize("NFKC", local + at + domain.lower()))


def key_may_name_users(token: str | None, key_alias: str | None, trusted_keys: list[str] | None) -> bool:
    """Whether a LiteLLM key may say which end user a call is for: the master key always,
    and the keys listed in trusted_keys by alias or as the raw key (compared by its sha256,
    as LiteLLM stores it). `master_key` in the list is accepted and changes nothing."""
    if token == master_key_token:
        return True
    for entry in trusted_keys or ():
        if key_alias and entry == key_alias:
            return True
        if token and hashlib.sha256(entry.encode()).hexdigest() == token:
            return True
    return False


def key_identity(key_user_id: str | None, token: str | None) -> str | None:
    """Who a key is when it pays for itself: its own user, else the key itself."""
    if key_user_id:
        return key_user_id
    return f"key:{token[:16]}" if token else None


def named_identity(data: dict, header_name: str, key_user_id: str | None, tracking_fields: bool = True) -> str | None:
    """The end user the request names, raw, in LiteLLM's order; None when it names nobody.

    Sources 1-4 (the headers and the body's `user`) are how a client says who a call is
    for. Sources 5-7 are tracking fields clients fill on their own (Claude Code sends
    `metadata.user_id` with every call): tracking_fields=False leaves them out.

    A source that is present but blank or not text is refused, not skipped: it is a
    misconfigured client, and skipping it could charge whoever the next source names.
    """
    headers = (data.get("proxy_server_request") or {}).get("headers")
    for name in dict.fromkeys((*standard_identity_headers, header_name.lower())):
        value = header_value(headers, name)
        if value is not None:
            if not value.strip():
                # What LibreChat sends when it cannot fill the placeholder its yaml names.
                raise IdentityRefused("identity_header_empty", header=name)
            return _text(header_text(value))
    tracking = (
        (
            _field(data.get("litellm_metadata"), "user"),
            _field(data.get("metadata"), "user_id"),
            data.get("safety_identifier"),
        )
        if tracking_fields
        else ()
    )
    for value in (_body_user(data, key_user_id), *tracking):
        if value is not None:
            return _text(value)
    return None


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise IdentityRefused("identity_invalid")
    if not value.strip():
        raise IdentityRefused("identity_missing")
    return value


def _field(container: object, name: str) -> object:
    return container.get(name) if isinstance(container, dict) else None


def _body_user(data: dict, key_user_id: str | None) -> object:
    """The body's `user`, unless LiteLLM put it there: its speech and transcription routes
    fill a missing `user` with the key's own user after taking the request's snapshot."""
    user = data.get("user")
    snapshot = (data.get("proxy_server_request") or {}).get("body")
    if user is not None and user == key_user_id and isinstance(snapshot, dict) and "user" not in snapshot:
        return None
    return user


def resolve_identity(
    data: dict,
    key: object,
    *,
    header_name: str,
    local_part_case: LocalPartCase,
    anonymous_calls: AnonymousCalls,
    trusted_keys: list[str] | None,
) -> str:
    """The normalised identity a call is charged to; raises IdentityRefused (400) or
    IdentityForbidden (403). `key` is LiteLLM's UserAPIKeyAuth: token, key_alias, user_id."""
    token, key_user_id = getattr(key, "token", None), getattr(key, "user_id", None)
    trusted = key_may_name_users(token, getattr(key, "key_alias", None), trusted_keys)
    own = key_identity(key_user_id, token)
    # A key that pays for itself is not re-attributed by what a client fills in for tracking.
    named = named_identity(data, header_name, key_user_id, tracking_fields=trusted)
    if named is not None:
        identity = normalise_identity(named, local_part_case)
        if trusted or (own is not None and identity == normalise_identity(own, local_part_case)):
            return identity
        # Who tried is worth a warning; whom they named is not logged (it may be anything).
        log_event(
            "identity_forbidden", logging.WARNING, key_alias=getattr(key, "key_alias", None), key_user_id=key_user_id
        )
        raise IdentityForbidden()
    if trusted and anonymous_calls == "refuse":
        raise IdentityRefused("identity_missing")
    if own is None:
        raise IdentityRefused("identity_missing")
    return normalise_identity(own, local_part_case)
