"""docs/architecture.md names functions in the order a call meets them: every name it cites
must still exist, or the document has drifted from the code."""

from __future__ import annotations

import importlib
import re

import pytest

from tests.support.suite import repo_dir

layers = ("hooks", "quota", "db", "mail", "admin", "web", "cli", "settings", "demo")
cited = sorted(
    set(re.findall(rf"`((?:{'|'.join(layers)})\.[\w.]+)`", (repo_dir / "docs" / "architecture.md").read_text()))
)


def resolve(dotted: str) -> object:
    """The module or attribute a dotted name inside solaris_hooks points at."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module("solaris_hooks." + ".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            found = getattr(found, attribute)
        return found
    raise ModuleNotFoundError(dotted)


def test_the_document_cites_the_request_path():
    assert len(cited) > 20


@pytest.mark.parametrize("name", cited)
def test_every_name_the_architecture_cites_exists(name):
    resolve(name)
