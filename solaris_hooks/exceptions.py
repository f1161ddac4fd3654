"""Every error solaris_hooks raises on purpose.

    SolarisError
    ├── SettingsError          a bad `solaris_settings` value; stops the proxy at start-up
    ├── DatabaseUnavailable    Postgres cannot be reached (fail_mode decides what callers see)
    ├── MigrationError         the `solaris` schema could not be brought up to date
    └── Refusal                a call we will not let through; carries what the client is told
        ├── IdentityRefused    no usable end-user identity (400)
        ├── QuotaExhausted     the allowance is used up (429 or 403, never retried)
        └── AccountInactive    an admin blocked or disabled the user (403)

A Refusal knows its HTTP status and the message key that `messages` renders in the
user's language; the callback turns it into LiteLLM's HTTPException at the edge.
"""

from __future__ import annotations


class SolarisError(Exception):
    """Base of every error raised on purpose by solaris_hooks."""


class SettingsError(SolarisError):
    """A setting is missing or invalid; the message names the key."""


class DatabaseUnavailable(SolarisError):
    """The ledger database could not be reached in time."""


class MigrationError(SolarisError):
    """A schema migration failed."""


class Refusal(SolarisError):
    """A request we refuse, with the status and message the client should get."""

    status_code: int = 400
    message_key: str = ""
    error_type: str = "invalid_request_error"

    def __init__(self, message_key: str | None = None, **params: object) -> None:
        self.message_key = message_key or self.message_key
        self.params = params
        super().__init__(f"{self.message_key} {params}")


class IdentityRefused(Refusal):
    status_code = 400


class QuotaExhausted(Refusal):
    status_code = 429
    message_key = "quota_exhausted"
    error_type = "insufficient_quota"


class AccountInactive(Refusal):
    status_code = 403
    error_type = "permission_denied"
