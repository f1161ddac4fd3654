"""`make bench`: run every benchmark in one go and report ratios measured in this one run.

    python -m bench.run            full run (several minutes); writes docs/benchmarks.md
    python -m bench.run --quick    smoke mode (seconds), as the test suite runs it

Raw figures go to bench/results/latest.json (or --json PATH). Postgres is
SOLARIS_DATABASE_URL / DATABASE_URL when set, else an embedded pgserver.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psutil
import psycopg

from bench import ledger_bench, metering_bench, proxy_bench, reports_bench, workers_bench
from tests.support.harness import scratch_database

repo = Path(__file__).resolve().parent.parent


@contextmanager
def postgres_server():
    given = os.environ.get("SOLARIS_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if given:
        yield given
        return
    import pgserver

    with tempfile.TemporaryDirectory(prefix="solaris-bench-") as directory:
        server = pgserver.get_server(Path(directory) / "pgdata", cleanup_mode="stop")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


def machine(server_url: str) -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    with psycopg.connect(server_url) as connection:
        postgres = connection.execute("SHOW server_version").fetchone()[0]
    from importlib.metadata import version

    return {
        "cpu": cpu,
        "cores": psutil.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgres": postgres,
        "litellm": version("litellm"),
        "psycopg": version("psycopg"),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def print_table(sections: dict[str, list[tuple[str, str, str]]]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table("measure", "value (solaris / baseline where paired)", "target", box=box.SIMPLE_HEAD)
    for title, rows in sections.items():
        table.add_row(f"[bold]{title}[/bold]", "", "")
        for row in rows:
            table.add_row(*row)
        table.add_section()
    Console(width=None if sys.stdout.isatty() else 220, highlight=False).print(table)


def write_markdown(path: Path, figures: dict, sections: dict[str, list[tuple[str, str, str]]]) -> None:
    info = figures["machine"]
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench.run`); the raw figures of the same run are in",
        "`bench/results/latest.json`. These machines are shared and noisy, so every figure that",
        "compares is a ratio or a difference measured within this one run.",
        "",
        f"Taken {info['date']} on {info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB, {info['os']};",
        f"Python {info['python']}, Postgres {info['postgres']} (embedded pgserver unless `SOLARIS_DATABASE_URL`",
        f"was set), LiteLLM {info['litellm']}, psycopg {info['psycopg']}. Whole run: {figures['elapsed_s']:.0f} s.",
        "",
        "## How to reproduce",
        "",
        "```sh",
        "make bench                  # full run, about a quarter of an hour; rewrites this file",
        ".venv/bin/python -m bench.run --quick   # the smoke mode the test suite runs",
        "# metered streams alone (about six minutes), replacing their section here:",
        ".venv/bin/python -m bench.metering_bench --markdown docs/benchmarks.md",
        "```",
        "",
        "What runs: an OpenAI-compatible fake provider on loopback (`tests.support.fake_provider --fast`);",
        "three LiteLLM proxies started alike, one with a no-op callback (`bench/noop_callback.py`, the",
        "baseline), one with `solaris_hooks` and `leases: false` and one with `leases: true`, as shipped",
        "(unstreamed calls and metered streams from leases); the same load on each in alternating",
        "rounds of 4 s (3 each,",
        "6 at c=1), from an aiohttp client in the benchmark process; then no-op proxies of one and two",
        "workers and ours of two (`bench/workers_bench.py`). Metered streams: two `solaris_hooks` proxies alike but",
        "for `stream_chunk_tokens` (the default, metered; 0, the worst case reserved up front), each on",
        "a database of its own, the same long streamed answers in alternating rounds; their ledgers",
        "counted after (`bench/metering_bench.py`, which also runs alone). Ledger pairs run straight",
        "against Postgres beside the ceiling of a single conditional `UPDATE … RETURNING`, and so do",
        "leased calls settled in batches (`solaris.settle_leased`), from one process and from two",
        "(`bench/ledger_processes.py`), each with its own lease of the hot user. Reports run",
        "over 1,000,000 generated rows.",
        "",
        "What the figures mean, which targets are missed and why: [performance.md](performance.md).",
        "",
    ]
    for title, rows in sections.items():
        lines += section_lines(title, rows)
    path.parent.mkdir(parents=True, exist_ok=True)  # a --markdown path in a folder not made yet
    path.write_text("\n".join(lines), encoding="utf-8")


def section_lines(title: str, rows: list[tuple[str, str, str]], note: str = "") -> list[str]:
    lines = [f"## {title}", ""] + ([note, ""] if note else [])
    lines += ["| measure | value | target |", "| --- | --- | --- |"]
    lines += [f"| {measure} | {value} | {target} |" for measure, value, target in rows]
    return [*lines, ""]


def replace_section(path: Path, title: str, rows: list[tuple[str, str, str]], note: str) -> None:
    """Put one benchmark's section, measured on its own, into a report written by a whole run
    (in place of its section there, or at the end); the note says when and how it was taken."""
    lines = path.read_text(encoding="utf-8").splitlines()
    taken = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = section_lines(title, rows, f"{note}, {taken}; the other sections are from the whole run above.")
    start = lines.index(f"## {title}") if f"## {title}" in lines else len(lines)
    end = next((index for index in range(start + 1, len(lines)) if lines[index].startswith("## ")), len(lines))
    if start == len(lines) and lines and lines[-1]:
        section.insert(0, "")
    path.write_text("\n".join(lines[:start] + section + lines[end:]).rstrip("\n") + "\n", encoding="utf-8")


async def run_all(server_url: str, quick: bool) -> dict:
    figures: dict = {"quick": quick, "machine": machine(server_url)}
    started = time.perf_counter()
    # Kept after the run: the proxies' logs are the first place to look when a figure is odd.
    work = repo / "bench" / "results" / ("proxies-quick" if quick else "proxies")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)  # with bench/results/, which a fresh clone lacks (git ignores it)
    with scratch_database(server_url) as url:
        print("bench: proxy overhead …", file=sys.stderr, flush=True)
        figures["proxy"] = await proxy_bench.run(url, quick, work)
        print("bench: proxies with two workers …", file=sys.stderr, flush=True)
        (work / "workers").mkdir()
        figures["workers"] = await workers_bench.run(url, quick, work / "workers")
    print("bench: metered streams …", file=sys.stderr, flush=True)
    (work / "metering").mkdir()
    figures["metering"] = await metering_bench.run(server_url, quick, work / "metering")
    print("bench: ledger …", file=sys.stderr, flush=True)
    figures["ledger"] = await ledger_bench.run(server_url, quick)
    print("bench: reports …", file=sys.stderr, flush=True)
    figures["reports"] = await reports_bench.run(server_url, quick)
    figures["elapsed_s"] = time.perf_counter() - started
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: a few seconds, tiny counts")
    parser.add_argument("--json", type=Path, default=repo / "bench" / "results" / "latest.json")
    parser.add_argument("--markdown", type=Path, help="where to write the report (full runs: docs/benchmarks.md)")
    parser.add_argument("--report-only", action="store_true", help="re-render the report from the --json figures")
    args = parser.parse_args(argv)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    if args.report_only:
        figures = json.loads(args.json.read_text(encoding="utf-8"))
        args.quick = figures["quick"]
    else:
        with postgres_server() as server_url:
            figures = asyncio.run(run_all(server_url, args.quick))
    sections = {
        "Proxy overhead (solaris_hooks / no-op callback)": proxy_bench.rows(figures["proxy"]),
        # Absent from figures of runs before it was measured (--report-only).
        **(
            {"Proxies with --num_workers 2 (unstreamed calls)": workers_bench.rows(figures["workers"])}
            if "workers" in figures
            else {}
        ),
        # Absent from figures of runs before metered streams (--report-only).
        **({metering_bench.title: metering_bench.rows(figures["metering"])} if "metering" in figures else {}),
        "Ledger (reserve + settle pairs, and leased calls in batches / single-UPDATE ceiling)": ledger_bench.rows(
            figures["ledger"]
        ),
        "Reports": reports_bench.rows(figures["reports"]),
    }
    print_table(sections)
    if not args.report_only:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2, default=str), encoding="utf-8")
    markdown = args.markdown or (None if args.quick else repo / "docs" / "benchmarks.md")
    if markdown:
        write_markdown(markdown, figures, sections)
    print(f"bench: raw figures in {args.json}" + (f", report in {markdown}" if markdown else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
