"""`make soak`: minutes of mixed load on two proxies while Postgres stops and a proxy is killed.

    python -m bench.soak [--minutes 5]     python -m bench.soak --quick   (about one minute)

Real parts only: a pgserver Postgres of our own (with SOLARIS_DATABASE_URL or DATABASE_URL, a scratch
database on that server, never stopped), the fake provider, an aiosmtpd catcher and two
`solaris run` proxies on one database: a with `fail_mode: open`, b with `closed`, so one
run covers both outage paths. Then it waits for reservations, spool and outbox to settle,
checks the ledger against what the clients saw, prints a table, appends it to
test-artifacts/reliability.txt and exits non-zero if a check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import psutil
import psycopg
import yaml

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from solaris_hooks.admin.doctor import diagnose, overspend_invariant  # noqa: E402
from tests.support.fake_provider import FakeProvider  # noqa: E402
from tests.support.harness import (
    MailCatcher,
    ProxyProcess,
    assert_ledger_consistent,
    free_port,  # noqa: E402
    scratch_database,
    wait_for,
)

artifacts_dir = Path(__file__).resolve().parent.parent / "test-artifacts"
master_key = "sk-solaris-soak-" + uuid.uuid4().hex
users = [f"soak-{number:02d}@example.com" for number in range(20)]
# These only ever reach the fail-closed proxy: never unmetered, so used ≤ credited to the token.
closed_only = set(users[-4:])
factors = {"fake-model": 0.376, "fake-premium": 1.5}
allowance = 300  # small: users cross 80/95/100 % within seconds and get refused
concurrency = 16
settings = {
    "default_tokens_per_user": allowance,
    "conversion_factor": factors["fake-model"],
    "model_factors": {"fake-premium": factors["fake-premium"]},
    "credits_email": "creditos@example.com",
    "completion_tokens_default": 150,
    # Short, so what the kill strands comes back while we settle; still far longer than a
    # call (≤ 1.5 s) plus an outage, so a spooled settle finds its reservation pending.
    "reservation_ttl_s": 20,
    "sweep_interval_s": 1,
    "replay_interval_s": 0.5,
    "db_timeout_s": 2,
    # Mail goes out fast, and an alert left claimed by a fault is taken over soon.
    "mail_poll_interval_s": 0.5,
    "mail_lease_s": 10,
    "mail_backoff_base_s": 1,
    "mail_backoff_max_s": 5,
}
# Our events that must never appear: usage or mail lost, a loop that died, a settle dropped.
bad_events = {
    "usage_lost",
    "spool_entry_rejected",
    "spooled_usage_unmatched",
    "replay_failed",
    "settle_ignored",
    "settle_skipped",
    "unmetered_call_forgotten",
    "mail_dead",
    "spool_line_unreadable",
}


def charged(raw_tokens: int, factor: float) -> int:
    """ceil(raw × factor) in exact decimals, as solaris.resolve rounds."""
    return math.ceil(Decimal(raw_tokens) * Decimal(str(factor)))


def record(text: str) -> None:
    """What tests/support/suite.py's record_figure appends, without printing it."""
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    with (artifacts_dir / "reliability.txt").open("a", encoding="utf-8") as figures:
        figures.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {text}\n")


def query(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as connection:
        return connection.execute(sql).fetchall()


@dataclass
class Call:
    user: str
    proxy: int
    model: str
    stream: bool
    started: float
    ended: float = 0.0
    outcome: str = "served"  # refused (429), unavailable (503), failed (asked [[fail=500]]), cut, unexpected: …
    raw_tokens: int = 0
    call_id: str = ""  # x-litellm-call-id: the ledger rows of the call carry it


@contextmanager
def postgres():
    """(url, pgserver or None): ours is stopped and started as StoppablePostgres
    (tests/support/harness.py) does; a given one never."""
    given = os.environ.get("SOLARIS_DATABASE_URL") or os.environ.get("DATABASE_URL")  # as bench/run.py
    if given:
        yield given, None
        return
    import pgserver

    with tempfile.TemporaryDirectory(prefix="solaris-soak-") as directory:
        server = pgserver.get_server(Path(directory) / "pgdata", cleanup_mode="stop")
        try:
            yield server.get_uri(), server
        finally:
            server.ensure_postgres_running()  # a fault cut short may have left it stopped
            server.cleanup()


def stop_postgres(server) -> None:
    from pgserver._commands import pg_ctl

    # -m fast ends the proxies' sessions, as a crash or a restart of the server would.
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=30)


