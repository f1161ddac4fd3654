"""`--num_workers`: the proxies of the overhead benchmark with two worker processes each.

LiteLLM runs one event loop per process, and its own request handling fills that loop's
core long before Postgres is busy. `--num_workers 2` (`NUM_WORKERS` in the environment of
`solaris run`) starts two processes behind one port; each loads the callback, with its own
connection pool, its own leases and its own spool segment. Measured here, in alternating
rounds as in bench.proxy_bench: a no-op proxy with one worker and one with two (what the
second worker buys on this machine), and ours with two workers, per call and leased, each
against the no-op proxy with two. Unstreamed calls only, where leases apply.
"""

from __future__ import annotations

from pathlib import Path

from bench.proxy_bench import (
    Scenario,
    alternate,
    proxy_rss_mb,
    start_provider,
    start_proxy,
    variant_settings,
    write_config,
)
from tests.support.harness import free_port

workers_count = 2
# name: (variant of bench.proxy_bench, worker processes, what the report calls it)
proxies_measured = {
    "noop 1": ("noop", 1, "no-op, 1 worker"),
    "noop 2": ("noop", workers_count, "no-op, 2 workers"),
    "solaris 2": ("solaris", workers_count, "solaris_hooks, leases off, 2 workers"),
    "leased 2": ("leased", workers_count, "solaris_hooks, leases on, 2 workers"),
}
# The smoke mode the test suite runs starts two of them: a proxy of two workers takes a
# minute to start on a loaded machine.
quick_proxies = ("noop 2", "leased 2")


async def run(database_url: str, quick: bool, work_dir: Path) -> dict:
    concurrencies = (16,) if quick else (16, 64)
    duration_s = 0.4 if quick else 4.0
    rounds = 1 if quick else 3
    users_many = 50 if quick else 1000
    scenarios = [Scenario(c, False, users) for c in concurrencies for users in ("many", "hot")]
    provider_port = free_port()
    provider = start_provider(provider_port)
    proxies = {}
    for name, (variant, workers, _) in proxies_measured.items():
        if quick and name not in quick_proxies:
            continue
        slug = name.replace(" ", "-")
        config = write_config(
            work_dir / f"{slug}.yaml", variant, f"http://127.0.0.1:{provider_port}/v1", variant_settings.get(variant)
        )
        # uvicorn's supervisor kills a worker that does not answer its ping within 5 s, and
        # LiteLLM's start keeps a loaded machine's worker busy longer than that: without a
        # longer timeout (and the proxies started one after the other), workers died and
        # were restarted in a loop.
        environment = {"NUM_WORKERS": str(workers), "TIMEOUT_WORKER_HEALTHCHECK": "120"}
        proxies[name] = start_proxy(config, database_url, work_dir / slug, environment)
        proxies[name].wait_ready(timeout_s=240)
    try:
        for proxy in proxies.values():  # every user provisioned, every worker warm
            await alternate({"warm": proxy.base_url}, Scenario(16, False, "many"), 1, 0.5 if quick else 3.0, users_many)
        results = []
        for scenario in scenarios:
            tallies = await alternate(
                {name: proxy.base_url for name, proxy in proxies.items()}, scenario, rounds, duration_s, users_many
            )
            results.append(
                {
                    "scenario": scenario.name,
                    "concurrency": scenario.concurrency,
                    "users": scenario.users,
                    **{name: tally.summary() for name, tally in tallies.items()},
                }
            )
        rss_mb = {name: proxy_rss_mb(proxy) for name, proxy in proxies.items()}
    finally:
        for proxy in proxies.values():
            proxy.stop()
        provider.terminate()
        provider.wait(10)
    return {"workers": workers_count, "scenarios": results, "rss_mb": rss_mb, "rounds": rounds}


def rows(figures: dict) -> list[tuple[str, str, str]]:
    table = []
    for result in figures["scenarios"]:
        two = result["noop 2"]
        if "noop 1" in result:
            one = result["noop 1"]
            table.append(
                (
                    f"{result['scenario']}: no-op, 2 workers ÷ 1 worker",
                    f"{two['requests_per_s']:.0f}/{one['requests_per_s']:.0f} req/s"
                    f" = {two['requests_per_s'] / one['requests_per_s']:.3f};"
                    f" p50 {two['p50_ms']:.1f}/{one['p50_ms']:.1f} ms",
                    "(no target)",
                )
            )
        for name in ("solaris 2", "leased 2"):
            if name not in result:
                continue
            ours = result[name]
            ratio = ours["requests_per_s"] / two["requests_per_s"]
            table.append(
                (
                    f"{result['scenario']}: {proxies_measured[name][2]} ÷ no-op, 2 workers",
                    f"{ours['requests_per_s']:.0f}/{two['requests_per_s']:.0f} req/s = {ratio:.3f};"
                    f" p50 {ours['p50_ms']:.1f}/{two['p50_ms']:.1f} ms ({ours['p50_ms'] - two['p50_ms']:+.1f});"
                    f" {ours['errors']} errors",
                    f"≥ 0.95 {'ok' if ratio >= 0.95 else 'MISSED'}",
                )
            )
    table.append(
        (
            "memory after the run (every process of the proxy)",
            "; ".join(f"{proxies_measured[name][2]}: {mb:.0f} MB" for name, mb in figures["rss_mb"].items()),
            "",
        )
    )
    return table
