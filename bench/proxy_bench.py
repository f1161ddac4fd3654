"""Proxy overhead: one LiteLLM proxy with a no-op callback, one with solaris_hooks, same load.

Both proxies run at once against one fast fake provider; every scenario is driven in
alternating rounds (A B, then B A, …) so the noise of this shared machine falls on both.
Figures are ratios and differences measured in one run, never absolute promises.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil
import yaml

from tests.support.harness import ProxyProcess, free_port, wait_for

repo = Path(__file__).resolve().parent.parent
master_key = "sk-bench-" + os.urandom(8).hex()
# "solaris": solaris_hooks with `leases: false` (every call reserved in Postgres); "leased":
# with `leases: true`, as shipped (unstreamed calls and metered streams from leases). Both
# set explicitly, so the figures do not change meaning with the default.
variants = ("noop", "solaris", "leased")
callbacks = {
    "noop": "bench.noop_callback.noop",
    "solaris": "solaris_hooks.callback.quota_callback",
    "leased": "solaris_hooks.callback.quota_callback",
}
variant_settings = {"solaris": {"leases": False}, "leased": {"leases": True}}
prompt = "[[tokens=20]] Olá! Me conte, em poucas palavras, algo interessante sobre o Brasil."


@dataclass(frozen=True)
class Scenario:
    concurrency: int
    stream: bool
    users: str  # "many" (spread over many users) or "hot" (one user)

    @property
    def name(self) -> str:
        return f"c={self.concurrency} {'stream' if self.stream else 'plain'} {self.users}"


@dataclass
class Tally:
    requests: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    # Why calls failed (a status and the start of its body, or the client's exception), at
    # most a few: a failed benchmark says what went wrong, not only that something did.
    error_reasons: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.error_reasons += other.error_reasons[: max(0, 5 - len(self.error_reasons))]
        self.elapsed_s += other.elapsed_s
        self.latencies_ms += other.latencies_ms

    def summary(self) -> dict:
        ordered = sorted(self.latencies_ms) or [float("nan")]
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_reasons": self.error_reasons,
            "requests_per_s": self.requests / self.elapsed_s if self.elapsed_s else 0.0,
            "p50_ms": ordered[len(ordered) // 2],
            "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        }


def user_for(scenario: Scenario, index: int, users_many: int) -> str:
    return "bench-hot@example.com" if scenario.users == "hot" else f"bench-{index % users_many}@example.com"


async def drive(
    base_url: str, scenario: Scenario, duration_s: float, users_many: int, offset: int = 0, text: str = prompt
) -> Tally:
    """Keep `concurrency` requests in flight for duration_s; every request a LibreChat-like chat call.

    A session per round: connections idle between rounds would be closed by the
    server's keep-alive timeout and fail on reuse.
    """
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=120)
    ) as session:
        return await _drive(session, base_url, scenario, duration_s, users_many, offset, text)


async def _drive(
    session: aiohttp.ClientSession,
    base_url: str,
    scenario: Scenario,
    duration_s: float,
    users_many: int,
    offset: int,
    text: str,
) -> Tally:
    tally = Tally()
    deadline = time.perf_counter() + duration_s
    counter = iter(range(offset, 10**12))

    async def worker() -> None:
        while time.perf_counter() < deadline:
            user = user_for(scenario, next(counter), users_many)
            body = {"model": "fake-model", "messages": [{"role": "user", "content": text}], "stream": scenario.stream}
            started = time.perf_counter()
            try:
                async with session.post(
                    f"{base_url}/v1/chat/completions",
                    json=body,
                    headers={"Authorization": f"Bearer {master_key}", "x-litellm-end-user-id": user},
                ) as response:
                    body = await response.read()
                    reason = "" if response.status == 200 else f"{response.status}: {body[:300]!r}"
            except aiohttp.ClientError as error:
                reason = f"{type(error).__name__}: {error}"
            if not reason:
                tally.requests += 1
                tally.latencies_ms.append((time.perf_counter() - started) * 1000)
            else:
                tally.errors += 1
                if len(tally.error_reasons) < 5:
                    tally.error_reasons.append(f"{user}: {reason}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(scenario.concurrency)))
    tally.elapsed_s = time.perf_counter() - started
    return tally


async def alternate(
    base_urls: dict[str, str], scenario: Scenario, rounds: int, duration_s: float, users_many: int, text: str = prompt
) -> dict[str, Tally]:
    """The same load on every proxy in alternating rounds (A B, then B A, …), so the noise of
    this shared machine falls on all of them alike."""
    names = tuple(base_urls)
    tallies = {name: Tally() for name in names}
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else tuple(reversed(names)):
            tallies[name].add(await drive(base_urls[name], scenario, duration_s, users_many, text=text))
    return tallies


def write_config(path: Path, variant: str, provider_url: str, settings: dict | None = None) -> Path:
    """settings: solaris_settings on top of the benchmark's own."""
    config = {
        "model_list": [
            {
                "model_name": "fake-model",
                "litellm_params": {"model": "openai/fake-model", "api_base": provider_url, "api_key": "x"},
            }
        ],
        "litellm_settings": {"callbacks": callbacks[variant], "num_retries": 0},
        # Nobody runs out during a benchmark: refusals are cheaper and would flatter us.
        "solaris_settings": {"default_tokens_per_user": 10**12, **(settings or {})},
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def start_proxy(
    config: Path, database_url: str, data_dir: Path, extra_env: dict[str, str] | None = None
) -> ProxyProcess:
    """`solaris run` with config on database_url; its data in data_dir, its log beside it."""
    env: dict[str, str | None] = {
        "SOLARIS_DATABASE_URL": database_url,
        "LITELLM_MASTER_KEY": master_key,
        "DATABASE_URL": None,
        "PYTHONPATH": str(repo),
        "SOLARIS_LOG_LEVEL": "WARNING",
        "SMTP_HOST": None,
        "DEFAULT_TOKENS_PER_USER": None,
        "CONVERSION_FACTOR": None,
        "SOLARIS_DATA_DIR": str(data_dir),
        "NUM_WORKERS": None,  # one process, unless extra_env says otherwise
        **(extra_env or {}),
    }
    return ProxyProcess(config, env, data_dir.with_suffix(".log"))


def proxy_rss_mb(proxy: ProxyProcess) -> float:
    """Resident memory of the proxy: the LiteLLM process under `solaris run`, children included."""
    parent = psutil.Process(proxy.process.pid)
    processes = parent.children(recursive=True)
    return sum(process.memory_info().rss for process in processes) / 2**20


def start_provider(port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_provider", str(port), "--fast"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import httpx

    wait_for(lambda: _answers(httpx, f"http://127.0.0.1:{port}/v1/models"), 20, what="fake provider")
    return process


def _answers(httpx, url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


async def run(database_url: str, quick: bool, work_dir: Path) -> dict:
    concurrencies = (1, 16) if quick else (1, 16, 64)
    duration_s = 0.4 if quick else 4.0
    rounds = 1 if quick else 3
    # At c=1 a round is only ~150 calls, and the targets there are milliseconds: twice the
    # rounds, so the machine's noise averages out over more of them.
    rounds_c1 = 1 if quick else 6
    users_many = 50 if quick else 1000
    requests_for_memory = 0 if quick else 10_000
    scenarios = [
        Scenario(c, stream, users) for c in concurrencies for stream in (False, True) for users in ("many", "hot")
    ]

    provider_port = free_port()
    provider = start_provider(provider_port)
    proxies = {
        variant: start_proxy(
            write_config(
                work_dir / f"{variant}.yaml",
                variant,
                f"http://127.0.0.1:{provider_port}/v1",
                variant_settings.get(variant),
            ),
            database_url,
            work_dir / variant,
        )
        for variant in variants
    }
    try:
        for proxy in proxies.values():
            proxy.wait_ready()
        # Warm up: every user of the "many" scenarios is provisioned before measuring.
        for proxy in proxies.values():
            warm = Scenario(16, False, "many")
            await drive(proxy.base_url, warm, 0.5 if quick else 3.0, users_many)
        rss_start = {variant: proxy_rss_mb(proxy) for variant, proxy in proxies.items()}
        sent = dict.fromkeys(variants, 0)
        results = []
        for scenario in scenarios:
            measured = list(variants)
            tallies = await alternate(
                {variant: proxies[variant].base_url for variant in measured},
                scenario,
                rounds_c1 if scenario.concurrency == 1 else rounds,
                duration_s,
                users_many,
            )
            for variant in measured:
                sent[variant] += tallies[variant].requests
            base, ours = tallies["noop"].summary(), tallies["solaris"].summary()
            result = {
                "scenario": scenario.name,
                "concurrency": scenario.concurrency,
                "stream": scenario.stream,
                "users": scenario.users,
                "noop": base,
                "solaris": ours,
                **_versus(base, ours),
            }
            if "leased" in tallies:
                leased = tallies["leased"].summary()
                result["leased"] = {**leased, **_versus(base, leased)}
            results.append(result)
        # Top up to the memory target's request count, the same load on both.
        for variant in variants:
            while sent[variant] < requests_for_memory:
                tally = await drive(proxies[variant].base_url, Scenario(16, False, "many"), 2.0, users_many)
                sent[variant] += tally.requests
        rss_end = {variant: proxy_rss_mb(proxy) for variant, proxy in proxies.items()}
    finally:
        for proxy in proxies.values():
            proxy.stop()
        provider.terminate()
        provider.wait(10)
    memory = {
        variant: {
            "rss_start_mb": rss_start[variant],
            "rss_end_mb": rss_end[variant],
            "growth_mb": rss_end[variant] - rss_start[variant],
            "requests": sent[variant],
        }
        for variant in variants
    }
    return {
        "scenarios": results,
        "memory": memory,
        "rounds": rounds,
        "rounds_c1": rounds_c1,
        "round_duration_s": duration_s,
        "users_many": users_many,
    }


def _versus(base: dict, ours: dict) -> dict:
    return {
        "throughput_ratio": ours["requests_per_s"] / base["requests_per_s"] if base["requests_per_s"] else 0,
        "added_p50_ms": ours["p50_ms"] - base["p50_ms"],
        "added_p99_ms": ours["p99_ms"] - base["p99_ms"],
    }


def rows(figures: dict) -> list[tuple[str, str, str]]:
    table = []
    for result in figures["scenarios"]:
        base = result["noop"]
        measured = [(", leases off", result["solaris"], result)]
        if "leased" in result:
            measured.append((", leases on", result["leased"], result["leased"]))
        for label, ours, versus in measured:
            # Issue 16's targets: ≥ 0.95 × the no-op proxy's req/s, and +p50 ≤ 0.5 ms at c=1.
            verdict = "≥ 0.95 " + ("ok" if versus["throughput_ratio"] >= 0.95 else "MISSED")
            if result["concurrency"] == 1:
                verdict += f"; +p50 ≤ 0.5 ms {'ok' if versus['added_p50_ms'] <= 0.5 else 'MISSED'}"
            table.append(
                (
                    f"proxy {result['scenario']}{label}",
                    f"{ours['requests_per_s']:.0f}/{base['requests_per_s']:.0f} req/s = "
                    f"{versus['throughput_ratio']:.3f}; "
                    f"p50 {ours['p50_ms']:.1f}/{base['p50_ms']:.1f} ms ({versus['added_p50_ms']:+.2f}); "
                    f"p99 {ours['p99_ms']:.1f}/{base['p99_ms']:.1f} ms ({versus['added_p99_ms']:+.2f})",
                    verdict,
                )
            )
    memory = figures["memory"]
    for variant in variants:
        table.append(
            (
                f"memory {variant}",
                f"{memory[variant]['rss_start_mb']:.0f} → {memory[variant]['rss_end_mb']:.0f}"
                f" MB ({memory[variant]['growth_mb']:+.1f} MB over {memory[variant]['requests']} requests)",
                "",
            )
        )
    # LiteLLM's own caches grow with traffic in both proxies; ours is what solaris adds to that
    # (as shipped: leases on).
    added_mb = memory["leased"]["growth_mb"] - memory["noop"]["growth_mb"]
    table.append(
        (
            "memory growth added by solaris_hooks",
            f"{added_mb:+.1f} MB",
            f"< 20 MB {'ok' if added_mb < 20 else 'MISSED'}",
        )
    )
    return table


if __name__ == "__main__":  # a quick look without the other benchmarks
    import tempfile

    print(asyncio.run(run(os.environ["SOLARIS_DATABASE_URL"], "--quick" in sys.argv, Path(tempfile.mkdtemp()))))
