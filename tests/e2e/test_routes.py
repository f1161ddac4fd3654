"""The minimum admin API on the proxy: health, a user's balance, credits."""

from __future__ import annotations

import httpx
import pytest

from tests.support.suite import master_key, proxy_settings

auth = {"Authorization": f"Bearer {master_key}"}


class TestAuthentication:
    @pytest.mark.parametrize(
        ("method", "path"),
        [("GET", "/solaris/health"), ("GET", "/solaris/users/ana"), ("POST", "/solaris/users/ana/add-tokens")],
    )
    @pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer sk-wrong"}, {"Authorization": master_key}])
    def test_every_route_needs_the_master_key(self, proxy, method, path, headers):
        """No key, a wrong key or a key without `Bearer`: 401 with a readable message."""
        response = httpx.request(
            method, proxy.base_url + path, headers=headers, json={"tokens": 1, "reason": "x"}, timeout=30
        )
        assert response.status_code == 401
        assert "key" in response.json()["error"]["message"]


class TestHealth:
    def test_health_reports_the_database(self, http):
        """GET /solaris/health says ok when the ledger database answers."""
        response = http.get("/solaris/health", headers=auth)
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "database": "ok"}


class TestUsers:
    def test_an_unknown_user_is_a_404_that_explains(self, http, user_id):
        """A user never seen gets 404 and a sentence saying when users appear."""
        response = http.get(f"/solaris/users/{user_id}", headers=auth)
        assert response.status_code == 404
        assert "first call" in response.json()["error"]["message"]

    def test_add_tokens_returns_the_new_balance(self, http, user_id):
        """A credit answers with every balance field, the credit included."""
        response = http.post(
            f"/solaris/users/{user_id}/add-tokens", headers=auth, json={"tokens": 500, "reason": "projeto novo"}
        )
        assert response.status_code == 200
        body = response.json()
        assert {
            key: body[key]
            for key in ("user_id", "status", "credited_tokens", "used_tokens", "reserved_tokens", "remaining_tokens")
        } == {
            "user_id": user_id,
            "status": "active",
            "credited_tokens": proxy_settings["default_tokens_per_user"] + 500,
            "used_tokens": 0,
            "reserved_tokens": 0,
            "remaining_tokens": proxy_settings["default_tokens_per_user"] + 500,
        }
        assert http.get(f"/solaris/users/{user_id}", headers=auth).json()["credited_tokens"] == 1500

    @pytest.mark.parametrize(
        ("body", "complaint"),
        [
            ({"tokens": 0, "reason": "x"}, "tokens"),
            ({"tokens": -10, "reason": "x"}, "tokens"),
            ({"tokens": "many", "reason": "x"}, "tokens"),
            ({"tokens": 10}, "reason"),
            ({"tokens": 10, "reason": ""}, "reason"),
            ({"tokens": 10**12 + 1, "reason": "x"}, "tokens"),
        ],
    )
    def test_a_bad_credit_is_refused_readably_and_changes_nothing(self, http, user_id, body, complaint):
        """Invalid credits get 422 naming the field; the user is not even created."""
        response = http.post(f"/solaris/users/{user_id}/add-tokens", headers=auth, json=body)
        assert response.status_code == 422
        assert complaint in response.json()["error"]["message"]
        assert http.get(f"/solaris/users/{user_id}", headers=auth).status_code == 404

    def test_a_body_that_is_not_json_is_a_422(self, http, user_id):
        """Garbage instead of JSON is a client error, never a 500."""
        response = http.post(
            f"/solaris/users/{user_id}/add-tokens",
            headers={**auth, "content-type": "application/json"},
            content=b"{not json",
        )
        assert response.status_code == 422
        assert "invalid request" in response.json()["error"]["message"]
