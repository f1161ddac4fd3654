"""Log lines written in this process: a failed alert delivery and the `solaris` command.

Lines written by the proxy: tests/e2e/test_logs.py."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

from solaris_hooks.cli.main import main as cli_main
from solaris_hooks.mail.outbox import Outbox
from tests.support.alerts import alert_fields, smtp_for, spend
from tests.support.event_loop import run_with_service
from tests.support.harness import free_port


class TestTheCommandLine:
    def test_cli_credits_and_status_changes_log_like_the_api(self, database_url, monkeypatch, caplog, capsys):
        """`solaris credits add` and `users set-status` pass through the same code: same lines."""
        user_id = f"cli-{uuid.uuid4().hex[:10]}@example.com"
        monkeypatch.setenv("SOLARIS_DATABASE_URL", database_url)
        with caplog.at_level(logging.INFO, logger="solaris_hooks"):
            assert cli_main(["credits", "add", user_id, "25", "--reason", "cli"]) == 0
            assert cli_main(["users", "set-status", user_id, "disabled"]) == 0
        lines = [json.loads(record.getMessage()) for record in caplog.records if record.name == "solaris_hooks"]
        mine = [(line["event"], line.get("status")) for line in lines if line.get("user_id") == user_id]
        assert mine == [("credited", None), ("status_changed", "disabled")]
        assert all(line["actor"].startswith("cli") for line in lines if line.get("user_id") == user_id)


class TestFailedAlerts:
    def test_a_failing_then_dead_alert_is_one_line_per_attempt_without_the_address_or_password(
        self, own_database, caplog
    ):
        """SMTP down: `mail_failed` for the attempt that will be retried, `mail_dead` for the
        last; each with alert and user ids and the threshold, never the address or the password."""
        user_id = f"dead-{uuid.uuid4().hex[:10]}@example.com"
        password = "s3cr3t-" + uuid.uuid4().hex

        async def scenario(service):
            outbox = Outbox(
                service.connection, service.settings, smtp_for(free_port(), username="quota", password=password)
            )
            await spend(service, user_id, 850)
            for _ in range(2):
                await outbox.flush()
                await asyncio.sleep(0.25)  # past the backoff

        with caplog.at_level(logging.INFO, logger="solaris_hooks"):
            run_with_service(own_database, scenario, **alert_fields(mail_attempts_max=2))
        lines = [json.loads(record.getMessage()) for record in caplog.records if record.name == "solaris_hooks"]
        mine = [line for line in lines if line.get("user_id") == user_id]
        assert [line["event"] for line in mine] == ["mail_failed", "mail_dead"]
        assert {line["alert_id"] for line in mine} == {mine[0]["alert_id"]}
        assert all(line["threshold"] == 0.8 and line["kind"] == "warning" for line in mine)
        assert "ConnectionRefusedError" in mine[1]["error"]
        assert password not in caplog.text
