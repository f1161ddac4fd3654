"""Alerts end to end: a user driven through the proxy gets exactly the e-mails the product promises."""

from __future__ import annotations

import time

import openai
import psycopg
import pytest

from tests.support.harness import text_part, wait_for
from tests.support.proxy_calls import ask
from tests.support.suite import admin_email, credits_email


def used_fraction(admin, user_id: str) -> float:
    account = admin.settled_account(user_id)
    return account["used_tokens"] / account["credited_tokens"]


class TestAlertsThroughTheProxy:
    def test_80_95_and_100_percent_each_send_one_email(self, client, admin, mail_catcher, user_id):
        """A new user driven past 80 %, 95 % and 100 % with the openai client gets exactly three e-mails."""
        ask(client, user_id, "[[tokens=2250]] longa", max_tokens=2250)
        assert 0.8 <= used_fraction(admin, user_id) < 0.95
        ask(client, user_id, "[[tokens=300]] mais", max_tokens=300)
        assert 0.95 <= used_fraction(admin, user_id) < 1
        ask(client, user_id, "[[tokens=100000]] até o fim", max_tokens=100000)
        with pytest.raises(openai.RateLimitError):
            ask(client, user_id, "bloqueado?")
        mail_catcher.wait_for(user_id, 3)
        time.sleep(1)  # anything extra would have arrived by now (the mailer polls every 0.2 s)
        received = mail_catcher.to(user_id)
        subjects = [message["Subject"] for message in received]
        assert len(received) == 3, subjects
        assert "80%" in subjects[0] and "95%" in subjects[1] and "acabou" in subjects[2]
        assert credits_email in text_part(received[2])
        assert received[2] in mail_catcher.to(admin_email)
        assert len({message["Message-ID"] for message in received}) == 3

    def test_a_credit_through_the_api_mails_a_receipt(self, admin, mail_catcher, user_id):
        """POST add-tokens makes the user an e-mail saying what was added."""
        admin.add_tokens(user_id, 300, "bônus")
        (receipt,) = mail_catcher.wait_for(user_id, 1)
        assert "300 tokens" in receipt["Subject"]


class TestAlertsApi:
    def test_alerts_are_listed_with_status_and_attempts(self, http, admin, mail_catcher, user_id):
        """GET /solaris/alerts shows each alert of a user with its status, attempts and recipients."""
        admin.add_tokens(user_id, 10, "teste")
        mail_catcher.wait_for(user_id, 1)

        def listed():
            page = http.get("/solaris/alerts", params={"user_id": user_id}).json()
            return page if page["alerts"] and page["alerts"][0]["status"] == "sent" else None

        page = wait_for(listed, 10, what="alert marked sent")
        (alert,) = page["alerts"]
        assert (alert["kind"], alert["attempts"], page["total"]) == ("credit", 1, 1)
        assert user_id in alert["recipients"]
        assert http.get("/solaris/alerts", params={"status": "sent", "limit": 1}).json()["limit"] == 1

    def test_a_dead_alert_can_be_retried_and_is_then_delivered(self, http, admin, database_url, mail_catcher, user_id):
        """POST /solaris/alerts/{id}/retry re-queues a dead alert; the proxy's mailer sends it."""
        admin.add_tokens(user_id, 10, "teste")
        mail_catcher.wait_for(user_id, 1)
        with psycopg.connect(database_url, autocommit=True) as connection:
            alert_id = connection.execute(
                "UPDATE solaris.alerts SET status = 'dead', attempts = 8, last_error = 'timeout' "
                "WHERE user_id = %s RETURNING id",
                (user_id,),
            ).fetchone()[0]
        response = http.post(f"/solaris/alerts/{alert_id}/retry")
        assert response.status_code == 200 and response.json()["status"] == "pending"
        mail_catcher.wait_for(user_id, 2)
        conflict = http.post(f"/solaris/alerts/{alert_id}/retry")
        assert conflict.status_code == 409 and "only dead alerts" in conflict.json()["error"]["message"]

    @pytest.mark.parametrize(
        ("method", "path", "params", "status"),
        [
            ("POST", "/solaris/alerts/999999999/retry", {}, 404),
            ("POST", "/solaris/alerts/abc/retry", {}, 422),
            ("POST", "/solaris/alerts/0/retry", {}, 422),
            ("GET", "/solaris/alerts", {"status": "lost"}, 422),
            ("GET", "/solaris/alerts", {"limit": 0}, 422),
            ("GET", "/solaris/alerts", {"limit": "many"}, 422),
        ],
    )
    def test_wrong_requests_get_a_readable_4xx(self, http, method, path, params, status):
        """Unknown ids, bad ids and bad filters are 4xx with a message, never a 500."""
        response = http.request(method, path, params=params)
        assert response.status_code == status
        assert response.json()["error"]["message"]
