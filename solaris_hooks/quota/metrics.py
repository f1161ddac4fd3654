"""Prometheus metrics of this proxy process, in a registry of our own.

A registry of our own keeps our names apart from LiteLLM's Prometheus integration.
Counters and the latency histogram are per process (Prometheus sums replicas); the
gauges read the database at scrape time, so every replica reports the shared truth.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from psycopg import AsyncConnection

from solaris_hooks.db import gauges

content_type = "text/plain; version=0.0.4; charset=utf-8"

# Module-level and registered in no registry of its own: a LiteLLM internal can fail
# anywhere (token counting, the cache), far from the QuotaService that owns a Metrics,
# so `degraded.note_degraded` counts here and every Metrics registry exposes it.
# `what` takes values from our own code only (see degraded.py), never client input.
litellm_degraded = Counter(
    "solaris_litellm_degraded",
    "Calls served in a degraded way because a LiteLLM internal failed.",
    ["what", "error"],
    registry=None,
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.charged_tokens = Counter(
            "solaris_charged_tokens", "Platform tokens charged for settled calls.", ["model"], registry=self.registry
        )
        self.refusals = Counter(
            "solaris_refusals", "Calls refused by the quota hook.", ["reason"], registry=self.registry
        )
        self.pre_call_seconds = Histogram(
            "solaris_pre_call_seconds",
            "Time the pre-call hook adds to a call (estimate and reserve).",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.active_reservations = Gauge(
            "solaris_active_reservations", "Reservations pending in the ledger.", registry=self.registry
        )
        self.outbox_alerts = Gauge(
            "solaris_outbox_alerts", "Alert e-mails in the outbox by status.", ["status"], registry=self.registry
        )
        self.registry.register(litellm_degraded)

    async def render(self, connection: AsyncConnection) -> bytes:
        """The exposition text, with the database gauges read now."""
        self.active_reservations.set(await gauges.pending_reservations(connection))
        for status, count in (await gauges.alerts_by_status(connection)).items():
            self.outbox_alerts.labels(status=status).set(count)
        return generate_latest(self.registry)
