"""What metering streamed calls costs: a metered proxy against one that reserves the worst case.

Since issue 14 a streamed chat call reserves its prompt and a first chunk of completion
(`stream_chunk_tokens`), counts every chunk as it passes (by its UTF-8 length while it fits in
what is held, by the tokenizer near it), and grows its reservation
(one conditional UPDATE, awaited) before delivering beyond it. `stream_chunk_tokens: 0`
turns that off: the call reserves its worst case (prompt + `completion_tokens_default`) up
front, as before. Two solaris proxies, alike but for that setting and each on a database of
its own, take the same streamed load from one fast fake provider in alternating rounds (see
bench.proxy_bench); the answers are long enough to need several growths. After the load,
each database's ledger says what one call wrote.

    python -m bench.metering_bench [--quick] [--markdown docs/benchmarks.md]

runs this part alone (Postgres as bench.run finds it) and, with --markdown, replaces its
section of that report.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import psutil
from psycopg import AsyncConnection

from bench.proxy_bench import Scenario, alternate, drive, start_provider, start_proxy, write_config
from solaris_hooks.admin.doctor import diagnose
from solaris_hooks.settings import Settings
from tests.support.harness import ProxyProcess, free_port, scratch_database

title = "Metered streams (metered / worst-case reservation)"
variants = ("metered", "worst")
# Per-call reservations on both (leases off), so the ledgers compare what metering itself
# writes and holds; the other proxy only turns metering off. Leased streams are measured
# by bench.proxy_bench.
variant_settings: dict[str, dict] = {
    "metered": {"leases": False},
    "worst": {"leases": False, "stream_chunk_tokens": 0},
}
concurrencies = (1, 16)


@dataclass(frozen=True)
class Mode:
    answer_tokens: int  # completion tokens of every answer, one per streamed chunk
    duration_s: float  # one round on one proxy
    rounds: int  # per concurrency and proxy, alternating
    users_many: int  # calls spread over this many users


# 1,000 tokens with the default 128-token first chunk: three growths per call (the chunks
# double: about 128, 385, 898, then 1,923 tokens held). At c=16 one round is one batch of
# calls that each take tens of seconds on a small machine, so rounds are few and short.
full_mode = Mode(answer_tokens=1000, duration_s=8.0, rounds=4, users_many=100)
# Still one growth per call, in seconds.
quick_mode = Mode(answer_tokens=150, duration_s=0.3, rounds=1, users_many=20)


def prompt_for(mode: Mode) -> str:
    return f"[[tokens={mode.answer_tokens}]] Olá! Me conte, com calma e em detalhes, a história do Brasil."


async def run(server_url: str, quick: bool, work_dir: Path) -> dict:
    """work_dir: an existing directory for the proxies' configs, data and logs."""
    mode = quick_mode if quick else full_mode
    text = prompt_for(mode)
    with ExitStack() as stack:
        urls = {variant: stack.enter_context(scratch_database(server_url)) for variant in variants}
        provider_port = free_port()
        provider = start_provider(provider_port)
        stack.callback(provider.wait, 10)
        stack.callback(provider.terminate)
        proxies = {}
        for variant in variants:
            config = write_config(
                work_dir / f"{variant}.yaml",
                "solaris",
                f"http://127.0.0.1:{provider_port}/v1",
                variant_settings[variant],
            )
            proxies[variant] = start_proxy(config, urls[variant], work_dir / variant)
            stack.callback(proxies[variant].stop)
        for proxy in proxies.values():
            proxy.wait_ready()
        base_urls = {variant: proxy.base_url for variant, proxy in proxies.items()}
        # Warm up: every user provisioned (short plain calls), and one streamed call's first
        # costs (the tokenizer loading) paid before measuring.
        for base_url in base_urls.values():
            await drive(base_url, Scenario(16, False, "many"), 1.0 if quick else 3.0, mode.users_many)
            await drive(base_url, Scenario(1, True, "many"), 0.3 if quick else 2.0, mode.users_many, text=text)
        marks = {variant: await _last_ledger_id(url) for variant, url in urls.items()}
        results = []
        for concurrency in concurrencies:
            scenario = Scenario(concurrency, True, "many")
            cpu_before = {variant: proxy_cpu_s(proxy) for variant, proxy in proxies.items()}
            tallies = await alternate(base_urls, scenario, mode.rounds, mode.duration_s, mode.users_many, text)
            # CPU per call: steadier than times on a shared machine (each proxy idles while
            # the other is driven).
            cpu_ms = {
                variant: (proxy_cpu_s(proxy) - cpu_before[variant]) * 1000 / max(1, tallies[variant].requests)
                for variant, proxy in proxies.items()
            }
            metered, worst = tallies["metered"].summary(), tallies["worst"].summary()
            results.append(
                {
                    "scenario": scenario.name,
                    "concurrency": concurrency,
                    "metered": metered,
                    "worst": worst,
                    "throughput_ratio": metered["requests_per_s"] / worst["requests_per_s"]
                    if worst["requests_per_s"]
                    else 0,
                    "added_p50_ms": metered["p50_ms"] - worst["p50_ms"],
                    "p50_ratio": metered["p50_ms"] / worst["p50_ms"] if worst["p50_ms"] else 0,
                    "proxy_cpu_ms_per_call": cpu_ms,
                }
            )
        ledgers = {variant: await _ledger_per_call(urls[variant], marks[variant]) for variant in variants}
        findings = {variant: await asyncio.to_thread(diagnose, url) for variant, url in urls.items()}
    defaults = Settings.model_fields
    count_us, bound_us = chunk_count_us(200 if quick else 5000)
    return {
        "mode": "quick" if quick else "full",
        "answer_tokens": mode.answer_tokens,
        "rounds": mode.rounds,
        "round_duration_s": mode.duration_s,
        "users_many": mode.users_many,
        "stream_chunk_tokens": defaults["stream_chunk_tokens"].default,
        "stream_chunk_tokens_max": defaults["stream_chunk_tokens_max"].default,
        "completion_tokens_default": defaults["completion_tokens_default"].default,
        "scenarios": results,
        "ledger": ledgers,
        "chunk_count_us": count_us,
        "chunk_bound_us": bound_us,
        "doctor_findings": {variant: [finding.invariant for finding in found] for variant, found in findings.items()},
    }


