"""`make run` installs the runtime and the embedded Postgres, and no test or lint tool.

What `make run` would run on a fresh clone comes from make itself (`make -n -B run`: every
recipe of the target and its prerequisites, printed, none run). What the install then pulls
in is the dependency closure of what it names: the requirements in pyproject.toml, then the
metadata of the packages installed here, so a runtime dependency that starts to require a
test tool fails here too.
"""

from __future__ import annotations

import importlib.metadata
import shlex
import subprocess
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.suite import repo_dir

project = tomllib.loads((repo_dir / "pyproject.toml").read_text(encoding="utf-8"))["project"]
# The test extra names these for the tests' own use, but the runtime needs them anyway:
# LiteLLM calls providers with openai and aiohttp and requires jsonschema, and pgserver
# watches its server with psutil.
needed_at_run_time = {"openai", "aiohttp", "jsonschema", "psutil"}
# Whatever the extras say, none of these belongs in a runtime install.
tools = {"pytest", "playwright", "schemathesis", "hypothesis", "ruff", "mypy", "import-linter", "aiosmtpd"}


def extra_names(extra: str) -> set[str]:
    return {canonicalize_name(Requirement(text).name) for text in project["optional-dependencies"][extra]}


def pip_installs(target: str) -> list[list[str]]:
    """The arguments of each `pip install` that `make <target>` runs on a fresh clone."""
    dry_run = subprocess.run(
        ["make", "-n", "-B", target], cwd=repo_dir, capture_output=True, text=True, timeout=60, check=True
    )
    installs = []
    for line in dry_run.stdout.splitlines():
        words = shlex.split(line)
        if "pip" in words and "install" in words:
            installs.append(words[words.index("install") + 1 :])
    return installs


def requested(installs: list[list[str]]) -> tuple[set[str], set[str]]:
    """(packages named, extras of this project) across the installs; options and their values skipped."""
    packages: set[str] = set()
    extras: set[str] = set()
    for arguments in installs:
        words = iter(arguments)
        for word in words:
            if word in ("-c", "--constraint", "-r", "--requirement"):
                next(words)
            elif word in ("-e", "--editable") or word.startswith("-"):
                continue
            elif word.startswith("."):
                extras |= Requirement("solaris-hooks" + word[1:]).extras
            else:
                packages.add(canonicalize_name(Requirement(word).name))
    return packages, extras


def closure(requirements: list[str]) -> set[str]:
    """Every distribution these requirements pull in, by the installed packages' metadata."""
    found: set[str] = set()
    todo = [Requirement(text) for text in requirements]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if (name, frozenset(requirement.extras)) in seen:
            continue
        seen.add((name, frozenset(requirement.extras)))
        found.add(name)
        distribution = importlib.metadata.distribution(name)
        for text in distribution.requires or ():
            needed = Requirement(text)
            wanted = requirement.extras or {""}
            if needed.marker is None or any(needed.marker.evaluate({"extra": extra}) for extra in wanted):
                todo.append(needed)
    return found


def run_closure() -> set[str]:
    _, extras = requested(pip_installs("run"))
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    return closure(requirements)


def test_make_run_installs_the_package_with_its_embedded_extra_only():
    """`make run` asks pip for `.[embedded]` (and pip's own tools), never the lint or test extra."""
    packages, extras = requested(pip_installs("run"))
    assert extras == {"embedded"}
    assert packages <= {"pip", "setuptools", "wheel"}


def test_make_test_installs_the_test_and_lint_extras():
    """The same reading of `make test` finds the extras: the check above reads the Makefile right."""
    _, extras = requested(pip_installs("test"))
    assert {"test", "lint"} <= extras


def test_no_runtime_dependency_pulls_in_a_test_or_lint_tool():
    """The closure of what `make run` installs holds no test or lint tool, nor any package that
    only the test or lint extras name."""
    installed = run_closure()
    only_for_checks = (extra_names("test") | extra_names("lint")) - needed_at_run_time
    assert installed & (only_for_checks | tools) == set()
    # Each exception above is one the runtime really needs; a stale one would hide nothing.
    assert needed_at_run_time <= installed
