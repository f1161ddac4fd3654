"""Where a proxy's CPU goes per call: py-spy on a no-op proxy and on one with solaris_hooks.

    make profile            # installs py-spy into .venv, then runs this

Both proxies serve the same load at concurrency 1 (one hot user, leases on for ours;
unstreamed calls, or streamed with --stream) while py-spy samples their event loop. The
report lists, per call, the samples that differ most between the two (inclusive: a function
and what it calls), and the functions of ours with what they spend outside the proxy's own
request handling. Samples, not seconds:
py-spy slows both proxies alike, so compare the two columns, not either with `make bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import shutil
import sys
import tempfile
from pathlib import Path

import psutil

from bench.proxy_bench import Scenario, drive, start_provider, start_proxy, write_config
from tests.support.harness import free_port

sample_rate_hz = 500
# Frames of the proxy's own request handling below one of ours: not our cost.
_downstream = ("litellm/", "fastapi", "starlette", "uvicorn")


def _frame(frame: str) -> str:
    """A frame without its line number and site-packages prefix, so samples of one function add up."""
    return re.sub(r" \(/.*?site-packages/", " (", re.sub(r":\d+\)", ")", frame))


def _stacks(path: Path):
    for line in path.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        yield [_frame(frame) for frame in stack.split(";")], int(count)


def inclusive_per_call(path: Path, calls: int) -> dict[str, float]:
    samples: collections.Counter[str] = collections.Counter()
    for frames, count in _stacks(path):
        for frame in set(frames):
            samples[frame] += count
    return {frame: count / calls for frame, count in samples.items()}


def all_per_call(path: Path, calls: int) -> float:
    return sum(count for _, count in _stacks(path)) / calls


def ours_per_call(path: Path, calls: int) -> dict[str, float]:
    """Samples whose deepest solaris_hooks frame calls no request handling of the proxy's."""
    samples: collections.Counter[str] = collections.Counter()
    for frames, count in _stacks(path):
        ours = [index for index, frame in enumerate(frames) if "solaris_hooks" in frame]
        if ours and not any(part in frame for frame in frames[ours[-1] + 1 :] for part in _downstream):
            samples[frames[ours[-1]]] += count
    return {frame: count / calls for frame, count in samples.items()}


async def profile(work: Path, duration_s: float, stream: bool = False) -> dict[str, tuple[Path, int]]:
    import pgserver

    server = pgserver.get_server(work / "pg", cleanup_mode="delete")
    port = free_port()
    provider = start_provider(port)
    provider_url = f"http://127.0.0.1:{port}/v1"
    configs = {
        "noop": write_config(work / "noop.yaml", "noop", provider_url),
        "solaris": write_config(work / "solaris.yaml", "solaris", provider_url, {"leases": True}),
    }
    proxies = {variant: start_proxy(config, server.get_uri(), work / variant) for variant, config in configs.items()}
    profiles = {}
    try:
        for proxy in proxies.values():
            proxy.wait_ready()
        for variant, proxy in proxies.items():
            await drive(proxy.base_url, Scenario(16, stream, "hot"), 3.0, 1)
            # The LiteLLM process under `solaris run` serves the calls.
            served_by = (psutil.Process(proxy.process.pid).children(recursive=True) or [proxy.process])[-1].pid
            output = work / f"{variant}.txt"
            py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
            spy = await asyncio.create_subprocess_exec(
                py_spy, "record", "--pid", str(served_by), "--format", "raw", "--output", str(output),
                "--rate", str(sample_rate_hz), "--duration", str(int(duration_s) + 1), "--nonblocking",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            await asyncio.sleep(0.5)
            tally = await drive(proxy.base_url, Scenario(1, stream, "hot"), duration_s, 1)
            _, errors = await spy.communicate()
            if spy.returncode != 0:
                raise RuntimeError(f"py-spy failed: {errors.decode(errors='replace')}")
            profiles[variant] = (output, tally.requests)
    finally:
        for proxy in proxies.values():
            proxy.stop()
        provider.terminate()
        server.cleanup()
    return profiles


def report(profiles: dict[str, tuple[Path, int]], lines_max: int = 30) -> str:
    noop = inclusive_per_call(*profiles["noop"])
    ours = inclusive_per_call(*profiles["solaris"])
    out = [f"calls profiled: no-op {profiles['noop'][1]}, solaris_hooks {profiles['solaris'][1]}"]
    totals = {variant: all_per_call(*profile) for variant, profile in profiles.items()}
    out += [
        f"samples per call, all: no-op {totals['noop']:.3f}, solaris_hooks {totals['solaris']:.3f}"
        f" ({totals['solaris'] / totals['noop'] - 1:+.1%})",
        "",
    ]
    out.append("samples per call, inclusive: solaris_hooks - no-op, no-op, solaris_hooks, function")
    for frame in sorted(set(noop) | set(ours), key=lambda f: ours.get(f, 0) - noop.get(f, 0), reverse=True)[:lines_max]:
        out.append(
            f"{ours.get(frame, 0) - noop.get(frame, 0):+.3f} {noop.get(frame, 0):.3f} {ours.get(frame, 0):.3f}  {frame}"
        )
    out += ["", "samples per call in our code (and the libraries it calls), outside the proxy's handling:"]
    own = ours_per_call(*profiles["solaris"])
    for frame, samples in sorted(own.items(), key=lambda item: item[1], reverse=True)[:lines_max]:
        out.append(f"{samples:.3f}  {frame}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=14.0)
    parser.add_argument("--stream", action="store_true", help="streamed calls (metered streams)")
    arguments = parser.parse_args()
    # The raw samples are kept (py-spy's "raw" format: a stack and its count per line).
    kept = Path(__file__).resolve().parent / "results" / "profile"
    shutil.rmtree(kept, ignore_errors=True)
    kept.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as work:
        profiles = asyncio.run(profile(Path(work), arguments.duration_s, arguments.stream))
        for variant, (path, calls) in profiles.items():
            profiles[variant] = (Path(shutil.copy(path, kept / path.name)), calls)
    print(report(profiles))


if __name__ == "__main__":
    main()
