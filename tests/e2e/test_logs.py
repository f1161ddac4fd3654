"""Logs: one JSON line per refusal, block, credit and alert, with the user id (and the call
id for calls); never a key, a password, an e-mail address in an alert line, or what a prompt said."""

from __future__ import annotations

import json
import uuid

import httpx
import openai
import pytest

from tests.support.harness import wait_for
from tests.support.proxy_calls import ask, exhaust
from tests.support.suite import admin_key_ana, admin_key_anonymous, master_key, viewer_key


def events(text: str) -> list[dict]:
    """Every JSON line of ours in a log, parsed (LiteLLM's own lines are not JSON)."""
    found = []
    for line in text.split("\n"):
        if line.startswith('{"event"'):
            found.append(json.loads(line))
    return found


def session_log(proxy) -> str:
    """This session's part of the log file (ProxyProcess appends to it run after run): from
    the launcher's banner, which names this session's own port."""
    text = proxy.log()
    start = text.rfind(f"solaris: proxy on {proxy.base_url}")
    assert start >= 0, "the launcher's banner is not in the log"
    return text[start:]


def events_of(proxy, event: str, **fields) -> list[dict]:
    return [
        item
        for item in events(session_log(proxy))
        if item["event"] == event and all(item.get(name) == value for name, value in fields.items())
    ]


def wait_for_event(proxy, event: str, count: int = 1, **fields) -> list[dict]:
    """Lines are written by the proxy as it goes: wait until `count` are there, then a bit
    longer to be sure there is no extra one."""
    wait_for(lambda: len(events_of(proxy, event, **fields)) >= count, 15, what=f"{count} {event} line(s) {fields}")
    return events_of(proxy, event, **fields)


class TestOneLinePerEvent:
    def test_a_refusal_is_one_line_with_the_user_and_call_ids(self, proxy, client, admin, user_id):
        """A call past the allowance: one `refused` line naming the user and LiteLLM's call id."""
        exhaust(client, admin, user_id)
        with pytest.raises(openai.RateLimitError) as refused:
            client.with_options(max_retries=0).chat.completions.create(
                model="fake-model",
                messages=[{"role": "user", "content": "mais"}],
                extra_headers={"x-litellm-end-user-id": user_id},
            )
        call_id = refused.value.response.headers["x-litellm-call-id"]
        (line,) = wait_for_event(proxy, "refused", user_id=user_id)
        assert (line["call_id"], line["reason"]) == (call_id, "exhausted")

    def test_an_identity_refusal_is_one_line_with_the_call_id_and_not_the_identity(self, proxy, client):
        """A call whose identity is refused: one `refused` line, without the bad identity."""
        bad_identity = "{{LIBRECHAT_USER_EMAIL}}-" + uuid.uuid4().hex[:8]
        with pytest.raises(openai.BadRequestError) as refused:
            client.with_options(max_retries=0).chat.completions.create(
                model="fake-model",
                messages=[{"role": "user", "content": "oi"}],
                extra_headers={"x-litellm-end-user-id": bad_identity},
            )
        call_id = refused.value.response.headers["x-litellm-call-id"]
        (line,) = wait_for_event(proxy, "refused", call_id=call_id)
        assert (line["reason"], line["code"], line["user_id"]) == ("identity", "identity_placeholder", None)
        assert bad_identity not in json.dumps(line)

    def test_blocking_and_unblocking_are_one_line_each(self, proxy, client, http, user_id):
        """PATCH status: one `status_changed` line per change (none for a PATCH that keeps it);
        a call while blocked is one `refused` line with reason blocked."""
        ask(client, user_id, "[[tokens=2]] oi")
        http.patch(f"/solaris/users/{user_id}", json={"status": "blocked"})
        http.patch(f"/solaris/users/{user_id}", json={"status": "blocked", "name": "Same status"})
        with pytest.raises(openai.PermissionDeniedError):
            client.with_options(max_retries=0).chat.completions.create(
                model="fake-model",
                messages=[{"role": "user", "content": "oi"}],
                extra_headers={"x-litellm-end-user-id": user_id},
            )
        http.patch(f"/solaris/users/{user_id}", json={"status": "active"})
        changes = wait_for_event(proxy, "status_changed", 2, user_id=user_id)
        assert [(line["status_before"], line["status"], line["actor"]) for line in changes] == [
            ("active", "blocked", "master_key"),
            ("blocked", "active", "master_key"),
        ]
        (refusal,) = wait_for_event(proxy, "refused", user_id=user_id)
        assert refusal["reason"] == "blocked" and refusal["call_id"]

    def test_a_credit_is_one_line_even_when_retried(self, proxy, http, user_id):
        """add-tokens twice with one Idempotency-Key: one credit, one `credited` line."""
        key = uuid.uuid4().hex
        for _ in range(2):
            response = http.post(
                f"/solaris/users/{user_id}/add-tokens",
                json={"tokens": 40, "reason": "bônus"},
                headers={"Idempotency-Key": key},
            )
            assert response.status_code == 200
        (line,) = wait_for_event(proxy, "credited", user_id=user_id)
        assert (line["tokens"], line["actor"], line["credited_tokens"]) == (40, "master_key", 1040)

    def test_an_alert_delivery_is_one_line_per_alert_without_the_address(
        self, proxy, client, admin, http, mail_catcher, user_id
    ):
        """Running out sends the block notice, a credit sends a receipt: one `mail_sent` line
        each, with user id, alert id, kind and threshold, and no e-mail address of anyone."""
        exhaust(client, admin, user_id)
        admin.add_tokens(user_id, 10, reason="mais")
        mail_catcher.wait_for(user_id, 2)

        def all_sent():
            alerts = http.get("/solaris/alerts", params={"user_id": user_id, "status": "sent"}).json()["alerts"]
            return alerts if len(alerts) == 2 else None

        sent = wait_for(all_sent, 15, what="both alerts recorded as sent")
        lines = wait_for_event(proxy, "mail_sent", len(sent), user_id=user_id)
        assert sorted(line["alert_id"] for line in lines) == sorted(alert["id"] for alert in sent)
        assert {(line["kind"], line["threshold"]) for line in lines} == {("blocked", 1.0), ("credit", None)}
        for line in lines:
            # The user id here is an e-mail address itself; the recipients are not added to it.
            assert "chefe@example.com" not in json.dumps(line) and "recipients" not in line