def proxy_cpu_s(proxy: ProxyProcess) -> float:
    """CPU seconds a proxy has used so far: `solaris run` and the LiteLLM process under it."""
    parent = psutil.Process(proxy.process.pid)
    return sum(sum(process.cpu_times()[:2]) for process in (parent, *parent.children(recursive=True)))


def chunk_count_us(samples: int) -> tuple[float, float]:
    """What the two ways of counting one streamed chunk cost (one token per chunk here), timed
    in this process: the tokenizer, and the UTF-8 bound the stream wrapper uses while the
    chunk fits in what is held (quota.stream_meter)."""
    from solaris_hooks.quota.stream_meter import byte_bound
    from solaris_hooks.quota.tokenizer import count_tokens

    count_tokens(" ok", "fake-model")  # loads LiteLLM's tokenizer
    started = time.perf_counter()
    for _ in range(samples):
        count_tokens(" ok", "fake-model")
    counted = time.perf_counter()
    for _ in range(samples):
        byte_bound(" ok")
    return (counted - started) / samples * 1e6, (time.perf_counter() - counted) / samples * 1e6


async def _settled(connection: AsyncConnection, wait_s: float = 60) -> None:
    """Wait until no call is pending: a stream is settled by the success event LiteLLM sends
    after the response has ended, so the client has its answer before the ledger has it."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        cursor = await connection.execute("SELECT count(*) FROM solaris.reservations WHERE state = 'pending'")
        row = await cursor.fetchone()
        if row is not None and row[0] == 0:
            return
        await asyncio.sleep(0.2)


async def _last_ledger_id(url: str) -> int:
    """The last ledger row of the calls so far (the warm-up), all of them settled."""
    async with await AsyncConnection.connect(url, autocommit=True) as connection:
        await _settled(connection)
        cursor = await connection.execute("SELECT coalesce(max(id), 0) FROM solaris.ledger")
        row = await cursor.fetchone()
        return int(row[0]) if row else 0


async def _ledger_per_call(url: str, after_id: int) -> dict:
    """What the measured calls (those reserved after ledger row after_id) wrote, once all are
    settled: rows per call by kind, how many calls grew how often, tokens held and charged."""
    async with await AsyncConnection.connect(url, autocommit=True) as connection:
        await _settled(connection)
        cursor = await connection.execute(
            """
            SELECT call_id,
                   count(*) FILTER (WHERE kind = 'extend'),
                   count(*),
                   sum(tokens) FILTER (WHERE kind = 'reserve'),
                   sum(tokens) FILTER (WHERE kind IN ('reserve', 'extend')),
                   sum(tokens) FILTER (WHERE kind = 'settle'),
                   string_agg(kind, ',' ORDER BY id)
              FROM solaris.ledger
             WHERE call_id IN (SELECT call_id FROM solaris.ledger WHERE kind = 'reserve' AND id > %s)
             GROUP BY call_id
            """,
            (after_id,),
        )
        calls = await cursor.fetchall()
    kinds: dict[str, int] = {}
    growths: dict[int, int] = {}
    for _, grew, _, _, _, _, kind_list in calls:
        growths[grew] = growths.get(grew, 0) + 1
        for kind in kind_list.split(","):
            kinds[kind] = kinds.get(kind, 0) + 1
    count = len(calls) or 1
    return {
        "calls": len(calls),
        "rows_per_call": sum(row[2] for row in calls) / count,
        "rows_per_call_by_kind": {kind: rows / count for kind, rows in sorted(kinds.items())},
        "calls_by_growths": dict(sorted(growths.items())),
        "reserved_at_start_tokens": float(sum(row[3] or 0 for row in calls)) / count,
        "held_at_most_tokens": float(sum(row[4] or 0 for row in calls)) / count,
        "charged_tokens": float(sum(row[5] or 0 for row in calls)) / count,
    }


def rows(figures: dict) -> list[tuple[str, str, str]]:
    table = []
    for result in figures["scenarios"]:
        metered, worst, cpu = result["metered"], result["worst"], result["proxy_cpu_ms_per_call"]
        table.append(
            (
                f"streamed c={result['concurrency']}, {figures['answer_tokens']:,}-token answers",
                f"{metered['requests_per_s']:.1f}/{worst['requests_per_s']:.1f} req/s = "
                f"{result['throughput_ratio']:.3f}; p50 {metered['p50_ms']:.0f}/{worst['p50_ms']:.0f} ms "
                f"({result['added_p50_ms']:+.0f} ms, ×{result['p50_ratio']:.3f}); "
                f"{metered['requests']}/{worst['requests']} calls, {metered['errors'] + worst['errors']} errors; "
                f"proxy CPU {cpu['metered']:.0f}/{cpu['worst']:.0f} ms per call",
                "(no target)",
            )
        )
    for variant in variants:
        ledger = figures["ledger"][variant]
        by_kind = ", ".join(f"{rows:.2f} {kind}" for kind, rows in ledger["rows_per_call_by_kind"].items())
        growths = ", ".join(f"{calls} with {grew}" for grew, calls in ledger["calls_by_growths"].items())
        table.append(
            (
                f"ledger rows per call, {variant}",
                f"{ledger['rows_per_call']:.2f} ({by_kind}); {ledger['calls']} calls: {growths} growth(s)",
                "",
            )
        )
        table.append(
            (
                f"platform tokens per call, {variant}",
                f"{ledger['reserved_at_start_tokens']:.0f} reserved at start, {ledger['held_at_most_tokens']:.0f}"
                f" held at most, {ledger['charged_tokens']:.0f} charged",
                "",
            )
        )
    table.append(
        (
            "counting one chunk, tokenizer / UTF-8 bound (in the bench process)",
            f"{figures['chunk_count_us']:.0f} / {figures['chunk_bound_us']:.2f} µs;"
            f" {figures['chunk_count_us'] * figures['answer_tokens'] / 1000:.0f} ms per"
            f" {figures['answer_tokens']:,}-chunk answer if every chunk went through the tokenizer",
            "",
        )
    )
    findings = figures["doctor_findings"]
    found = sum(len(found) for found in findings.values())
    table.append(("ledgers consistent after the run (solaris doctor)", f"{found} finding(s)", "no findings"))
    return table


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import os
    import sys

    from bench.run import postgres_server, print_table, replace_section, repo

    parser = argparse.ArgumentParser(prog="bench.metering_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: seconds, short answers")
    parser.add_argument("--json", type=Path, default=repo / "bench" / "results" / "metering.json")
    parser.add_argument("--markdown", type=Path, help="a report (docs/benchmarks.md) whose section to replace")
    args = parser.parse_args(argv)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    with postgres_server() as server_url:
        work = repo / "bench" / "results" / ("metering-quick" if args.quick else "metering")
        work.mkdir(parents=True, exist_ok=True)
        figures = asyncio.run(run(server_url, args.quick, work))
    print_table({title: rows(figures)})
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2, default=str), encoding="utf-8")
    if args.markdown:
        replace_section(args.markdown, title, rows(figures), "Taken on its own with `python -m bench.metering_bench`")
    print(f"metering bench: raw figures in {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
