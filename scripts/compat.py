#!/usr/bin/env python3
"""The test suite against another LiteLLM, in a virtualenv of its own (`make compat`).

    make compat LITELLM_VERSION=1.110.2
    make compat LITELLM_VERSION=1.110.2 COMPAT_PYTEST_ARGS="tests/e2e/test_rate_limits_redis.py"

Creates .venv-compat/<version> (kept between runs; reinstalled when pyproject.toml or
constraints.txt changed) and installs this package's dependencies and those of its embedded,
test and lint extras with `litellm[proxy]==<version>` instead of the package's own LiteLLM
range (the package itself goes in editable, with --no-deps, so a version outside the range can
be tried too). constraints.txt pins the rest, except where its pins cannot hold: LiteLLM's own
packages move with it, and each pin pip names in a conflict is dropped, one round at a time.
When the index lacks a package the proxy extra pins exactly, the extra's requirements are
listed instead of the extra, with the newest version of that package the index has, or
without it. The output says every pin dropped and everything that could not be installed.
Then runs pytest with the repository's configuration (pyproject.toml), narrowed by
COMPAT_PYTEST_ARGS when set; its output and a JUnit report go to
test-artifacts/compat-<version>.{log,xml}.

Standard library only: it runs before any virtualenv exists.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
import tomllib
import venv
import zipfile
from pathlib import Path

repo_dir = Path(__file__).resolve().parent.parent
extras = "embedded,test,lint"
# Released together with LiteLLM, each pinned by the litellm[proxy] of one version exactly.
moves_with_litellm = ("litellm", "litellm-enterprise", "litellm-proxy-extras", "litellm-proxy")
# Each round drops the pins pip named in one conflict; pip reports one conflict at a time.
resolution_rounds_max = 10
version_pattern = re.compile(r"^\d+(\.\d+)*([a-z]+\d*)?(\.post\d+)?$")
constraint_line = re.compile(r"The user requested \(constraint\) ([A-Za-z0-9._-]+)")
not_found_line = re.compile(r"No matching distribution found for (\S+)")
proxy_extra = re.compile(r"^extra\s*==\s*['\"]proxy['\"]$")


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """{canonical name: the constraint line} of a `pip freeze` file."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement:
            pins[canonical(re.split(r"[=<>!~\[; ]", requirement, maxsplit=1)[0])] = requirement
    return pins


def write_pins(path: Path, pins: dict[str, str]) -> None:
    path.write_text("".join(f"{line}\n" for line in pins.values()), encoding="utf-8")


