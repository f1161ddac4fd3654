"""The quota service: what the hooks and routes ask of the ledger, with its pool and sweeper.

One instance per proxy process, owned by the registered callback. The pool opens lazily
in the proxy's event loop (the callback is built while the proxy loads its config,
before any request), and reconnects by itself when Postgres comes back. Usage that
cannot be written while Postgres is unreachable goes to the spool and is replayed,
with one `database_recovered` log line, once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from solaris_hooks.db import ledger
from solaris_hooks.db.connection import connection_pool
from solaris_hooks.db.margins import PromptMargin
from solaris_hooks.exceptions import (
    AccountInactive,
    CallConflict,
    DatabaseUnavailable,
    IdentityRefused,
    QuotaExhausted,
    RateLimited,
    Refusal,
)
from solaris_hooks.logs import log_event
from solaris_hooks.quota import rate_limits
from solaris_hooks.quota.estimate import Plan, plan_call
from solaris_hooks.quota.identity import resolve_identity
from solaris_hooks.quota.metrics import Metrics
from solaris_hooks.quota.spool import Spool, SpoolEntry
from solaris_hooks.quota.title_calls import cap_title_completion, is_title_call
from solaris_hooks.quota.usage import Usage, chunk_text, count_text_tokens, delivered_text, reported_usage
from solaris_hooks.settings import Settings

# Bounds on background work, so a backlog is worked off in slices, never in one huge
# transaction.
expire_batch_size_max = 500
# How long a caller waits for a connection while the database is known to be down.
outage_wait_s = 0.5
prune_batch_size_max = 5000
# Calls between their pre-call hook and their success or failure event. Bounded: a call
# whose events never come must not hold memory for good.
calls_in_flight_max = 10_000


# Call types whose usage counts prompt tokens the way our estimate does: a provider reporting
# more than we estimated for them teaches the model's prompt margin.
_margin_call_types = frozenset(
    {
        "acompletion",
        "completion",
        "atext_completion",
        "text_completion",
        "aresponses",
        "responses",
        "anthropic_messages",
        "aembedding",
        "embedding",
    }
)


def new_call_id() -> str:
    """A reservation key of ours: unique per request, never taken from the client."""
    return f"solaris-{uuid.uuid4().hex}"


def adopt_call_id(data: dict, call_id: str) -> None:
    """Make `call_id` the call's id everywhere LiteLLM reports it to the success and failure
    events, replacing the one a client may have chosen (header `x-litellm-call-id`, body
    `litellm_call_id`). The proxy builds its logging object before the pre-call hook, so
    the object is updated too: its id is what the events carry."""
    data["litellm_call_id"] = call_id
    logging_obj = data.get("litellm_logging_obj")
    if logging_obj is None:
        return
    logging_obj.litellm_call_id = call_id
    details = getattr(logging_obj, "model_call_details", None)
    if isinstance(details, dict):
        details["litellm_call_id"] = call_id


def keep_our_callback_on(data: dict) -> None:
    """Drop the client's `no-log` switch: LiteLLM skips every logging callback of a call that
    sets it, ours too, so its settle would never come and the reservation would expire, a free
    call. The charge is not a log a client may turn off."""
    data.pop("no-log", None)


@dataclass
class CallInFlight:
    """What a call's success or failure needs and LiteLLM does not hand back to it."""

    user_id: str
    factor: float
    metered: bool  # False: the database was down and fail_mode: open let it through unreserved
    model: str | None = None
    prompt_tokens: int = 0  # our raw estimate, before the margin: the provider's count is compared to it
    prompt_bound_tokens: int = 0  # what the reservation allowed the provider to count
    learns_margin: bool = False
    reserved_tokens: int | None = None  # platform tokens held; None when unmetered
    # Priced calls (images, speech, transcriptions) and moderations: charged by the plan,
    # in raw tokens at `factor`, whatever usage the provider reports (or does not).
    charge_raw_tokens: int | None = None
    # Text a stream has delivered so far: what is charged if it ends without usage.
    delivered: list[str] = field(default_factory=list)
    renewed_at_s: float = field(default_factory=time.monotonic)

    def counted_raw_tokens(self, text: str = "") -> int:
        """Our own count of the call: the prompt estimate plus the text delivered, at most what
        the reservation (an upper bound of the call) covers: an estimate never overcharges."""
        counted = self.prompt_tokens + count_text_tokens(text or "".join(self.delivered), self.model)
        if self.reserved_tokens is not None and self.factor > 0:
            counted = min(counted, math.floor(self.reserved_tokens / self.factor))
        return counted


