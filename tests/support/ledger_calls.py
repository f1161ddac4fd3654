"""Calls reserved through the real ledger function, with the arguments most tests leave alone."""

from __future__ import annotations

from psycopg import AsyncConnection

from solaris_hooks.db import ledger

# At least 1 token, 1,000 for an account made by the call, a minute to live, one model and
# factor: what a test does not set itself.
usual_arguments: dict[str, object] = {
    "minimum_tokens": 1,
    "default_tokens": 1000,
    "ttl_s": 60,
    "model": "m",
    "factor": 0.5,
}


async def reserve(
    connection: AsyncConnection, user_id: str, call_id: str, wanted_tokens: int, **arguments: object
) -> ledger.Reservation:
    """ledger.reserve with usual_arguments, each overridden by `arguments`."""
    return await ledger.reserve(
        connection,
        user_id=user_id,
        call_id=call_id,
        wanted_tokens=wanted_tokens,
        **{**usual_arguments, **arguments},  # type: ignore[arg-type]
    )
