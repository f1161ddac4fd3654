"""Signed values for the web pages: admin session cookies and personal usage links.

Both are signed (itsdangerous, HMAC-SHA256) with SOLARIS_SECRET_KEY, or, when that is
unset, with a key derived from the master key, so a deployment needs no extra secret.
Changing either key logs every admin out and voids every personal link issued before.
Each value carries its own expiry, so shortening a setting never revives an old link.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Mapping
from urllib.parse import quote

from itsdangerous import BadSignature, URLSafeSerializer

from solaris_hooks.exceptions import LinkExpired, LinkInvalid, SettingsError
from solaris_hooks.litellm_proxy import master_key
from solaris_hooks.settings import Environment, Settings

_derivation_label = b"solaris-hooks web pages v1"


def secret_key(environ: Mapping[str, str] = os.environ) -> bytes:
    explicit = Environment.read(environ).solaris_secret_key.get_secret_value().strip()
    if explicit:
        return explicit.encode()
    master = master_key(environ)
    if not master:
        raise SettingsError("the web pages need SOLARIS_SECRET_KEY or LITELLM_MASTER_KEY to sign with")
    return hmac.new(master.encode(), _derivation_label, hashlib.sha256).digest()


def _serializer(purpose: str, environ: Mapping[str, str]) -> URLSafeSerializer:
    # The salt keeps a session cookie from being accepted as a usage link and back.
    return URLSafeSerializer(secret_key(environ), salt=f"solaris {purpose}")


def sign(
    purpose: str, payload: dict, ttl_s: float, environ: Mapping[str, str] = os.environ, now_s: float | None = None
) -> str:
    expires_at_s = int((now_s if now_s is not None else time.time()) + ttl_s)
    return _serializer(purpose, environ).dumps({**payload, "exp": expires_at_s})


def unsign(purpose: str, token: str, environ: Mapping[str, str] = os.environ, now_s: float | None = None) -> dict:
    """The payload; LinkInvalid when tampered with or malformed, LinkExpired when too old."""
    try:
        payload = _serializer(purpose, environ).loads(token)
    except (BadSignature, UnicodeError, ValueError):
        raise LinkInvalid("the signature does not match") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int):
        raise LinkInvalid("the signed value has no expiry")
    if payload["exp"] <= (now_s if now_s is not None else time.time()):
        raise LinkExpired("the signed value has expired")
    return payload


def usage_token(user_id: str, settings: Settings, environ: Mapping[str, str] = os.environ) -> str:
    return sign("usage link", {"user": user_id}, settings.usage_link_ttl_days * 86_400, environ)


def usage_user(token: str, environ: Mapping[str, str] = os.environ) -> str:
    user_id = unsign("usage link", token, environ).get("user")
    if not isinstance(user_id, str) or not user_id:
        raise LinkInvalid("the link names no user")
    return user_id


def usage_path(user_id: str, settings: Settings, environ: Mapping[str, str] = os.environ) -> str:
    return "/solaris/me/" + quote(usage_token(user_id, settings, environ), safe="")


def usage_url(user_id: str, settings: Settings, environ: Mapping[str, str] = os.environ) -> str | None:
    """The absolute personal link for e-mails, or None without public_url or a key to sign with."""
    if not settings.public_url:
        return None
    try:
        return settings.public_url.rstrip("/") + usage_path(user_id, settings, environ)
    except SettingsError:
        return None
