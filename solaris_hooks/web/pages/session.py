"""Admin sessions for the pages: a signed cookie, CSRF tokens, flash notices.

The cookie holds who logged in (actor name, role, a fingerprint of the key, never the
key), a CSRF token and an expiry, signed by `web_signing`; HttpOnly and SameSite=Strict,
Secure behind HTTPS. A session ends at its expiry, at logout (the cookie is cleared), or
as soon as its key is no longer configured: every request checks the key still exists.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from solaris_hooks.exceptions import LinkInvalid, SettingsError
from solaris_hooks.mail import links as web_signing
from solaris_hooks.messages import normalise_locale
from solaris_hooks.web.auth import Actor, known_keys

cookie_name = "solaris_admin"
flash_cookie_name = "solaris_flash"
cookie_path = "/solaris/admin"
login_form_ttl_s = 3600
flash_ttl_s = 120


@dataclass(frozen=True)
class AdminSession:
    actor: Actor
    csrf_token: str
    locale: str

    @property
    def can_write(self) -> bool:
        return self.actor.can_write


def key_fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def _is_https(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def _set_cookie(response: Response, request: Request, name: str, value: str, max_age_s: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age_s, path=cookie_path, httponly=True, samesite="strict", secure=_is_https(request)
    )


def start(response: Response, request: Request, actor: Actor, key: str, locale: str, ttl_s: int) -> None:
    payload = {
        "actor": actor.name,
        "role": actor.role,
        "key": key_fingerprint(key),
        "csrf": secrets.token_urlsafe(24),
        "locale": normalise_locale(locale),
    }
    _set_cookie(response, request, cookie_name, web_signing.sign("admin session", payload, ttl_s), ttl_s)


def end(response: Response) -> None:
    response.delete_cookie(cookie_name, path=cookie_path)


def current(request: Request) -> AdminSession | None:
    """The request's session, or None: no cookie, a bad signature, expired, or a revoked key."""
    token = request.cookies.get(cookie_name)
    if not token:
        return None
    try:
        payload = web_signing.unsign("admin session", token)
    except (LinkInvalid, SettingsError):
        return None
    for key, actor in known_keys():
        # The key's role today wins over the one at login: a demoted key reads only.
        if hmac.compare_digest(key_fingerprint(key), str(payload.get("key", ""))) and actor.name == payload.get(
            "actor"
        ):
            return AdminSession(
                actor=actor, csrf_token=str(payload["csrf"]), locale=normalise_locale(str(payload.get("locale") or ""))
            )
    return None


def csrf_valid(session: AdminSession, presented: object) -> bool:
    return isinstance(presented, str) and hmac.compare_digest(presented.encode(), session.csrf_token.encode())


# The login form cannot use a session's token yet: it carries a signed one of its own, so
# another site cannot log a browser in under the attacker's key.


def login_form_token() -> str:
    return web_signing.sign("login form", {"nonce": secrets.token_urlsafe(8)}, login_form_ttl_s)


def login_form_token_valid(presented: object) -> bool:
    if not isinstance(presented, str):
        return False
    try:
        web_signing.unsign("login form", presented)
    except (LinkInvalid, SettingsError):
        return False
    return True


# A notice shown once on the page a form redirects to (post/redirect/get).


def flash(response: Response, request: Request, kind: str, text: str) -> None:
    _set_cookie(
        response,
        request,
        flash_cookie_name,
        web_signing.sign("flash", {"kind": kind, "text": text[:500]}, flash_ttl_s),
        flash_ttl_s,
    )


def read_flash(request: Request) -> dict | None:
    """The pending notice; the page that shows it clears it with `clear_flash`."""
    token = request.cookies.get(flash_cookie_name)
    if not token:
        return None
    try:
        payload = web_signing.unsign("flash", token)
    except (LinkInvalid, SettingsError):
        return None
    return {
        "kind": payload.get("kind") if payload.get("kind") in ("ok", "error") else "error",
        "text": str(payload.get("text", "")),
    }


def clear_flash(response: Response) -> None:
    response.delete_cookie(flash_cookie_name, path=cookie_path)