class Proxy:
    """One `solaris run`; a restart keeps its port, config and data dir (so its spool)."""

    def __init__(self, name: str, fail_mode: str, url: str, provider: str, mail_port: int, work: Path) -> None:
        self.name, self.port, self.data_dir = name, free_port(), work / name
        self.data_dir.mkdir(parents=True)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.config = self.data_dir / "litellm-config.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "model_list": [
                        {
                            "model_name": model,
                            "litellm_params": {"model": f"openai/{model}", "api_base": provider, "api_key": "fake-key"},
                        }
                        for model in factors
                    ],
                    "router_settings": {"num_retries": 0},
                    "litellm_settings": {"callbacks": "solaris_hooks.callback.quota_callback", "num_retries": 0},
                    "solaris_settings": {**settings, "fail_mode": fail_mode},
                }
            ),
            encoding="utf-8",
        )
        self.env = {
            "SOLARIS_DATABASE_URL": url,
            "LITELLM_MASTER_KEY": master_key,
            "SOLARIS_DATA_DIR": str(self.data_dir),
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(mail_port),
            "SMTP_SECURITY": "none",
            "SMTP_FROM": "IA SOLARIS <quota@solaris.example>",
        }
        # The machine's own overrides must not change what the checks expect.
        self.env.update(
            dict.fromkeys(
                (
                    "DATABASE_URL",
                    "DEFAULT_TOKENS_PER_USER",
                    "CONVERSION_FACTOR",
                    "CREDITS_EMAIL",
                    "SOLARIS_PUBLIC_URL",
                    "SOLARIS_CONFIG",
                    "ADMIN_EMAILS",
                )
            )
        )
        # A fresh clone has no test-artifacts/ until something makes it: the proxy's log opens there.
        artifacts_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = artifacts_dir / f"soak-{name}.log"
        self.log_path.unlink(missing_ok=True)
        self.process: ProxyProcess | None = None

    def start(self) -> None:
        self.process = ProxyProcess(self.config, self.env, self.log_path, port=self.port).wait_ready()

    def tree(self) -> list[psutil.Process]:
        parent = psutil.Process(self.process.process.pid)
        return [parent, *parent.children(recursive=True)]

    def rss_mb(self) -> float:
        return sum(process.memory_info().rss for process in self.tree()) / 2**20

    def kill(self) -> int:
        """SIGKILL the whole tree (solaris run and LiteLLM), children first; returns how many."""
        tree = self.tree()
        for process in reversed(tree):
            process.kill()
        psutil.wait_procs(tree, timeout=15)
        self.process.stop()  # reaps it and closes the log
        return len(tree)

    def events(self) -> list[dict]:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return [json.loads(line) for line in text.splitlines() if line.startswith('{"event"')]


class TimedCatcher(MailCatcher):
    """Notes when each message arrived, to tell a redelivery that a fault caused."""

    async def handle_DATA(self, server, session, envelope) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        self.received[-1]["X-Received-At"] = str(time.monotonic())
        return answer


