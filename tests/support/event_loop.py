"""Async code under test, run from a synchronous test in an event loop of its own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg

from solaris_hooks.hooks import SolarisCallback
from solaris_hooks.quota.service import QuotaService
from solaris_hooks.settings import Settings

T = TypeVar("T")


def run_with_service(database_url: str, scenario: Callable[[QuotaService], Awaitable[T]], **settings: object) -> T:
    """`scenario(service)` on a QuotaService of its own with these settings; the service's
    pool lives and dies in the loop, so no connection outlives the test."""

    async def main() -> T:
        service = QuotaService(Settings(**settings), database_url)
        try:
            return await scenario(service)
        finally:
            await service.close()

    return asyncio.run(main())


async def settles_written(service: QuotaService, timeout_s: float = 10) -> None:
    """Once the batch loop has written every settle waiting in `service` (with leases on, a
    call's charge goes to the ledger with the next batch, not when its success event ends)."""
    deadline = time.monotonic() + timeout_s
    while len(service.settle_batches):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(service.settle_batches)} settle(s) not written within {timeout_s} s")
        await asyncio.sleep(0.01)


def run_with_connection(database_url: str, scenario: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
    """`scenario(connection)` on one autocommit connection, closed after."""

    async def main() -> T:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
            return await scenario(connection)

    return asyncio.run(main())


def run_with_callback(
    database_url: str, scenario: Callable[[SolarisCallback, QuotaService], Awaitable[T]], **settings: object
) -> T:
    """`scenario(callback, service)`: the callback LiteLLM would call, on a service of its own."""
    return run_with_service(database_url, lambda service: scenario(SolarisCallback(service), service), **settings)
