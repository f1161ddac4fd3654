"""Every error solaris_hooks raises on purpose.

    SolarisError
    ├── SettingsError          a bad `solaris_settings` value; stops the proxy at start-up
    ├── DatabaseUnavailable    Postgres cannot be reached (fail_mode decides what callers see)
    ├── MigrationError         the `solaris` schema could not be brought up to date
    │   └── MigrationChanged   … because a migration applied already was edited since
    ├── LinkInvalid            a signed link or cookie was tampered with or is malformed
    │   └── LinkExpired        … or was genuine but is past its expiry
    ├── AdminError             an admin request (API or CLI) that cannot be done as asked
    │   ├── NotFound           no such user or alert (404)
    │   ├── Conflict           it exists already, or is in the wrong state (409)
    │   └── InvalidInput       the request itself is wrong (422)
    └── Refusal                a call we will not let through; carries what the client is told
        ├── IdentityRefused    no usable end-user identity (400)
        │   └── IdentityForbidden  a key that may not speak for others named someone else (403)
        ├── QuotaExhausted     the allowance is used up (429 or 403, never retried)
        ├── RateLimited        too many requests or tokens this minute (429 with Retry-After)
        ├── AccountInactive    an admin blocked or disabled the user (403)
        ├── CallConflict       the call's reservation key is taken already (409; never a free ride)
        ├── RouteClosed        the route, or the model on a priced route, has no rule that opens it (403)
        └── CallUnbounded      a part of the request whose cost we cannot bound (400)

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


class Regrouped(SolarisError):
    """The ledger says the user's group is not the one the call was priced for (an admin
    changed it, or this process had not seen the user yet): the call is priced again."""

    def __init__(self, group: str | None) -> None:
        super().__init__(f"the user's group is {group!r}")
        self.group = group


class MigrationError(SolarisError):
    """A schema migration failed."""


class MigrationChanged(MigrationError):
    """A migration file differs from the one applied to this database; the message names it."""


class LinkInvalid(SolarisError):
    """A signed value (personal usage link, admin session) failed its check."""


class LinkExpired(LinkInvalid):
    """A signed value was genuine but its expiry has passed."""


class AdminError(SolarisError):
    """Carries the HTTP status and a stable code; the message is meant for a person."""

    status_code: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.code


class NotFound(AdminError):
    status_code = 404
    code = "not_found"


class Conflict(AdminError):
    status_code = 409
    code = "conflict"


class InvalidInput(AdminError):
    status_code = 422
    code = "invalid_request"


class Refusal(SolarisError):
    """A request we refuse, with the status and message the client should get."""

    status_code: int = 400
    message_key: str = ""
    error_type: str = "invalid_request_error"

    def __init__(self, message_key: str | None = None, **params: object) -> None:
        self.message_key = message_key or self.message_key
        self.params = params
        super().__init__(f"{self.message_key} {params}")

    @property
    def reason(self) -> str:
        """A short label for metrics and logs: quota_exhausted -> exhausted, account_blocked -> blocked."""
        return self.message_key.split("_", 1)[-1] if "_" in self.message_key else self.message_key


class IdentityRefused(Refusal):
    status_code = 400
    reason = "identity"


class IdentityForbidden(IdentityRefused):
    """A key outside trusted_keys (and not the master key) named an end user other than itself."""

    status_code = 403
    message_key = "identity_forbidden"
    error_type = "permission_denied"


class QuotaExhausted(Refusal):
    status_code = 429
    message_key = "quota_exhausted"
    error_type = "insufficient_quota"


class RateLimited(Refusal):
    status_code = 429
    error_type = "rate_limit_error"
    reason = "rate_limited"


class AccountInactive(Refusal):
    status_code = 403
    error_type = "permission_denied"


class CallConflict(Refusal):
    status_code = 409
    message_key = "call_conflict"
    error_type = "conflict"
    reason = "call_conflict"


class RouteClosed(Refusal):
    """A route (or a model on a priced route) that no setting opens; the message names the setting."""

    status_code = 403
    message_key = "route_closed"
    error_type = "permission_denied"
    reason = "route_closed"


class CallUnbounded(Refusal):
    """A request with a part whose cost cannot be bounded before the call: refused, not served on hope."""

    status_code = 400
    message_key = "part_unbounded"
    reason = "unbounded"
