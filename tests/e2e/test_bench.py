"""`make bench` in its quick smoke mode: every benchmark runs and reports its figures.

Timings are never asserted here (these machines are shared and noisy): only that each
part measured something and wrote it down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.support.suite import repo_dir


class TestBenchSmoke:
    def test_the_quick_benchmark_measures_every_part(self, database_url, tmp_path):
        """Proxy overhead, memory, ledger pairs with their ceiling, and reports: all present and non-zero."""
        output = tmp_path / "bench.json"
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
        figures = json.loads(output.read_text())
        scenarios = figures["proxy"]["scenarios"]
        assert {(s["stream"], s["users"]) for s in scenarios} == {
            (False, "many"),
            (False, "hot"),
            (True, "many"),
            (True, "hot"),
        }
        for scenario in scenarios:
            assert scenario["noop"]["requests"] > 0 and scenario["solaris"]["requests"] > 0
            assert scenario["noop"]["errors"] == 0 and scenario["solaris"]["errors"] == 0
            assert scenario["throughput_ratio"] > 0
        assert figures["proxy"]["memory"]["solaris"]["rss_end_mb"] > 0
        assert figures["ledger"] and figures["reports"]
        assert "Proxy overhead" in result.stdout and "Ledger" in result.stdout and "Reports" in result.stdout