class QuotaService:
    def __init__(self, settings: Settings, database_url: str) -> None:
        self.settings = settings
        self._pool: AsyncConnectionPool = connection_pool(database_url, settings, check=self._check_connection)
        self.spool = Spool(settings.spool_path().resolve())
        self._calls: OrderedDict[str, CallInFlight] = OrderedDict()
        # Outage bookkeeping: when the current one began (monotonic s), how much outage the
        # replay loop has not reported yet, failures seen, and whether idle connections in
        # the pool may be ones the server closed.
        self._down_since: float | None = None
        self._unreported_down_s = 0.0
        self._failures = 0
        self._pool_suspect = False
        self._recovered = asyncio.Event()
        self._replay_lock = asyncio.Lock()
        self.metrics = Metrics()
        self._opened = False
        self._open_lock = asyncio.Lock()
        self._background: list[Callable[[], Coroutine[None, None, None]]] = []
        self._tasks: list[asyncio.Task] = []
        self._settings_listeners: list[Callable[[Settings], None]] = []
        # Learned prompt margins per model (solaris.model_margins), refreshed by the sweeper so
        # replicas learn from each other.
        self._margins: dict[str, PromptMargin] = {}
        self._side_tasks: set[asyncio.Task] = set()

    # -- connections ---------------------------------------------------------------

    def reload(self, settings: Settings) -> None:
        """Use new settings from the next call on (and tell whoever asked to know)."""
        self.settings = settings
        for listener in self._settings_listeners:
            listener(settings)

    def on_reload(self, listener: Callable[[Settings], None]) -> None:
        self._settings_listeners.append(listener)

    def run_in_background(self, loop_forever: Callable[[], Coroutine[None, None, None]]) -> None:
        """Register a task (the sweeper, the mailer) to run from start() until close()."""
        self._background.append(loop_forever)

    async def start(self) -> None:
        """Open the pool and start the background tasks; idempotent, cheap after the first call."""
        if self._opened:
            return
        async with self._open_lock:
            if self._opened:
                return
            # wait=False: a proxy must come up even while Postgres is still starting.
            await self._pool.open(wait=False)
            loop = asyncio.get_running_loop()
            self._tasks = [
                loop.create_task(task(), name=f"solaris-{getattr(task, '__name__', 'task')}")
                for task in self._background
            ]
            self._opened = True
            self._in_background(self._load_margins_quietly())

    async def _load_margins_quietly(self) -> None:
        # The sweeper loads them once the database answers.
        with contextlib.suppress(DatabaseUnavailable):
            await self.load_margins()

    async def close(self) -> None:
        # Charges of abandoned streams and reservation extensions finish first.
        await asyncio.gather(*self._side_tasks, return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._pool.close()
        self._opened = False

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        await self.start()
        # While the database is known to be down, a caller waits only briefly for a
        # connection: one call found the outage after db_timeout_s, the ones after it are
        # answered (503, or let through with fail_mode open) in a fraction of that. The
        # first operation that succeeds ends the outage, and with it the short wait.
        timeout_s = min(self.settings.db_timeout_s, outage_wait_s) if self._down_since is not None else None
        try:
            async with self._pool.connection(timeout=timeout_s) as connection:
                yield connection
        except (PoolTimeout, psycopg.OperationalError, psycopg.InterfaceError) as error:
            self._mark_down()
            raise DatabaseUnavailable(str(error)) from error
        # Only once the work is done: during an outage the pool can still hand out a
        # connection the server closed, which fails only when used.
        self._mark_up()

    def _mark_down(self) -> None:
        self._failures += 1
        self._pool_suspect = True
        if self._down_since is None:
            self._down_since = time.monotonic()

    def _mark_up(self) -> None:
        if self._down_since is not None:
            self._unreported_down_s += time.monotonic() - self._down_since
            self._down_since = None
            self._recovered.set()  # replay the spool now, not at the next interval

    async def _check_connection(self, connection: AsyncConnection) -> None:
        """The pool's check before handing out a connection. A check is one more round trip
        per ledger operation (~2 ms of LiteLLM's busy loop, see docs/performance.md), so it
        runs only from a failure until the idle connections were all checked after recovery."""
        if self._pool_suspect:
            await AsyncConnectionPool.check_connection(connection)

    # -- the request path ----------------------------------------------------------

    async def reserve_call(self, data: dict, call_type: str, key: object, cache: object = None) -> str | None:
        """Reserve the worst case of a call and bound its completion; raises a Refusal.

        Returns the user charged, or None when the database is down and fail_mode is
        open (the call then goes through unmetered).
        """
        started = time.perf_counter()
        adopt_call_id(data, new_call_id())
        keep_our_callback_on(data)
        try:
            return await self._reserve_call(data, call_type, key, cache)
        except Refusal as refusal:
            self.metrics.refusals.labels(reason=refusal.reason).inc()
            if isinstance(refusal, IdentityRefused):
                # No user to name: the identity itself may be what was wrong (never logged).
                log_event(
                    "refused",
                    user_id=None,
                    call_id=str(data.get("litellm_call_id") or ""),
                    reason=refusal.reason,
                    code=refusal.message_key,
                )
            raise
        except DatabaseUnavailable:
            self.metrics.refusals.labels(reason="database_unavailable").inc()
            raise
        finally:
            self.metrics.pre_call_seconds.observe(time.perf_counter() - started)

    async def _reserve_call(self, data: dict, call_type: str, key: object, cache: object) -> str | None:
        """`key` is LiteLLM's UserAPIKeyAuth: its user_id, token (key hash) and key_alias."""
        settings = self.settings
        # Normalised, named only by a key allowed to (else a 403), never a shared default account.
        user_id = resolve_identity(
            data,
            key,
            header_name=settings.identity_header,
            local_part_case=settings.identity_local_part_case,
            anonymous_calls=settings.anonymous_calls,
            trusted_keys=settings.trusted_keys,
        )
        call_id = str(data["litellm_call_id"])
        model = str(data.get("model") or "") or None
        margin = self._margins.get(model or "", PromptMargin()).widened(
            PromptMargin(ratio=settings.prompt_margin_for(model))
        )
        # A free title call is still reserved and settled, at factor 0: the ledger shows its raw
        # tokens. Only LibreChat's whole title request shape counts, its answer is capped, and a
        # long prompt makes it an ordinary call.
        free = settings.title_calls == "free" and is_title_call(data, call_type, settings)
        if free:
            cap_title_completion(data, settings)
        factor = 0.0 if free else settings.factor_for(model)
        plan = self._plan(data, call_type, factor, margin)
        if free and plan.prompt_tokens > settings.title_prompt_tokens_max:
            free, factor = False, settings.factor_for(model)
            plan = self._plan(data, call_type, factor, margin)
        if plan.free:
            # A route the admin opened with `free` (e.g. `routes: {moderations: free}`): nothing
            # to reserve, nothing to charge.
            log_event("free_route", user_id=user_id, call_id=call_id, route=plan.route)
            return user_id
        try:
            await rate_limits.enforce(cache, user_id, plan.wanted_tokens, settings)
        except RateLimited as refusal:
            log_event(
                "refused",
                user_id=user_id,
                call_id=call_id,
                reason=refusal.reason,
                code=refusal.message_key,
                retry_after_s=refusal.params["retry_after_s"],
            )
            raise
        try:
            async with self.connection() as connection:
                reservation = await ledger.reserve(
                    connection,
                    user_id=user_id,
                    call_id=call_id,
                    wanted_tokens=plan.wanted_tokens,
                    minimum_tokens=plan.minimum_tokens,
                    default_tokens=settings.default_tokens_per_user,
                    ttl_s=settings.reservation_ttl_s,
                    model=model,
                    factor=plan.factor,
                    thresholds=settings.alert_thresholds,
                )
        except DatabaseUnavailable as error:
            if settings.fail_mode == "open":
                log_event("fail_open", logging.WARNING, user_id=user_id, call_id=call_id, error=str(error))
                # Charged when it succeeds: directly if the database is back by then, else
                # through the spool.
                self._remember(
                    call_id,
                    CallInFlight(
                        user_id,
                        plan.factor,
                        metered=False,
                        model=model,
                        prompt_tokens=plan.prompt_tokens,
                        charge_raw_tokens=plan.settle_raw_tokens(plan.wanted_tokens),
                    ),
                )
                return None
            log_event("database_unavailable", logging.ERROR, user_id=user_id, call_id=call_id, error=str(error))
            raise
        self._apply(reservation, plan, data, user_id, call_id)
        self._remember(
            call_id,
            CallInFlight(
                user_id,
                plan.factor,
                metered=True,
                model=model,
                prompt_tokens=plan.prompt_tokens,
                prompt_bound_tokens=plan.prompt_bound_tokens,
                reserved_tokens=reservation.reserved,
                learns_margin=call_type in _margin_call_types and not free,
                charge_raw_tokens=plan.settle_raw_tokens(reservation.reserved),
            ),
        )
        return user_id

    def _plan(self, data: dict, call_type: str, factor: float, margin: PromptMargin) -> Plan:
        """The call's plan, its prompt bounded by the model's margin (known once it is counted)."""
        plan = plan_call(data, call_type, factor, self.settings, margin.ratio)
        if margin.excess_tokens and plan.prompt_tokens:
            plan = dataclasses.replace(plan, prompt_margin=margin.multiplier(plan.prompt_tokens))
        return plan

    def _remember(self, call_id: str, call: CallInFlight) -> None:
        if not call_id:
            return
        self._calls[call_id] = call
        if len(self._calls) > calls_in_flight_max:
            forgotten_id, forgotten = self._calls.popitem(last=False)
            if not forgotten.metered:
                log_event(
                    "unmetered_call_forgotten",
                    logging.WARNING,
                    call_id=forgotten_id,
                    user_id=forgotten.user_id,
                    calls_in_flight_max=calls_in_flight_max,
                )

    def _apply(self, reservation: ledger.Reservation, plan: Plan, data: dict, user_id: str, call_id: str) -> None:
        if reservation.outcome == "reserved":
            plan.write_bound(data, reservation.reserved)
            return
        if reservation.outcome == "duplicate":
            # Our keys are fresh per request, so this means something reused one: never let a
            # call ride on another call's reservation.
            log_event("refused", logging.ERROR, user_id=user_id, call_id=call_id, reason="duplicate_call_id")
            raise CallConflict()
        fields = {
            "credited_tokens": reservation.credited_tokens,
            "used_tokens": reservation.debited_tokens,
            "reserved_tokens": reservation.reserved_tokens,
            "credits_email": self.settings.credits_email,
        }
        log_event(
            "refused",
            user_id=user_id,
            call_id=call_id,
            reason=reservation.outcome,
            wanted_tokens=plan.wanted_tokens,
            remaining_tokens=reservation.remaining_tokens,
        )
        if reservation.outcome == "exhausted":
            # Past the last warning it is "used up" (and the block e-mail goes out, see
            # solaris.reserve); before it, only this call is too big for what is left.
            last_warning = max(self.settings.alert_thresholds, default=1.0)
            if reservation.debited_tokens >= reservation.credited_tokens * last_warning:
                raise QuotaExhausted(**fields)
            raise QuotaExhausted(
                "quota_insufficient",
                needed_tokens=plan.minimum_tokens,
                remaining_tokens=max(0, reservation.remaining_tokens),
                **fields,
            )
        raise AccountInactive(f"account_{reservation.outcome}", **fields)

    async def settle_response(
        self, call_id: str, response_obj: object, model: str | None, cost_usd: float | None
    ) -> ledger.Resolution | None:
        """Charge a call that succeeded, by the provider's usage or, when it reports none, by our
        own count of the prompt and of what was delivered (never zero: invariant 8)."""
        call = self._calls.get(call_id)
        if call is not None and call.charge_raw_tokens is not None:
            return await self.settle_call(call_id, call.charge_raw_tokens, model, cost_usd)
        usage = reported_usage(response_obj)
        if usage is None:
            if call is None:
                log_event("settle_skipped", logging.WARNING, call_id=call_id, reason="no usage and no call in flight")
                return None
            usage = Usage(raw_tokens=call.counted_raw_tokens(delivered_text(response_obj)), prompt_tokens=None)
            log_event(
                "usage_counted",
                logging.WARNING,
                user_id=call.user_id,
                call_id=call_id,
                raw_tokens=usage.raw_tokens,
                reason="the provider reported no usage",
            )
        return await self.settle_call(call_id, usage.raw_tokens, model, cost_usd, usage.prompt_tokens)

    async def settle_call(
        self,
        call_id: str,
        raw_tokens: int,
        model: str | None,
        cost_usd: float | None,
        reported_prompt_tokens: int | None = None,
    ) -> ledger.Resolution | None:
        """Charge a call that succeeded. None: the database is unreachable and the usage
        went to the spool, to be charged by the replay (never lost, never charged twice)."""
        call = self._calls.pop(call_id, None)
        entry = SpoolEntry(
            call_id=call_id,
            raw_tokens=raw_tokens,
            model=model,
            cost_usd=cost_usd,
            user_id=call.user_id if call else None,
            factor=call.factor if call else None,
        )
        try:
            if call is not None and not call.metered:
                return await self.charge_spooled(entry)
            async with self.connection() as connection:
                resolution = await ledger.resolve(
                    connection,
                    call_id=call_id,
                    kind="settle",
                    raw_tokens=raw_tokens,
                    model=model,
                    cost_usd=cost_usd,
                    thresholds=self.settings.alert_thresholds,
                )
                if call is not None and reported_prompt_tokens is not None:
                    await self._learn_margin(connection, call, reported_prompt_tokens)
        except DatabaseUnavailable as error:
            if self.spool.append(entry):
                log_event(
                    "usage_spooled",
                    logging.WARNING,
                    user_id=entry.user_id,
                    call_id=call_id,
                    raw_tokens=raw_tokens,
                    metered=call.metered if call else None,
                    error=str(error),
                )
            return None
        if resolution.charged_tokens:
            self.metrics.charged_tokens.labels(model=model or "unknown").inc(resolution.charged_tokens)
        if resolution.state != "settled" or (call is None and not resolution.charged_tokens):
            log_event("settle_ignored", logging.WARNING, call_id=call_id, state=resolution.state, raw_tokens=raw_tokens)
        return resolution

    async def _learn_margin(self, connection: AsyncConnection, call: CallInFlight, reported_tokens: int) -> None:
        """A provider that counted more prompt tokens than the reservation allowed for widens the
        model's margin (running maxima, persisted), so the next reservations bound it too."""
        if not call.learns_margin or not call.model or call.prompt_tokens <= 0:
            return
        learned = self._margins.get(call.model, PromptMargin())
        if reported_tokens <= call.prompt_bound_tokens or learned.covers(call.prompt_tokens, reported_tokens):
            return
        margin = await ledger.learn_margin(connection, call.model, reported_tokens, call.prompt_tokens)
        self._margins[call.model] = learned.widened(margin)
        log_event(
            "margin_learned",
            logging.WARNING,
            model=call.model,
            ratio=self._margins[call.model].ratio,
            excess_tokens=self._margins[call.model].excess_tokens,
            reported_prompt_tokens=reported_tokens,
            estimated_prompt_tokens=call.prompt_tokens,
        )

    async def settle_delivered(self, call_id: str) -> ledger.Resolution | None:
        """A call that ended without a result after delivering content (a stream that broke or
        was abandoned): charged our count of its prompt and of what it delivered."""
        call = self._calls.get(call_id)
        if call is None:
            return None
        raw_tokens = call.counted_raw_tokens()
        log_event(
            "usage_counted",
            logging.WARNING,
            user_id=call.user_id,
            call_id=call_id,
            raw_tokens=raw_tokens,
            reason="the stream ended without usage after delivering content",
        )
        return await self.settle_call(call_id, raw_tokens, call.model, None)

    async def charge_spooled(self, entry: SpoolEntry) -> ledger.Resolution:
        """Charge usage that was not charged when it happened; idempotent per call id."""
        async with self.connection() as connection:
            resolution = await ledger.settle_spooled(
                connection,
                call_id=entry.call_id,
                raw_tokens=entry.raw_tokens,
                model=entry.model,
                cost_usd=entry.cost_usd,
                user_id=entry.user_id,
                factor=entry.factor,
                spooled_at=entry.spooled_at or None,
                default_tokens=self.settings.default_tokens_per_user,
                thresholds=self.settings.alert_thresholds,
            )
        if resolution.charged_tokens:
            self.metrics.charged_tokens.labels(model=entry.model or "unknown").inc(resolution.charged_tokens)
        if resolution.state == "unknown":
            log_event("spooled_usage_unmatched", logging.ERROR, call_id=entry.call_id, raw_tokens=entry.raw_tokens)
        return resolution

    async def release_call(self, call_id: str) -> ledger.Resolution:
        call = self._calls.get(call_id)
        if call is None or not call.metered:
            # Nothing this process reserved: a refused call, one the database was down for
            # (its 503 is not held up by a release that would wait for the pool too), an
            # unmetered one, or a repeated failure event. A reservation forgotten past
            # calls_in_flight_max expires instead.
            self._calls.pop(call_id, None)
            return ledger.Resolution(state="unknown", charged_tokens=0)
        if call.delivered:
            # It failed after content reached the client: what was delivered is owed.
            return await self.settle_delivered(call_id) or ledger.Resolution(state="unknown", charged_tokens=0)
        self._calls.pop(call_id, None)
        async with self.connection() as connection:
            return await ledger.resolve(connection, call_id=call_id, kind="release")

    # -- streams -------------------------------------------------------------------

    async def meter_stream(self, stream: AsyncIterator[object], call_id: str) -> AsyncIterator[object]:
        """Pass a stream through, noting what it delivers and keeping its reservation alive.

        A stream that breaks or is abandoned after delivering content is charged what it
        delivered (the success event, if one still comes, finds the call settled). While
        chunks flow, the reservation's expiry is pushed forward, so the sweeper never returns
        tokens of a call that is still running.
        """
        call = self._calls.get(call_id)
        if call is None or not call.metered:
            async for chunk in stream:
                yield chunk
            return
        renew_every_s = self.settings.reservation_ttl_s / 3
        completed = False
        try:
            async for chunk in stream:
                text = chunk_text(chunk)
                if text:
                    call.delivered.append(text)
                if time.monotonic() - call.renewed_at_s > renew_every_s:
                    call.renewed_at_s = time.monotonic()
                    self._in_background(self._extend(call_id))
                yield chunk
            completed = True
        except Exception:
            if call.delivered:
                await self.settle_delivered(call_id)
            raise
        finally:
            if not completed and call.delivered and call_id in self._calls:
                # The client went away (GeneratorExit or cancellation): no await is safe here.
                self._in_background(self.settle_delivered(call_id))

    async def _extend(self, call_id: str) -> None:
        try:
            async with self.connection() as connection:
                await ledger.extend_reservation(connection, call_id, self.settings.reservation_ttl_s)
        except DatabaseUnavailable as error:
            log_event("extend_failed", logging.WARNING, call_id=call_id, error=str(error))

    def _in_background(self, work: Coroutine[None, None, object]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._side_tasks.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._side_tasks.discard)

    async def load_margins(self) -> None:
        async with self.connection() as connection:
            learned = await ledger.margins(connection)
        for model, margin in learned.items():
            self._margins[model] = self._margins.get(model, PromptMargin()).widened(margin)

    # -- background ----------------------------------------------------------------

    async def replay_once(self) -> int:
        """After an outage, probe the database and check the pool's idle connections; then
        charge whatever waits in the spool. Returns the entries charged; raises
        DatabaseUnavailable while Postgres is still unreachable."""
        if self._down_since is None and not self._pool_suspect and not self.spool.pending():
            return 0
        async with self._replay_lock:  # one replay at a time in this process
            async with self.connection() as connection:
                await connection.execute("SELECT 1")
            if self._pool_suspect:
                failures = self._failures
                await self._pool.check()  # drops the idle connections the server closed
                if failures == self._failures:
                    self._pool_suspect = False
            replayed = await self.spool.replay(self.charge_spooled) if self.spool.pending() else 0
            if self._unreported_down_s:
                log_event("database_recovered", down_s=round(self._unreported_down_s, 3), replayed_entries=replayed)
                self._unreported_down_s = 0.0
            elif replayed:
                log_event("spool_replayed", replayed_entries=replayed)
            return replayed

    async def replay_forever(self) -> None:
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._recovered.wait(), self.settings.replay_interval_s)
            self._recovered.clear()
            try:
                await self.replay_once()
            except DatabaseUnavailable:
                pass  # still down: every call that meets it logs it already
            except Exception as error:  # a replay loop that dies silently would leave usage uncharged
                log_event("replay_failed", logging.ERROR, error=repr(error))

    async def sweep_once(self) -> int:
        # Replay first, so a settle that waited in the spool finds its reservation still
        # pending instead of expired (a late settle is charged right either way).
        await self.replay_once()
        expired_total = 0
        async with self.connection() as connection:
            while True:
                expired = await ledger.expire_due(connection, expire_batch_size_max)
                expired_total += expired
                if expired < expire_batch_size_max:
                    break
            pruned_total = 0
            while True:
                pruned = await ledger.prune_resolved(
                    connection, self.settings.reservation_retention_s, prune_batch_size_max
                )
                pruned_total += pruned
                if pruned < prune_batch_size_max:
                    break
        await self.load_margins()
        if expired_total:
            log_event("reservations_expired", count=expired_total)
        if pruned_total:
            log_event("reservations_pruned", count=pruned_total)
        return expired_total

    async def sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval_s)
            try:
                await self.sweep_once()
            except DatabaseUnavailable as error:
                log_event("sweep_failed", logging.WARNING, error=str(error))
            except Exception as error:  # a sweeper that dies silently would strand reservations
                log_event("sweep_failed", logging.ERROR, error=repr(error))
