"""Leases measured through real proxies: a no-op callback, solaris_hooks as shipped, and
solaris_hooks with `leases: true`, side by side under the same unstreamed load.

    .venv/bin/python -m bench.leases_bench [--quick]

Not yet part of `make bench`: a third proxy on these two cores makes every figure of the
main table noisier. Ratios are against the no-op proxy of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import yaml

from bench.proxy_bench import Scenario, alternate, drive, start_provider, start_proxy, write_config
from tests.support.harness import free_port

variants = ("noop", "solaris", "leased")


async def run(database_url: str, quick: bool, work_dir: Path) -> list[dict]:
    duration_s, rounds, users_many = (0.5, 1, 50) if quick else (2.0, 3, 1000)
    provider_port = free_port()
    provider = start_provider(provider_port)
    provider_url = f"http://127.0.0.1:{provider_port}/v1"
    configs = {
        "noop": write_config(work_dir / "noop.yaml", "noop", provider_url),
        "solaris": write_config(work_dir / "solaris.yaml", "solaris", provider_url),
        "leased": write_config(work_dir / "leased.yaml", "solaris", provider_url, {"leases": True}),
    }
    proxies = {variant: start_proxy(configs[variant], database_url, work_dir / variant) for variant in variants}
    results = []
    try:
        for proxy in proxies.values():
            proxy.wait_ready()
        for proxy in proxies.values():
            await drive(proxy.base_url, Scenario(16, False, "many"), 1.0 if quick else 3.0, users_many)
        for concurrency in (1, 16):
            for users in ("hot", "many"):
                scenario = Scenario(concurrency, False, users)
                tallies = await alternate(
                    {variant: proxy.base_url for variant, proxy in proxies.items()},
                    scenario,
                    rounds,
                    duration_s,
                    users_many,
                )
                summaries = {variant: tally.summary() for variant, tally in tallies.items()}
                base = summaries["noop"]
                results.append(
                    {
                        "scenario": scenario.name,
                        **{
                            variant: {
                                "requests_per_s": summary["requests_per_s"],
                                "ratio": summary["requests_per_s"] / base["requests_per_s"],
                                "added_p50_ms": summary["p50_ms"] - base["p50_ms"],
                                "errors": summary.get("errors", 0),
                            }
                            for variant, summary in summaries.items()
                        },
                    }
                )
    finally:
        for proxy in proxies.values():
            proxy.stop()
        provider.terminate()
        provider.wait(10)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    arguments = parser.parse_args()
    import pgserver

    with tempfile.TemporaryDirectory() as work:
        server = pgserver.get_server(Path(work) / "pg", cleanup_mode="delete")
        try:
            results = asyncio.run(run(server.get_uri(), arguments.quick, Path(work)))
        finally:
            server.cleanup()
    print(yaml.safe_dump(results, sort_keys=False), file=sys.stdout)
    for result in results:
        print(
            f"{result['scenario']}: "
            + "; ".join(
                f"{variant} {result[variant]['ratio']:.3f} × no-op, p50 {result[variant]['added_p50_ms']:+.2f} ms"
                for variant in ("solaris", "leased")
            )
        )


if __name__ == "__main__":
    main()