class Soak:
    def __init__(self, proxies: list[Proxy], server, duration_s: float, seed: int) -> None:
        self.proxies, self.server, self.duration_s, self.rng = proxies, server, duration_s, random.Random(seed)
        # An outage of 5 s every minute; in shorter runs every third of the run, so there are two.
        self.outage_every_s, self.outage_s = min(60.0, duration_s / 3), 5.0
        self.calls: list[Call] = []
        self.in_flight, self.up = [0, 0], [True, True]
        self.credits_confirmed: Counter = Counter()  # answered 200: committed
        self.credits_unknown: Counter = Counter()  # anything else: committed or not
        self.outages: list[tuple[float, float]] = []  # (stopped, started again), monotonic
        self.kill: dict = {}
        self.rss: dict[str, list[float]] = defaultdict(list)

    async def run(self) -> None:
        self.started = time.monotonic()
        self.deadline = self.started + self.duration_s
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=64)) as http:
            clients = [
                openai.AsyncOpenAI(
                    base_url=f"{proxy.base_url}/v1", api_key=master_key, max_retries=0, timeout=60, http_client=http
                )
                for proxy in self.proxies
            ]
            await asyncio.gather(
                *(self.worker(clients) for _ in range(concurrency)),
                self.credits(http),
                self.faults(),
                self.sample_rss(),
            )

    def pick_proxy(self, user: str | None = None) -> int:
        return self.rng.choice([index for index in (0, 1) if self.up[index] and user not in closed_only] or [1])

    async def worker(self, clients: list[openai.AsyncOpenAI], calls_max: int = 100_000) -> None:
        for _ in range(calls_max):
            if time.monotonic() >= self.deadline:
                return
            user = self.rng.choice(users)
            index = self.pick_proxy(user)
            self.in_flight[index] += 1
            try:
                call = await self.one_call(clients[index], index, user)
            finally:
                self.in_flight[index] -= 1
            self.calls.append(call)
            # Think time: a steady load rather than two saturated shared cores.
            await asyncio.sleep(self.rng.uniform(0.2, 0.6))

    async def one_call(self, client: openai.AsyncOpenAI, index: int, user: str) -> Call:
        rng = self.rng
        call = Call(
            user, index, "fake-premium" if rng.random() < 0.15 else "fake-model", rng.random() < 0.3, time.monotonic()
        )
        # The fake streams " ok" per token, and LiteLLM cuts a stream that repeats a chunk
        # 100 times (REPEATED_STREAMING_CHUNK_LIMIT): streamed answers stay below that.
        tokens = rng.randint(5, 80 if call.stream else 120)
        text = f"[[tokens={tokens}]] soak"
        if rng.random() < 0.3:  # slow calls: more are in flight when a fault hits
            text += f" [[sleep={rng.uniform(0.2, 1.5):.2f}]]"
        fail = rng.random() < 0.05
        text += " [[fail=500]]" if fail else ""
        extra = {"max_tokens": tokens + rng.randint(0, 40)} if rng.random() < 0.7 else {}
        if call.stream:
            extra["stream_options"] = {"include_usage": True}
        try:
            response = await client.chat.completions.with_raw_response.create(
                model=call.model,
                messages=[{"role": "user", "content": text}],
                stream=call.stream,
                extra_headers={"x-litellm-end-user-id": user},
                **extra,
            )
            call.call_id, answer = response.headers.get("x-litellm-call-id", ""), response.parse()
            usage = None if call.stream else answer.usage
            if call.stream:
                async for chunk in answer:
                    usage = chunk.usage or usage
            call.raw_tokens = usage.total_tokens if usage else 0
            call.outcome = "served" if usage else "unexpected: no usage"
        except openai.APIStatusError as error:
            status = error.status_code
            call.outcome = (
                "refused"
                if status == 429
                else "unavailable"
                if status == 503
                else "failed"
                if fail and status == 500
                else f"unexpected: {status}"
            )
        except (openai.APIConnectionError, httpx.HTTPError):
            call.outcome = "cut"
            await asyncio.sleep(0.5)  # a dead port is not hammered
        except Exception as error:  # shown in the table: anything else is a finding
            call.outcome = f"unexpected: {type(error).__name__}: {str(error)[:80]}"
        call.ended = time.monotonic()
        return call

    async def credits(self, http: httpx.AsyncClient, every_s: float = 0.5) -> None:
        """An admin credits someone refused lately, so users come back and cross thresholds again."""
        while time.monotonic() + every_s < self.deadline:
            await asyncio.sleep(every_s)
            refused = sorted({call.user for call in self.calls[-200:] if call.outcome == "refused"})
            if not refused:
                continue
            user, tokens = self.rng.choice(refused), self.rng.randint(200, 500)
            try:
                response = await http.post(
                    f"{self.proxies[self.pick_proxy()].base_url}/solaris/users/{user}/add-tokens",
                    json={"tokens": tokens, "reason": "soak"},
                    headers={"Authorization": f"Bearer {master_key}", "Idempotency-Key": uuid.uuid4().hex},
                )
                committed = response.status_code == 200
            except httpx.HTTPError:
                committed = False
            (self.credits_confirmed if committed else self.credits_unknown)[user] += tokens

    def schedule(self) -> list[tuple[float, str]]:
        """Outages only on a server we own; the kill halfway between the two outages nearest the middle."""
        every, end = self.outage_every_s, self.duration_s - self.outage_s - 5
        outages = [(every * n, "outage") for n in range(1, int(end / every) + 1)] if self.server else []
        kill_at = min(self.duration_s / 2, (max(0, math.ceil(self.duration_s / 2 / every) - 1) + 0.5) * every)
        return sorted([*outages, (kill_at, "kill")])

    async def faults(self) -> None:
        # One after the other: a proxy restarting while Postgres is down exits at its
        # migration, by design; that is not what this soak is about.
        for at, what in self.schedule():
            await asyncio.sleep(max(0.0, self.started + at - time.monotonic()))
            if what == "outage":
                stopped = time.monotonic()
                try:
                    await asyncio.to_thread(stop_postgres, self.server)
                    await asyncio.sleep(self.outage_s)
                finally:
                    await asyncio.to_thread(self.server.ensure_postgres_running)
                self.outages.append((stopped, time.monotonic()))
                continue
            proxy = self.proxies[0]
            for _ in range(100):  # up to 10 s for calls in flight on it (there nearly always are)
                if self.in_flight[0] >= 3:
                    break
                await asyncio.sleep(0.1)
            self.up[0] = False  # new calls go to b; those in flight on a are cut
            self.kill = {"in_flight": self.in_flight[0], "at": time.monotonic()}
            self.kill["processes"] = await asyncio.to_thread(proxy.kill)
            await asyncio.to_thread(proxy.start)
            self.kill["restarted"] = time.monotonic()
            self.up[0] = True

    async def sample_rss(self, every_s: float = 5.0) -> None:
        """Each proxy's RSS; the first 15 s are left out: they show imports and pools, not growth."""
        while time.monotonic() + every_s < self.deadline:
            await asyncio.sleep(every_s)
            for index, proxy in enumerate(self.proxies):
                try:
                    if time.monotonic() - self.started > min(15.0, self.duration_s / 4) and self.up[index]:
                        self.rss[proxy.name].append(proxy.rss_mb())
                except psutil.Error:  # a LiteLLM worker came or went between listing and reading
                    pass