def make_venv(venv_dir: Path) -> Path:
    python = venv_dir / "bin" / "python"
    if not python.exists():
        print(f"compat: creating {venv_dir.relative_to(repo_dir)}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
        bootstrap = pip(
            python, ["install", "-q", "-c", str(repo_dir / "constraints.txt"), "pip", "setuptools", "wheel"]
        )
        if bootstrap.returncode != 0:
            sys.exit(f"compat: installing pip, setuptools and wheel failed:\n{bootstrap.stdout}{bootstrap.stderr}")
    return python


def pip(python: Path, arguments: list[str]) -> subprocess.CompletedProcess[str]:
    command = [str(python), "-m", "pip", "--disable-pip-version-check", *arguments]
    return subprocess.run(command, cwd=repo_dir, capture_output=True, text=True)


def conflict_report(output: str) -> str:
    """pip's "The conflict is caused by:" lines (printed at info level, so never with -q)."""
    lines = output.splitlines()
    start = next((index for index, line in enumerate(lines) if "The conflict is caused by" in line), None)
    if start is None:
        return ""
    end = next((index for index in range(start, len(lines)) if lines[index].startswith("To fix this")), len(lines))
    return "\n".join(line.rstrip() for line in lines[start:end] if line.strip())


def package_requirements() -> list[str]:
    """This package's dependencies and those of its extras, from pyproject.toml, without LiteLLM:
    the package itself is installed with --no-deps, so its LiteLLM range never stops pip."""
    project = tomllib.loads((repo_dir / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = list(project["dependencies"])
    for extra in extras.split(","):
        wanted += project["optional-dependencies"][extra]
    return [requirement for requirement in wanted if requirement_name(requirement) != "litellm"]


def requirement_name(requirement: str) -> str:
    return canonical(re.split(r"[=<>!~\[;( ]", requirement.strip(), maxsplit=1)[0])


def proxy_requirements(python: Path, version: str, venv_dir: Path) -> list[str]:
    """What litellm[proxy]==version requires beyond litellm, from its wheel's metadata, each with
    its markers but the extra's: to install what the index has when some of it is missing."""
    download_dir = venv_dir / "litellm-wheel"
    result = pip(python, ["download", "-q", "--no-deps", f"litellm=={version}", "-d", str(download_dir)])
    wheels = sorted(download_dir.glob(f"litellm-{version}-*.whl"))
    if result.returncode != 0 or not wheels:
        sys.exit(f"compat: could not download litellm {version}:\n{result.stdout}{result.stderr}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        metadata = wheel.read(f"litellm-{version}.dist-info/METADATA").decode("utf-8")
    requirements = []
    for line in metadata.splitlines():
        if not line.startswith("Requires-Dist:") or ";" not in line:
            continue
        requirement, marker = (part.strip() for part in line.removeprefix("Requires-Dist:").split(";", 1))
        clauses = [clause.strip() for clause in marker.split(" and ")]
        if any(proxy_extra.match(clause) for clause in clauses):
            rest = " and ".join(clause for clause in clauses if not proxy_extra.match(clause))
            requirements.append(f"{requirement} ; {rest}" if rest else requirement)
    return requirements


def install(python: Path, version: str, venv_dir: Path) -> None:
    """Installs the package's dependencies with litellm[proxy]==version, dropping the pins that
    cannot hold and, when the index lacks a package the proxy extra pins, taking its newest
    version (or going without it); then the package itself, editable and without dependencies."""
    pins = read_pins(repo_dir / "constraints.txt")
    dropped = {name: pins.pop(name) for name in moves_with_litellm if name in pins}
    missing: dict[str, str] = {}  # what the index could not give, and what was done instead
    litellm = [f"litellm[proxy]=={version}"]
    constraints_path = venv_dir / "constraints.txt"
    requirements_path = venv_dir / "requirements.txt"
    log_path = venv_dir / "pip-install.log"
    for _ in range(resolution_rounds_max):
        write_pins(constraints_path, pins)
        requirements_path.write_text("".join(f"{line}\n" for line in package_requirements() + litellm), "utf-8")
        result = pip(python, ["install", "-c", str(constraints_path), "-r", str(requirements_path)])
        output = result.stdout + result.stderr
        log_path.write_text(output, encoding="utf-8")
        if result.returncode == 0:
            break
        conflicting = [name for name in sorted({canonical(n) for n in constraint_line.findall(output)}) if name in pins]
        not_found = not_found_line.findall(output)
        if conflicting:
            for name in conflicting:
                dropped[name] = pins.pop(name)
            print(conflict_report(output))
            print(f"compat: pins in conflict with litellm {version}, dropped: {', '.join(conflicting)}", flush=True)
        elif not_found and requirement_name(not_found[-1]) != "litellm":
            if litellm[0].startswith("litellm[proxy]"):
                litellm = [f"litellm=={version}", *proxy_requirements(python, version, venv_dir)]
            name = requirement_name(not_found[-1])
            index = next((i for i, line in enumerate(litellm) if requirement_name(line) == name), None)
            if index is None:  # one of this package's own requirements: nothing to fall back to
                break
            asked, _, marker = (part.strip() for part in litellm[index].partition(";"))
            if canonical(asked) != name:  # a version: try the newest there is
                litellm[index] = name + (f" ; {marker}" if marker else "")
                missing[name] = f"{asked} is not on the index: trying the newest {name} there is"
            else:
                del litellm[index]
                missing[name] = f"{missing.get(name, name).split(' ')[0]} is not on the index, nor any {name}: left out"
            print(f"compat: {missing[name]}", flush=True)
        else:
            break
    if result.returncode == 0:
        result = pip(python, ["install", "--no-deps", "-e", "."])
        log_path.write_text(log_path.read_text(encoding="utf-8") + result.stdout + result.stderr, encoding="utf-8")
    installed = installed_versions(python)
    print(f"compat: constraints used: {constraints_path.relative_to(repo_dir)} ({len(pins)} pins)")
    for name, pin in sorted(dropped.items()):
        print(f"compat: dropped pin {pin} -> {installed.get(name, 'not installed')}")
    for name, what in sorted(missing.items()):
        print(f"compat: could not install {what.split(' ')[0]} ({what}); installed: {installed.get(name, 'none')}")
    if result.returncode != 0:
        output = result.stdout + result.stderr
        errors = [line for line in output.splitlines() if line.startswith("ERROR")]
        sys.exit(
            f"compat: pip could not install litellm[proxy]=={version} with .[{extras}]; see {log_path}:\n"
            + "\n".join([conflict_report(output), *errors[-20:]])
        )
    check = pip(python, ["check"])
    if check.returncode != 0:
        print(f"compat: installed, but pip check reports:\n{check.stdout}{check.stderr}", end="")
    (venv_dir / ".installed").write_text(version + "\n", encoding="utf-8")


def installed_versions(python: Path) -> dict[str, str]:
    freeze = pip(python, ["freeze", "--all", "--exclude-editable"]).stdout
    versions = {}
    for line in freeze.splitlines():
        if "==" in line:
            name, installed_version = line.split("==", 1)
            versions[canonical(name)] = installed_version
    return versions


def up_to_date(venv_dir: Path) -> bool:
    stamp = venv_dir / ".installed"
    if not stamp.exists():
        return False
    inputs = (repo_dir / "pyproject.toml", repo_dir / "constraints.txt")
    return all(stamp.stat().st_mtime >= path.stat().st_mtime for path in inputs)


def run_tests(python: Path, version: str) -> int:
    artifacts = repo_dir / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    narrowed = shlex.split(os.environ.get("COMPAT_PYTEST_ARGS", ""))
    # A basetemp of its own: pytest's default is shared with any other pytest of this user,
    # and pytest prunes old numbered directories there, also while their run is going on.
    basetemp = ["--basetemp", f"/tmp/solaris-compat-{version}"] if "--basetemp" not in " ".join(narrowed) else []
    command = [
        str(python),
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        *basetemp,
        f"--junitxml={artifacts / f'compat-{version}.xml'}",
        *narrowed,
    ]
    log_path = artifacts / f"compat-{version}.log"
    print(f"compat: {' '.join(command[1:])} (output also in {log_path.relative_to(repo_dir)})", flush=True)
    started_s = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(command, cwd=repo_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            log.write(line)
        returncode = process.wait()
    print(f"compat: litellm {version}: pytest exited with {returncode} after {time.monotonic() - started_s:.0f} s")
    return returncode


def main() -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 - runs on the system Python, before any virtualenv
        sys.exit("solaris-hooks needs Python 3.11 or newer")
    version = (sys.argv[1] if len(sys.argv) > 1 else os.environ.get("LITELLM_VERSION", "")).strip()
    if not version_pattern.match(version):
        sys.exit("usage: make compat LITELLM_VERSION=x.y.z [COMPAT_PYTEST_ARGS='pytest arguments']")
    venv_dir = repo_dir / ".venv-compat" / version
    python = make_venv(venv_dir)
    if up_to_date(venv_dir):
        print(f"compat: {venv_dir.relative_to(repo_dir)} is up to date (delete it to reinstall)")
    else:
        install(python, version, venv_dir)
    litellm = installed_versions(python).get("litellm")
    if litellm != version:
        sys.exit(f"compat: {venv_dir.relative_to(repo_dir)} has litellm {litellm}, not {version}")
    return run_tests(python, version)


if __name__ == "__main__":
    sys.exit(main())
