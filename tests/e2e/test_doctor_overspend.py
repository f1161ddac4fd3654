"""`/solaris/health` on a running proxy sees accounts that used more than they were credited
(docs/architecture.md invariant 6). `solaris doctor`'s check: tests/integration/test_doctor_overspend.py."""

from __future__ import annotations

import uuid

import httpx

from tests.support.ledger_sql import execute, factor, unmetered
from tests.support.suite import charged, master_key


class TestHealth:
    def test_health_reports_overspend_until_it_is_covered(self, proxy, database_url, admin):
        """/solaris/health stays 200 "ok" and adds an overspend part naming the account and the call;
        once credits cover it, the answer is the plain one again."""
        user_id = f"over-{uuid.uuid4().hex[:12]}@example.com"
        execute(database_url, unmetered(user_id, f"spooled-{user_id}", 5000))
        auth = {"Authorization": f"Bearer {master_key}"}
        try:
            over = httpx.get(f"{proxy.base_url}/solaris/health", headers=auth, timeout=30)
        finally:
            admin.add_tokens(user_id, charged(5000, factor), reason="covers the test's overspend")
        after = httpx.get(f"{proxy.base_url}/solaris/health", headers=auth, timeout=30)

        assert over.status_code == 200
        body = over.json()
        assert (body["status"], body["database"], body["overspend"]["accounts"]) == ("ok", "ok", 1)
        (example,) = body["overspend"]["examples"]
        assert (example["user_id"], example["credited_tokens"], example["used_tokens"], example["over_tokens"]) == (
            user_id,
            1000,
            charged(5000, factor),
            charged(5000, factor) - 1000,
        )
        (call,) = example["calls"]
        assert (call["call_id"], call["raw_tokens"], call["charged_tokens"], call["model"]) == (
            f"spooled-{user_id}",
            5000,
            charged(5000, factor),
            "fake-model",
        )
        assert "unmetered" in call["reason"]
        assert after.json() == {"status": "ok", "database": "ok"}

    def test_the_overspend_part_is_in_the_openapi_schema(self, proxy):
        """The health schema documents the optional overspend part with its models."""
        schema = httpx.get(f"{proxy.base_url}/openapi.json", timeout=30).json()
        health = schema["components"]["schemas"]["HealthOut"]
        assert set(health["required"]) == {"status", "database"}
        assert "overspend" in health["properties"]
        assert {"OverspendOut", "OverspentAccountOut", "OverspentCallOut"} <= set(schema["components"]["schemas"])
