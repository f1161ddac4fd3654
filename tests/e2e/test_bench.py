"""`make bench` in its quick smoke mode: every benchmark runs and reports its figures.

Timings are never asserted here (these machines are shared and noisy): only that each
part measured something and wrote it down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support.suite import repo_dir

# Where bench.run keeps its proxies' logs after a quick run.
proxy_logs_dir = repo_dir / "bench" / "results" / "proxies-quick"


@pytest.fixture(scope="module")
def quick_bench(database_url, tmp_path_factory) -> tuple[dict, str]:
    """One quick run of the whole benchmark (it takes a minute): its raw figures and its table."""
    output = tmp_path_factory.mktemp("bench") / "bench.json"
    env = {**os.environ, "SOLARIS_DATABASE_URL": database_url, "PYTHONPATH": str(repo_dir)}
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--json", str(output)],
        cwd=repo_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(output.read_text()), result.stdout


def errors_in_proxy_logs(limit: int = 40) -> str:
    """The error lines of the quick run's proxy logs: with the calls' own error reasons, what a
    failed smoke run prints, so that a rare failure in CI can be understood after the fact."""
    lines = [
        f"{path.relative_to(proxy_logs_dir)}: {line}"
        for path in sorted(proxy_logs_dir.rglob("*.log"))
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
        if "error" in line.lower() or "Traceback" in line
    ]
    return "\n".join(lines[:limit])


class TestBenchSmoke:
    def test_the_quick_benchmark_measures_every_part(self, quick_bench):
        """Proxy overhead, memory, metered streams, ledger pairs with their ceiling, and reports:
        all present and non-zero."""
        figures, stdout = quick_bench
        scenarios = figures["proxy"]["scenarios"]
        assert {(s["stream"], s["users"]) for s in scenarios} == {
            (False, "many"),
            (False, "hot"),
            (True, "many"),
            (True, "hot"),
        }
        for scenario in scenarios:
            assert scenario["noop"]["requests"] > 0 and scenario["solaris"]["requests"] > 0
            for variant in ("noop", "solaris"):
                assert scenario[variant]["errors"] == 0, (
                    f"{scenario[variant]['error_reasons']}\n{errors_in_proxy_logs()}"
                )
            assert scenario["throughput_ratio"] > 0
            # Leases cover unstreamed calls and metered streams: measured on both.
            assert scenario["leased"]["requests"] > 0
            assert scenario["leased"]["errors"] == 0, f"{scenario['leased']['error_reasons']}\n{errors_in_proxy_logs()}"
        assert figures["proxy"]["memory"]["solaris"]["rss_end_mb"] > 0
        assert figures["proxy"]["memory"]["leased"]["rss_end_mb"] > 0
        assert figures["metering"] and figures["ledger"] and figures["reports"]
        assert all(part in stdout for part in ("Proxy overhead", "Metered streams", "Ledger", "Reports"))

    def test_the_quick_benchmark_compares_metered_streams_with_the_worst_case(self, quick_bench):
        """Both proxies answer every streamed call at c=1 and c=16; a metered call's ledger rows
        are a reserve, its growths and a settle, a worst-case call's a reserve and a settle, the
        metered one reserving less up front; the doctor finds nothing in either ledger."""
        figures = quick_bench[0]["metering"]
        assert [scenario["concurrency"] for scenario in figures["scenarios"]] == [1, 16]
        for scenario in figures["scenarios"]:
            for variant in ("metered", "worst"):
                assert scenario[variant]["requests"] > 0
                assert scenario[variant]["errors"] == 0, (
                    f"{scenario['scenario']}, {variant}: {scenario[variant]['error_reasons']}\n{errors_in_proxy_logs()}"
                )
        metered, worst = figures["ledger"]["metered"], figures["ledger"]["worst"]
        assert metered["calls"] > 0 and worst["calls"] > 0
        assert metered["rows_per_call_by_kind"]["reserve"] == metered["rows_per_call_by_kind"]["settle"] == 1
        assert metered["rows_per_call_by_kind"]["extend"] >= 1
        assert worst["rows_per_call_by_kind"] == {"reserve": 1, "settle": 1}
        assert metered["reserved_at_start_tokens"] < worst["reserved_at_start_tokens"]
        assert figures["doctor_findings"] == {"metered": [], "worst": []}