def lines_naming(proxy, call_id: str) -> list[str]:
    return [line for line in session_log(proxy).split("\n") if call_id in line]


def litellm_error_lines(proxy, call_id: str) -> list[str]:
    """LiteLLM's lines about a failed request: `… - LiteLLM Proxy:ERROR: … litellm_call_id=<id> …`."""
    return [line for line in lines_naming(proxy, call_id) if "LiteLLM Proxy:ERROR" in line]


def refused_call_id(client: openai.OpenAI, user_id: str, error: type[openai.APIStatusError], **extra: object) -> str:
    with pytest.raises(error) as refused:
        client.with_options(max_retries=0).chat.completions.create(
            model="fake-model",
            messages=[{"role": "user", "content": "oi"}],
            extra_headers={"x-litellm-end-user-id": user_id},
            **extra,  # type: ignore[call-overload]
        )
    return refused.value.response.headers["x-litellm-call-id"]


class TestLiteLLMsLinesForRefusals:
    def test_a_refusal_is_our_line_alone_and_a_provider_failure_keeps_litellms_error(
        self, proxy, client, admin, user_id
    ):
        """A call with no bound (400, before any user is charged), used up (429) and an
        unfilled identity (400): each call is named by our `refused` line and by no LiteLLM
        ERROR line or traceback. A provider's 500 afterwards still gets
        LiteLLM's ERROR line with its traceback (and, written after the refusals' lines would
        have been, shows that they were not)."""
        refused = [refused_call_id(client, user_id, openai.BadRequestError, n=0)]
        exhaust(client, admin, user_id)
        refused += [
            refused_call_id(client, user_id, openai.RateLimitError),
            refused_call_id(client, "{{LIBRECHAT_USER_EMAIL}}", openai.BadRequestError),
        ]
        with pytest.raises(openai.InternalServerError) as failed:
            ask(client.with_options(max_retries=0), f"falha-{uuid.uuid4().hex[:8]}@example.com", "[[fail=500]]")
        failed_call_id = failed.value.response.headers["x-litellm-call-id"]
        (error_line,) = wait_for(lambda: litellm_error_lines(proxy, failed_call_id), 15, what="LiteLLM's error line")
        # Its message goes on for a few lines (LiteLLM adds the model group), then the traceback.
        record = session_log(proxy).split(error_line, 1)[1].split("\n")[:6]
        assert "Traceback (most recent call last):" in record, record

        for call_id in refused:
            (line,) = lines_naming(proxy, call_id)
            assert json.loads(line)["event"] == "refused", line


class TestNothingSecretInTheLog:
    def test_no_key_password_or_prompt_reaches_the_proxy_log(self, proxy, client, http, user_id):
        """After calls, refusals and admin requests: no admin or viewer key, no master key
        (but the launcher's own banner, see below), no prompt text anywhere in the log."""
        marker = f"segredo-do-prompt-{uuid.uuid4().hex}"
        ask(client, user_id, f"[[tokens=3]] {marker}")
        with pytest.raises(openai.BadRequestError):
            ask(client, "{{LIBRECHAT_USER_EMAIL}}", marker)
        exhausted = f"gasto-{uuid.uuid4().hex[:8]}@example.com"
        http.post("/solaris/users", json={"user_id": exhausted, "initial_tokens": 0})
        with pytest.raises(openai.RateLimitError):
            client.with_options(max_retries=0).chat.completions.create(
                model="fake-model",
                messages=[{"role": "user", "content": marker}],
                extra_headers={"x-litellm-end-user-id": exhausted},
            )
        for key in (admin_key_ana, admin_key_anonymous, viewer_key, "sk-wrong-" + marker):
            httpx.get(f"{proxy.base_url}/solaris/users/{user_id}", headers={"Authorization": f"Bearer {key}"})
        wait_for_event(proxy, "refused", user_id=exhausted)
        log = session_log(proxy)
        for secret in (marker, admin_key_ana, admin_key_anonymous, viewer_key):
            assert secret not in log
        # `solaris run` prints a key it generated (make run), never one the deployment gave it.
        assert master_key not in log

    def test_every_line_of_ours_is_one_json_object_with_an_event(self, proxy):
        """Each of our lines parses on its own and holds no character a line-based reader
        would split on (U+2028, U+0085…): identities with line breaks never get that far."""
        ours = [line for line in session_log(proxy).split("\n") if line.startswith('{"event"')]
        assert ours
        for line in ours:
            parsed = json.loads(line)
            assert isinstance(parsed, dict) and isinstance(parsed["event"], str)
            assert line.splitlines() == [line], line