def settle(url: str, proxies: list[Proxy]) -> tuple[str, str, bool]:
    """Wait until reservations are resolved (the kill's expire after reservation_ttl_s), every
    spool segment is replayed and every alert is sent."""
    started = time.monotonic()
    try:
        wait_for(
            lambda: not query(url, "SELECT 1 FROM solaris.reservations WHERE state = 'pending'"),
            settings["reservation_ttl_s"] + 60,
            0.5,
            what="no pending reservation",
        )
        wait_for(
            lambda: not any(any((proxy.data_dir / "spool").glob("*.spool")) for proxy in proxies),
            60,
            0.5,
            what="every spool segment replayed",
        )
        wait_for(
            lambda: not query(url, "SELECT 1 FROM solaris.alerts WHERE status IN ('pending', 'sending', 'failed')"),
            settings["mail_lease_s"] + 60,
            0.5,
            what="the outbox drained",
        )
    except TimeoutError as error:
        return "reservations, spool and outbox settled", str(error), False
    time.sleep(2)  # a duplicate e-mail would arrive by now
    return "reservations, spool and outbox settled", f"in {time.monotonic() - started:.0f} s", True


def check(soak: Soak, url: str, proxies: list[Proxy], catcher: TimedCatcher) -> list[tuple[str, str, bool | None]]:
    calls, kill, rows = soak.calls, soak.kill, []
    outcomes = Counter(call.outcome for call in calls)
    # In flight at the kill, or served in the 2 s before it (its settle may not have run yet).
    at_kill = [call for call in calls if call.proxy == 0 and call.started < kill["at"] <= call.ended + 2]
    unexpected = Counter(
        call.outcome
        for call in calls
        if call.outcome.startswith("unexpected") or (call.outcome == "cut" and call not in at_kill)
    )
    rows.append(
        (
            "calls",
            f"{len(calls)} ({len(calls) / soak.duration_s:.1f}/s; {sum(c.proxy == 0 for c in calls)} via "
            f"a, open; {sum(c.stream for c in calls)} streamed, {sum(c.model == 'fake-premium' for c in calls)} "
            "on fake-premium at factor 1.5)",
            None,
        )
    )
    rows.append(
        (
            "served / refused 429 / 503 / upstream 500 / cut",
            " / ".join(str(outcomes[name]) for name in ("served", "refused", "unavailable", "failed", "cut")),
            None,
        )
    )
    rows.append(("unexpected client outcomes", str(dict(unexpected)) if unexpected else "0", not unexpected))
    planned = sum(what == "outage" for _, what in soak.schedule())
    rows.append(
        (
            "Postgres outages",
            f"{len(soak.outages)} of {planned}, down "
            + ", ".join(f"{end - start:.1f}" for start, end in soak.outages)
            + " s"
            if soak.server
            else "none: a given database is not ours to stop",
            len(soak.outages) == planned,
        )
    )
    rows.append(
        (
            "kill -9 of proxy a",
            f"{kill['processes']} processes, {kill['in_flight']} calls in flight, "
            f"{sum(c.outcome == 'cut' for c in at_kill)} cut; serving again after "
            f"{kill['restarted'] - kill['at']:.1f} s",
            kill["in_flight"] > 0,
        )
    )

    events = [event for proxy in proxies for event in proxy.events()]
    named = Counter(event["event"] for event in events)
    replayed = sum(
        event.get("replayed_entries", 0)
        for event in events
        if event["event"] in ("database_recovered", "spool_replayed")
    )
    left = [path.name for proxy in proxies for path in (proxy.data_dir / "spool").glob("*")]
    rows.append(
        (
            "spooled / replayed entries",
            f"{named['usage_spooled']} / {replayed} ({named['fail_open']} calls let through unreserved by a)",
            None,
        )
    )
    rows.append(("spool drained, nothing rejected", ", ".join(left) or "yes", not left))
    rows.append(
        (
            "admin credits",
            f"{sum(soak.credits_confirmed.values())} tokens confirmed, "
            f"{sum(soak.credits_unknown.values())} refused or cut",
            None,
        )
    )

    # Every call the client saw succeed is charged once, ceil(raw × factor), under its call id.
    # Only at the kill may a served call go uncharged (its settle died with the process and
    # the reservation expired) or a call the client saw cut be charged.
    settles = {
        call_id: (user, tokens)
        for call_id, user, tokens in query(
            url, "SELECT call_id, user_id, tokens FROM solaris.ledger WHERE kind = 'settle'"
        )
    }
    served = [call for call in calls if call.outcome == "served"]
    expected, wrong, lost = Counter(), [], 0
    for call in served:
        want, got = charged(call.raw_tokens, factors[call.model]), settles.get(call.call_id)
        if got is None and call in at_kill:
            lost += 1
        elif got != (call.user, want):
            wrong.append(f"{call.call_id or 'no call id'}: charged {got}, served {call.user} {want}")
        else:
            expected[call.user] += want
    extra = [
        (user, tokens)
        for call_id, (user, tokens) in settles.items()
        if call_id not in {call.call_id for call in served}
    ]
    for user, tokens in extra:
        expected[user] += tokens
    cut_at_kill = sum(call.outcome == "cut" for call in at_kill)
    # Unmetered calls (fail_mode open) and late settles are charged unbounded, by design.
    unbounded = dict(
        query(
            url,
            "SELECT user_id, sum(tokens) FROM solaris.ledger WHERE kind = 'settle' AND "
            "(reason LIKE 'unmetered%' OR reason LIKE 'late settle%') GROUP BY user_id",
        )
    )
    over, credit_wrong = [], []
    for user, credited, debited, reserved in query(
        url, "SELECT user_id, credited_tokens, debited_tokens, reserved_tokens FROM solaris.accounts"
    ):
        if debited != expected[user]:
            wrong.append(f"{user}: charged {debited}, expected {expected[user]}")
        if debited > credited + unbounded.get(user, 0):
            over.append(f"{user}: used {debited} > credited {credited} + unmetered {unbounded.get(user, 0)}")
        low = allowance + soak.credits_confirmed[user]
        if not low <= credited <= low + soak.credits_unknown[user] or reserved:
            credit_wrong.append(f"{user}: credited {credited}, reserved {reserved}")
    rows.append(
        (
            "served calls charged ceil(raw × factor), once",
            f"{len(served) - lost} of {len(served)}, "
            f"{sum(expected.values())} tokens; at the kill {lost} served uncharged, {len(extra)} of {cut_at_kill} "
            "cut charged; " + ("; ".join(wrong[:4]) or "every user's total equal"),
            not wrong and len(extra) <= cut_at_kill,
        )
    )
    rows.append(
        (
            "used ≤ credited (+ unmetered/late charges)",
            f"{len(users) - len(unbounded)} users never "
            f"unmetered, {len(unbounded)} charged {sum(unbounded.values())} tokens unmetered/late; "
            + ("; ".join(over[:4]) or "holds"),
            not over,
        )
    )
    rows.append(("credited = grant + admin credits", "; ".join(credit_wrong[:4]) or "holds", not credit_wrong))
    # Doctor reports the overspend of unmetered and late charges, as it should: it is expected
    # of the users whose charges explain it (checked above), and of nobody else.
    try:
        assert_ledger_consistent(url, overspent_on_purpose=set(unbounded))
        rows.append(("ledger replays to the balances", "holds", True))
    except AssertionError as error:
        rows.append(("ledger replays to the balances", str(error)[:300], False))
    doctor = subprocess.run(
        [sys.executable, "-m", "solaris_hooks.cli.main", "doctor", "--config", str(proxies[0].config)],
        env={name: value for name, value in {**os.environ, **proxies[0].env}.items() if value},
        capture_output=True,
        text=True,
        timeout=120,
    )
    failed_checks = re.findall("^FAIL +(.*)$", doctor.stdout, re.M)
    overspent = {
        row[0] for finding in diagnose(url) if finding.invariant == overspend_invariant for row in finding.rows
    }
    explained = all(line.startswith(overspend_invariant) for line in failed_checks) and overspent <= set(unbounded)
    rows.append(
        (
            "solaris doctor",
            f"exit {doctor.returncode}, {len(re.findall('^ok', doctor.stdout, re.M))} checks ok"
            + (
                ""
                if doctor.returncode == 0
                else f"; overspend of {len(overspent)} users with unmetered/late charges"
                if explained
                else ": " + doctor.stdout[-300:]
            ),
            doctor.returncode == 0 or explained,
        )
    )

    statuses = dict(query(url, "SELECT status, count(*) FROM solaris.alerts GROUP BY status"))
    sent = {alert for (alert,) in query(url, "SELECT id FROM solaris.alerts WHERE status = 'sent'")}
    copies: dict[int, list[float]] = defaultdict(list)
    for message in catcher.received:
        if match := re.search(r"solaris-alert-(\d+)\.", message["Message-ID"] or ""):
            copies[int(match.group(1))].append(float(message["X-Received-At"]))
    # Delivery is at least once: a sender stopped between the SMTP send and recording `sent`
    # (Postgres stopped, process killed) leaves the alert claimed, and it goes out again,
    # same Message-ID, when the lease ends. Only then, a second before or during a fault.
    faults = [(start, end, "an outage") for start, end in soak.outages] + [(kill["at"], kill["at"], "the kill")]
    twice = Counter(
        next((name for start, end, name in faults if start - 1 <= min(times) <= end), "no fault")
        for times in copies.values()
        if len(times) > 1
    )
    rows.append(
        (
            "alerts",
            ", ".join(f"{count} {status}" for status, count in sorted(statuses.items())),
            set(statuses) <= {"sent", "covered"},
        )
    )
    rows.append(
        (
            "one e-mail per sent alert",
            f"{len(catcher.received)} e-mails, {len(copies)} Message-IDs, "
            f"{len(sent)} sent alerts; sent twice: "
            + (", ".join(f"{count} at {name}" for name, count in twice.items()) or "none"),
            set(copies) == sent and not twice["no fault"],
        )
    )

    # Our JSON lines never carry a traceback. LiteLLM logs its own for a 503 refusal and an
    # upstream 500; any other kind fails.
    ours = sum("Traceback" in json.dumps(event) for event in events)
    bad = {name: count for name, count in named.items() if name in bad_events}
    rows.append(
        (
            "our JSON log lines",
            f"{len(events)} lines, {ours} with a traceback, bad events {bad or 0}",
            not ours and not bad,
        )
    )
    tracebacks = Counter(
        "503 refusal"
        if "HTTPException: 503" in last
        else "upstream 500"
        if "fake provider failure" in last
        else last[:100]
        for proxy in proxies
        for last in re.findall(
            r"Traceback \(most recent call last\):\n(?:[ \t].*\n)*(.*)", proxy.log_path.read_text(errors="replace")
        )
    )
    rows.append(
        (
            "LiteLLM's tracebacks in the proxy logs",
            ", ".join(f"{n} {kind}" for kind, n in tracebacks.items()),
            set(tracebacks) <= {"503 refusal", "upstream 500"},
        )
    )
    for proxy, samples in ((proxy, soak.rss[proxy.name]) for proxy in proxies):
        # a was restarted: its samples span two processes. b lived throughout: +50 % would be a leak.
        text = f"{samples[0]:.0f} → {samples[-1]:.0f} MB, max {max(samples):.0f}" if samples else "not sampled"
        rows.append(
            (
                f"RSS of proxy {proxy.name} (solaris run + LiteLLM)",
                text + (", restarted" if proxy.name == "a" else ""),
                None if proxy.name == "a" else bool(samples) and samples[-1] < 1.5 * samples[0],
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5, help="how long the load runs (default 5)")
    parser.add_argument("--quick", action="store_true", help="one minute (--minutes 1)")
    parser.add_argument("--seed", type=int, default=random.randrange(10**6), help="of the load's random choices")
    args = parser.parse_args(argv)
    duration_s = 60.0 if args.quick else args.minutes * 60
    print(
        f"soak: {duration_s:.0f} s of load, seed {args.seed}; proxy logs in {artifacts_dir}/soak-*.log",
        file=sys.stderr,
        flush=True,
    )
    provider, catcher = FakeProvider().start(), TimedCatcher().start()
    proxies: list[Proxy] = []
    try:
        # The scratch database lives on our server, so the outages stop it too.
        with (
            postgres() as (server_url, server),
            scratch_database(server_url) as url,
            tempfile.TemporaryDirectory(prefix="solaris-soak-work-") as work,
        ):
            proxies = [
                Proxy("a", "open", url, provider.base_url, catcher.port, Path(work)),
                Proxy("b", "closed", url, provider.base_url, catcher.port, Path(work)),
            ]
            for proxy in proxies:
                proxy.start()
            soak = Soak(proxies, server, duration_s, args.seed)
            asyncio.run(soak.run())
            print("soak: load done, settling …", file=sys.stderr, flush=True)
            rows = [
                ("run", f"{duration_s / 60:.1f} min of load, seed {args.seed}", None),
                settle(url, proxies),
                *check(soak, url, proxies, catcher),
            ]
            for proxy in proxies:
                proxy.process.stop()
    finally:
        for proxy in proxies:
            if proxy.process:
                proxy.process.stop()
        catcher.stop()
        provider.stop()
    failed = sum(ok is False for *_, ok in rows)
    width = max(len(measure) for measure, *_ in rows)
    table = "\n".join(
        f"{'' if ok is None else 'ok' if ok else 'FAIL':<6}{measure:<{width}}  {value}" for measure, value, ok in rows
    )
    summary = f"soak: {sum(ok is True for *_, ok in rows)} checks passed, {failed} failed\n{table}"
    print(summary)
    record(summary)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
