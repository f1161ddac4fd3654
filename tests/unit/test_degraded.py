"""note_degraded: a failing LiteLLM internal is logged once per kind and counted every time."""

from __future__ import annotations

import json
import logging

import pytest

from solaris_hooks.quota import degraded
from solaris_hooks.quota.metrics import Metrics


def count(what: str, error: str) -> float:
    value = Metrics().registry.get_sample_value("solaris_litellm_degraded_total", {"what": what, "error": error})
    return value or 0.0


def lines(caplog: pytest.LogCaptureFixture) -> list[dict]:
    return [
        json.loads(record.getMessage())
        for record in caplog.records
        if record.name == "solaris_hooks" and "litellm_degraded" in record.getMessage()
    ]


@pytest.fixture(autouse=True)
def fresh():
    degraded.forget_logged()
    yield
    degraded.forget_logged()


class TestNoteDegraded:
    def test_each_kind_is_logged_once_and_counted_every_time(self, caplog):
        """Three failures of two kinds: two WARNING lines, and the metric counts all three."""
        before = (count("test_thing", "KeyError"), count("test_thing", "TypeError"))
        with caplog.at_level(logging.INFO, logger="solaris_hooks"):
            degraded.note_degraded("test_thing", KeyError("a"))
            degraded.note_degraded("test_thing", KeyError("b"))
            degraded.note_degraded("test_thing", TypeError("c"))
        assert lines(caplog) == [
            {"event": "litellm_degraded", "what": "test_thing", "error": "KeyError"},
            {"event": "litellm_degraded", "what": "test_thing", "error": "TypeError"},
        ]
        assert {record.levelno for record in caplog.records} == {logging.WARNING}
        assert (count("test_thing", "KeyError") - before[0], count("test_thing", "TypeError") - before[1]) == (2, 1)

    def test_the_memory_of_kinds_logged_is_bounded(self, caplog, monkeypatch):
        """Past kinds_logged_max kinds, new kinds are counted but not logged, and nothing grows."""
        monkeypatch.setattr(degraded, "kinds_logged_max", 2)
        with caplog.at_level(logging.INFO, logger="solaris_hooks"):
            for what in ("test_a", "test_b", "test_c"):
                degraded.note_degraded(what, RuntimeError())
        assert [line["what"] for line in lines(caplog)] == ["test_a", "test_b"]
        assert count("test_c", "RuntimeError") >= 1
        assert len(degraded._kinds_logged) == 2

    def test_every_metrics_registry_exposes_the_counter(self):
        """/solaris/metrics renders a Metrics registry: the counter is in each one."""
        degraded.note_degraded("test_exposed", OSError())
        assert count("test_exposed", "OSError") >= 1
